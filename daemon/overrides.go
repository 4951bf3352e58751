package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/internal/backoff"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// maxLease bounds an override's lease.
const maxLease = time.Hour

// retireFor is how long an override's ID stays retired after a DELETE: a
// PUT of the ID is refused (410) until then, so that a PUT held up on its
// way past the removal (the daemon took it in after the DELETE) does not
// set the override again. That covers a request held up in the network,
// in a proxy or in the daemon (which reads one within its ReadTimeout);
// a client that sends its PUT later than that sets the override again,
// under its lease.
const retireFor = time.Hour

// sweepEvery is how often the daemon looks for overrides whose lease ran
// out.
const sweepEvery = 200 * time.Millisecond

// overrideSet holds the overrides in effect, by ID; the store has a copy
// of each, so that they survive a restart.
type overrideSet struct {
	mu   sync.Mutex
	byID map[string]wire.Override
	// replaced is closed, and made again, whenever replace changes byID.
	replaced chan struct{}
}

func newOverrideSet(os []wire.Override) *overrideSet {
	s := &overrideSet{byID: map[string]wire.Override{}, replaced: make(chan struct{})}
	for _, o := range os {
		s.byID[o.ID] = o
	}
	return s
}

// forHost returns the overrides that apply to host among the configs m
// selects, sorted by config, without their host lists.
func (s *overrideSet) forHost(host string, m store.Match) []wire.Override {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Override
	for _, o := range s.byID {
		if slices.Contains(o.Hosts, host) && (m == nil || m(o.Config)) {
			o.Hosts = nil
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b wire.Override) int { return strings.Compare(a.Config, b.Config) })
	return out
}

func (s *overrideSet) list() []wire.Override {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.byID))
	slices.SortFunc(out, func(a, b wire.Override) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (s *overrideSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// expired returns the IDs of the overrides whose lease ran out by now.
func (s *overrideSet) expired(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, o := range s.byID {
		if !o.Expires.After(now) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (s *overrideSet) get(id string) (wire.Override, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byID[id]
	return o, ok
}

// checkID reports whether id may name an override or a run: letters,
// digits, '.', '_' and '-', at most 128 bytes.
func checkID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("id %.40q: want 1 to 128 bytes", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid id %q: want letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// decodeOne decodes one JSON object from r into v, and nothing after it.
func decodeOne(r io.Reader, what string, v any) error {
	dec := json.NewDecoder(r)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	if kind := jsonKind(raw); kind != jsonObject {
		return fmt.Errorf("decoding %s: got %s, want a JSON object", what, kind)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	return nil
}

const jsonObject = "an object"

// jsonKind names the kind of the valid JSON value v.
func jsonKind(v []byte) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return jsonObject
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// checkOverrideData checks the data of override o against the kind of the
// config it replaces: a compiled config takes a JSON object, as the
// compiler writes one; a raw config takes any bytes. It returns the status
// to answer with when it fails (a store error has none).
func (d *Daemon) checkOverrideData(ctx context.Context, o wire.Override) (int, error) {
	c, err := d.store.Get(ctx, o.Config)
	if errors.Is(err, store.ErrNotFound) {
		return http.StatusNotFound, fmt.Errorf("unknown config %q: an override replaces a published config", o.Config)
	}
	if err != nil {
		return 0, err
	}
	if o.Compiled != c.Compiled {
		kind := "raw"
		if c.Compiled {
			kind = "compiled (JSON)"
		}
		return http.StatusBadRequest, fmt.Errorf("compiled: got %v, want %v: config %q is %s", o.Compiled, c.Compiled, o.Config, kind)
	}
	if !o.Compiled {
		return 0, nil
	}
	if err := checkCompiledData(o.Data); err != nil {
		return http.StatusBadRequest, fmt.Errorf("data of compiled config %q: %w", o.Config, err)
	}
	return 0, nil
}

// checkCompiledData checks that data is a compiled config: one JSON
// object, in UTF-8.
func checkCompiledData(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("not UTF-8")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return fmt.Errorf("invalid JSON: %v at byte %d", se, se.Offset)
		}
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if kind := jsonKind(raw); kind != jsonObject {
		return fmt.Errorf("got %s, want a JSON object", kind)
	}
	return nil
}

// readBody decodes a request body into v, answering the request with the
// error if it fails.
func readBody(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	err := decodeOne(http.MaxBytesReader(w, r.Body, MaxBody), what, v)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, "%s: body over %d bytes", what, MaxBody)
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return false
	}
	return true
}

func checkLease(seconds int) error {
	if seconds < 1 || time.Duration(seconds)*time.Second > maxLease {
		return fmt.Errorf("lease_seconds: got %d, want 1 to %d", seconds, int(maxLease/time.Second))
	}
	return nil
}

// handlePutOverride creates or replaces an override (docs/api.md).
func (d *Daemon) handlePutOverride(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "override %v", err)
		return
	}
	var o wire.Override
	if !readBody(w, r, "override", &o) {
		return
	}
	if err := repo.CheckName(o.Config); err != nil {
		writeError(w, http.StatusBadRequest, "override %s: config: %v", id, err)
		return
	}
	if len(o.Hosts) == 0 {
		writeError(w, http.StatusBadRequest, "override %s: no hosts", id)
		return
	}
	for _, h := range o.Hosts {
		if err := checkHostName(h); err != nil {
			writeError(w, http.StatusBadRequest, "override %s: hosts: %v", id, err)
			return
		}
	}
	if o.Data == nil {
		writeError(w, http.StatusBadRequest, "override %s: no data", id)
		return
	}
	if err := checkLease(o.LeaseSeconds); err != nil {
		writeError(w, http.StatusBadRequest, "override %s: %v", id, err)
		return
	}
	if code, err := d.checkOverrideData(r.Context(), o); err != nil {
		if code == 0 {
			d.storeError(w, r, err)
			return
		}
		writeError(w, code, "override %s: %v", id, err)
		return
	}
	o.ID = id
	o.Hosts = slices.Compact(slices.Sorted(slices.Values(o.Hosts)))

	s := d.overrides
	s.mu.Lock()
	old, exists := s.byID[id]
	if exists && old.Config != o.Config {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "override %s is for config %q, not %q", id, old.Config, o.Config)
		return
	}
	for _, other := range s.byID {
		if other.ID == id || other.Config != o.Config {
			continue
		}
		for _, h := range o.Hosts {
			if slices.Contains(other.Hosts, h) {
				s.mu.Unlock()
				writeError(w, http.StatusConflict, "host %s already has override %s of config %q", h, other.ID, o.Config)
				return
			}
		}
	}
	o.Version = old.Version + 1
	o.Expires = time.Now().UTC().Add(time.Duration(o.LeaseSeconds) * time.Second)
	err := d.store.PutOverride(r.Context(), o)
	if err == nil && d.cluster == nil {
		// A daemon of a cluster takes the store's overrides as they come
		// (followOverrides), its own changes among them, in order.
		s.byID[id] = o
	}
	s.mu.Unlock()
	if errors.Is(err, store.ErrRetired) {
		writeError(w, http.StatusGone, "%v: it was removed, and an override's id is not set again for %.0f minutes after its removal", err, retireFor.Minutes())
		return
	}
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	if d.cluster == nil {
		d.hub.overridesChanged()
	} else {
		s.await(r.Context(), func(m map[string]wire.Override) bool { return m[id].Version >= o.Version })
	}
	d.log.Info("override set", "id", id, "config", o.Config, "hosts", len(o.Hosts), "version", o.Version, "expires", o.Expires)
	o.Data = nil
	writeJSON(w, o)
}

// handleRenewOverride extends an override's lease and sends the override
// again on the watch streams of its hosts, whose agents count the lease
// from when they last received it; 404 once it ran out.
func (d *Daemon) handleRenewOverride(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		LeaseSeconds int `json:"lease_seconds"`
	}
	if r.ContentLength != 0 && !readBody(w, r, "lease", &body) {
		return
	}
	s := d.overrides
	s.mu.Lock()
	o, ok := s.byID[id]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "no override %q (its lease may have run out)", id)
		return
	}
	leaseSeconds := o.LeaseSeconds
	if body.LeaseSeconds != 0 {
		if err := checkLease(body.LeaseSeconds); err != nil {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, "override %s: %v", id, err)
			return
		}
		o.LeaseSeconds = body.LeaseSeconds
	}
	o.Expires = time.Now().UTC().Add(time.Duration(o.LeaseSeconds) * time.Second)
	var err error
	if o.LeaseSeconds == leaseSeconds {
		err = d.store.RenewOverride(r.Context(), id, o.Expires) // the data is not written again
	} else {
		err = d.store.PutOverride(r.Context(), o)
	}
	if err == nil && d.cluster == nil {
		s.byID[id] = o
	}
	s.mu.Unlock()
	// A daemon of a cluster may not yet know that another removed it.
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRetired) {
		writeError(w, http.StatusNotFound, "no override %q (its lease may have run out)", id)
		return
	}
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	// The new expiry makes the override differ from what the streams
	// last sent, so each of its hosts' streams sends it again.
	if d.cluster == nil {
		d.hub.overridesChanged()
	} else {
		s.await(r.Context(), func(m map[string]wire.Override) bool { return !m[id].Expires.Before(o.Expires) })
	}
	o.Data = nil
	writeJSON(w, o)
}

func (d *Daemon) handleDeleteOverride(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "override %v", err)
		return
	}
	removed, err := d.removeOverride(r.Context(), id, nil)
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	if !removed {
		writeError(w, http.StatusNotFound, "no override %q", id)
		return
	}
	d.log.Info("override removed", "id", id)
	w.WriteHeader(http.StatusNoContent)
}

// removeOverride removes override id. With expired nil (a DELETE), it
// retires the ID for retireFor, whether the override is there or not (a
// PUT on its way may set it yet). Otherwise (its lease ran out) it
// removes the override only if it is there and still expires at or
// before *expired, and does not retire the ID. It reports whether it
// removed an override.
func (d *Daemon) removeOverride(ctx context.Context, id string, expired *time.Time) (bool, error) {
	s := d.overrides
	s.mu.Lock()
	o, ok := s.byID[id]
	var retire time.Time
	if expired == nil {
		retire = time.Now().Add(retireFor)
	} else if !ok || o.Expires.After(*expired) {
		s.mu.Unlock()
		return false, nil
	}
	err := d.store.DeleteOverride(ctx, id, retire)
	if err == nil && d.cluster == nil {
		delete(s.byID, id)
	}
	s.mu.Unlock()
	if err != nil || !ok {
		return false, err
	}
	if d.cluster == nil {
		d.hub.overridesChanged()
	} else {
		s.await(ctx, func(m map[string]wire.Override) bool { _, ok := m[id]; return !ok })
	}
	return true, nil
}

func (d *Daemon) handleOverrides(w http.ResponseWriter, r *http.Request) {
	list := d.overrides.list()
	for i := range list {
		list[i].Data = nil
	}
	if list == nil {
		list = []wire.Override{}
	}
	writeJSON(w, list)
}

func (d *Daemon) handleOverride(w http.ResponseWriter, r *http.Request) {
	o, ok := d.overrides.get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no override %q", r.PathValue("id"))
		return
	}
	writeJSON(w, o)
}

// sweepOverrides removes the overrides whose lease ran out, until ctx is
// done.
//
// A daemon of a cluster removes them from what it serves only: the
// store's lease removes them from the store (store.Etcd.PutOverride), and
// a daemon whose copy of an override's expiry is behind a renewal does
// not remove the renewed override for every daemon.
func (d *Daemon) sweepOverrides(ctx context.Context) {
	every(ctx, sweepEvery, func() {
		now := time.Now().UTC()
		if d.cluster != nil {
			if ids := d.overrides.drop(now); len(ids) > 0 {
				d.hub.overridesChanged()
				d.expired(ids)
			}
			return
		}
		for _, id := range d.overrides.expired(now) {
			removed, err := d.removeOverride(ctx, id, &now)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("removing an expired override", "id", id, "err", err)
				}
				continue
			}
			if !removed {
				continue // renewed meanwhile
			}
			d.expired([]string{id})
		}
	})
}

// expired logs and counts the overrides ids whose lease ran out.
func (d *Daemon) expired(ids []string) {
	for _, id := range ids {
		d.log.Warn("override lease ran out; hosts revert", "id", id)
		d.metrics.leasesExpired.Inc()
	}
}

// drop removes the overrides whose lease ran out by now, and returns
// their IDs.
func (s *overrideSet) drop(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, o := range s.byID {
		if !o.Expires.After(now) {
			delete(s.byID, id)
			ids = append(ids, id)
		}
	}
	return ids
}

// replace makes the overrides of list whose lease has not run out by now
// the overrides in effect. It returns the IDs of those it removed
// because their lease ran out, and whether anything changed.
func (s *overrideSet) replace(list []wire.Override, now time.Time) (expired []string, changed bool) {
	next := make(map[string]wire.Override, len(list))
	for _, o := range list {
		if o.Expires.After(now) {
			next[o.ID] = o
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.byID {
		n, ok := next[id]
		if !ok && !o.Expires.After(now) {
			expired = append(expired, id)
		}
		if !ok || n.Version != o.Version || !n.Expires.Equal(o.Expires) {
			changed = true
		}
	}
	changed = changed || len(next) != len(s.byID)
	s.byID = next
	close(s.replaced)
	s.replaced = make(chan struct{})
	return expired, changed
}

// overridesApplied bounds how long a change of the overrides through a
// daemon of a cluster waits for the daemon to follow it: well within the
// write timeout of its response.
const overridesApplied = 5 * time.Second

// await waits until cond holds of the overrides in effect, for at most
// overridesApplied or until ctx is done: a daemon of a cluster takes its
// own changes from the store, and answers a change once it serves it, so
// that the next change through it (a new version, a conflict) sees it.
func (s *overrideSet) await(ctx context.Context, cond func(map[string]wire.Override) bool) {
	timeout := time.NewTimer(overridesApplied)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		ok, replaced := cond(s.byID), s.replaced
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-replaced:
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		}
	}
}

// followOverrides makes the overrides of the shared store the overrides
// in effect, as they change, whichever daemon changed them, until ctx is
// done.
func (d *Daemon) followOverrides(ctx context.Context) {
	b := backoff.New(retryFirst, retryShared)
	for {
		err := d.cluster.store.FollowOverrides(ctx, func(list []wire.Override) error {
			now := time.Now().UTC()
			expired, changed := d.overrides.replace(list, now)
			if changed {
				d.hub.overridesChanged()
			}
			d.expired(expired)
			b.Reset()
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		d.log.Error("following the overrides", "err", err)
		if b.Sleep(ctx) != nil {
			return
		}
	}
}

var runStatuses = []string{wire.RunRunning, wire.RunLanded, wire.RunRolledBack, wire.RunReverted, wire.RunAbandoned, wire.RunFailed}

func (d *Daemon) handlePutRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "run %v", err)
		return
	}
	var run wire.Run
	if !readBody(w, r, "run", &run) {
		return
	}
	if run.ID != "" && run.ID != id {
		writeError(w, http.StatusBadRequest, "run %s: body names run %q", id, run.ID)
		return
	}
	run.ID = id
	if err := repo.CheckName(run.Config); err != nil {
		writeError(w, http.StatusBadRequest, "run %s: config: %v", id, err)
		return
	}
	if !slices.Contains(runStatuses, run.Status) {
		writeError(w, http.StatusBadRequest, "run %s: status: got %q, want one of %s", id, run.Status, strings.Join(runStatuses, ", "))
		return
	}
	if run.Started.IsZero() {
		writeError(w, http.StatusBadRequest, "run %s: no started time", id)
		return
	}
	run.Expires = time.Time{}
	switch {
	case run.Status != wire.RunRunning:
		run.LeaseSeconds = 0
	case run.LeaseSeconds != 0:
		if err := checkLease(run.LeaseSeconds); err != nil {
			writeError(w, http.StatusBadRequest, "run %s: %v", id, err)
			return
		}
		run.Expires = time.Now().UTC().Add(time.Duration(run.LeaseSeconds) * time.Second)
	}
	if err := d.store.PutRun(r.Context(), run); errors.Is(err, store.ErrRunEnded) {
		writeError(w, http.StatusConflict, "run %s has ended: it cannot be running again", id)
		return
	} else if err != nil {
		d.storeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRuns lists the runs, oldest first; the query parameters config
// and status, if given, select the runs of one config or status.
func (d *Daemon) handleRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if st := q.Get("status"); st != "" && !slices.Contains(runStatuses, st) {
		writeError(w, http.StatusBadRequest, "status: got %q, want one of %s", st, strings.Join(runStatuses, ", "))
		return
	}
	runs, err := d.store.Runs(r.Context())
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	now := time.Now()
	for i, run := range runs {
		if run.Status == wire.RunRunning && !run.Expires.IsZero() && !run.Expires.After(now) {
			runs[i].Status, runs[i].Ended = wire.RunAbandoned, run.Expires
		}
	}
	runs = slices.DeleteFunc(runs, func(run wire.Run) bool {
		return q.Has("config") && run.Config != q.Get("config") || q.Has("status") && run.Status != q.Get("status")
	})
	if runs == nil {
		runs = []wire.Run{}
	}
	slices.SortStableFunc(runs, func(a, b wire.Run) int { return a.Started.Compare(b.Started) })
	writeJSON(w, runs)
}
