package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/wire"
)

// errNotFound is a daemon's 404 for a config.
var errNotFound = errors.New("unknown config")

// notFound is a daemon's 404 for a config, whose latest revision was
// latest: the config does not exist as of that revision.
type notFound struct {
	base, name string
	latest     int64
}

func (e *notFound) Error() string {
	return fmt.Sprintf("%s: config %q: %v", e.base, e.name, errNotFound)
}
func (e *notFound) Unwrap() error { return errNotFound }

var (
	errResubscribe      = errors.New("subscription changed")
	errHeartbeatTimeout = errors.New("heartbeat timeout")
	// errStoreChanged: the daemon's store is not the one whose revisions
	// the agent holds, or it lacks revisions the agent holds; the agent
	// resynchronises from a snapshot.
	errStoreChanged = errors.New("store changed")
	// errNothingPublished: the daemon to resynchronise with has not
	// published a revision yet.
	errNothingPublished = errors.New("resynchronising: the daemon's store has no revision yet")
)

// httpError reads a daemon's error response.
func httpError(resp *http.Response) error {
	return fmt.Errorf("%s: %s", resp.Status, wire.ErrorMessage(resp))
}

// fetched is a config read from a daemon with GET: the config, the
// daemon's latest revision and its store.
type fetched struct {
	cv     cache.ConfigVersion
	latest int64
	store  string
}

// fetchFrom reads a config from one daemon.
func (a *Agent) fetchFrom(ctx context.Context, base, name string) (fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+wire.ConfigPath(name), nil)
	if err != nil {
		return fetched{}, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fetched{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		latest, _ := strconv.ParseInt(resp.Header.Get(wire.HeaderLatestRevision), 10, 64)
		return fetched{}, &notFound{base, name, latest}
	}
	if resp.StatusCode != http.StatusOK {
		return fetched{}, fmt.Errorf("%s: %w", base, httpError(resp))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fetched{}, fmt.Errorf("%s: reading config %q: %w", base, name, err)
	}
	rev, err1 := strconv.ParseInt(resp.Header.Get(wire.HeaderRevision), 10, 64)
	latest, err2 := strconv.ParseInt(resp.Header.Get(wire.HeaderLatestRevision), 10, 64)
	if err1 != nil || err2 != nil || rev <= 0 {
		return fetched{}, fmt.Errorf("%s: config %q: bad %s or %s header", base, name, wire.HeaderRevision, wire.HeaderLatestRevision)
	}
	cv := cache.ConfigVersion{
		Name:     name,
		Revision: rev,
		Commit:   resp.Header.Get(wire.HeaderCommit),
		Type:     resp.Header.Get(wire.HeaderType),
		Compiled: strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"),
		Data:     data,
	}
	return fetched{cv, max(latest, rev), resp.Header.Get(wire.HeaderStore)}, nil
}

type flight struct {
	done chan struct{}
	cv   cache.ConfigVersion
	err  error
}

// fetch reads a config the agent does not hold from the daemons, starting
// with the current one, adds it to the cache and the subscription, and
// returns it. Concurrent fetches of one name share one request.
func (a *Agent) fetch(ctx context.Context, name string) (cache.ConfigVersion, error) {
	a.mu.Lock()
	f, ok := a.flights[name]
	if !ok {
		f = &flight{done: make(chan struct{})}
		a.flights[name] = f
		go func() {
			// Detached from the first requester: others may be waiting.
			f.cv, f.err = a.fetchAny(context.WithoutCancel(ctx), name)
			a.mu.Lock()
			delete(a.flights, name)
			a.mu.Unlock()
			close(f.done)
		}()
	}
	a.mu.Unlock()
	select {
	case <-f.done:
		return f.cv, f.err
	case <-ctx.Done():
		return cache.ConfigVersion{}, ctx.Err()
	}
}

func (a *Agent) fetchAny(ctx context.Context, name string) (cache.ConfigVersion, error) {
	a.mu.Lock()
	start := a.daemon
	a.mu.Unlock()
	var errs []error
	for i := range a.daemons {
		base := a.daemons[(start+i)%len(a.daemons)]
		f, err := a.fetchFrom(ctx, base, name)
		if errors.Is(err, errNotFound) {
			return cache.ConfigVersion{}, err
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return a.applyFetched(f.cv, f.latest, f.store)
	}
	return cache.ConfigVersion{}, errors.Join(errs...)
}

// subscribe keeps one watch stream to a daemon for every config in the
// subscription, restarting it when the subscription changes, until ctx
// is done. After every failure it waits before it tries again, except
// that when a daemon fails it tries each other daemon once at once: the
// wait is retryMin, doubled after every wait without progress (a stream
// that applied no event) up to retryMax, with jitter (half to all of
// it). A failure to write the cache (a full disk) is the agent's own: it
// waits and tries the same daemon again.
func (a *Agent) subscribe(ctx context.Context) {
	failures := 0 // attempts in a row that made no progress
	backoff := a.retryMin
	for ctx.Err() == nil {
		a.mu.Lock()
		names := sortedKeys(a.subs)
		gen := a.subGen
		from := a.applied
		if a.resync {
			from = 0 // a snapshot
		}
		base := a.daemons[a.daemon]
		a.mu.Unlock()
		if len(names) == 0 {
			select {
			case <-ctx.Done():
			case <-a.subChanged:
			}
			continue
		}

		progress, err := a.stream(ctx, base, names, gen, from)
		a.mu.Lock()
		a.connected = ""
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errResubscribe) {
			a.log.Info("subscription changed; restarting the watch", "daemon", base)
			continue
		}
		if errors.Is(err, errStoreChanged) {
			a.log.Warn("resynchronising from a snapshot", "daemon", base, "reason", err)
			a.mu.Lock()
			a.resync = true
			a.mu.Unlock()
			continue
		}
		if progress {
			failures, backoff = 0, a.retryMin
		}
		failures++
		wait := backoff/2 + rand.N(backoff/2+1)
		if _, local := errors.AsType[*cacheError](err); local {
			a.log.Warn("writing the cache failed; retrying", "daemon", base, "err", err, "wait", wait)
		} else {
			a.mu.Lock()
			a.daemon = (a.daemon + 1) % len(a.daemons)
			next := a.daemons[a.daemon]
			a.mu.Unlock()
			if failures%len(a.daemons) != 0 {
				a.log.Warn("watch failed; failing over", "daemon", base, "next", next, "err", err)
				continue // try the next daemon at once
			}
			a.log.Warn("watch failed; failing over", "daemon", base, "next", next, "err", err, "wait", wait)
		}
		backoff = min(2*backoff, a.retryMax)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// stream reads one watch stream from base for names, the subscription at
// generation gen, from revision from (a snapshot if from is 0) and
// applies its events until it fails, the subscription changes
// (errResubscribe) or ctx is done. It reports whether it applied any
// event.
func (a *Agent) stream(ctx context.Context, base string, names []string, gen uint64, from int64) (progress bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Any byte from the daemon resets the timer; silence for
	// HeartbeatTimeout ends the stream.
	timer := time.AfterFunc(a.cfg.HeartbeatTimeout, func() { cancel(errHeartbeatTimeout) })
	defer timer.Stop()

	// Watch the subscription for changes.
	go func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-a.subChanged:
				a.mu.Lock()
				changed := a.subGen != gen
				resync := a.resync && from > 0
				a.mu.Unlock()
				if resync {
					cancel(fmt.Errorf("%w: a fetched config is of another store", errStoreChanged))
					return
				}
				if changed {
					cancel(errResubscribe)
					return
				}
			}
		}
	}()

	resp, err := a.openWatch(sctx, base, names, from)
	if err != nil {
		return false, causeOr(sctx, err)
	}
	defer resp.Body.Close()
	store := resp.Header.Get(wire.HeaderStore)
	if err := a.checkStore(resp, store, from); err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, httpError(resp)
	}
	timer.Reset(a.cfg.HeartbeatTimeout)
	a.mu.Lock()
	a.connected = base
	var unknown []string
	for _, n := range names {
		if _, ok := a.configs[n]; !ok && a.missing[n].rev < from {
			unknown = append(unknown, n)
		}
	}
	a.mu.Unlock()
	a.log.Info("watching", "daemon", base, "configs", len(names), "from", from)

	// Configs subscribed without a version (asked for while no daemon
	// answered, or whose cache files were damaged) may predate from,
	// unless a daemon said they did not exist at from or later: fetch
	// them now that the stream is open, so that no change between the
	// fetch and the stream is lost.
	var wg sync.WaitGroup
	defer func() { cancel(nil); wg.Wait() }()
	if len(unknown) > 0 {
		wg.Go(func() {
			for _, n := range unknown {
				f, err := a.fetchFrom(sctx, base, n)
				if err == nil {
					_, err = a.applyFetched(f.cv, f.latest, f.store)
				}
				if nf, ok := errors.AsType[*notFound](err); ok {
					a.mu.Lock()
					a.missingLocked(n, nf.latest, time.Now())
					a.mu.Unlock()
					continue
				}
				if err != nil && sctx.Err() == nil {
					a.log.Warn("fetching subscribed config", "config", n, "err", err)
				}
			}
		})
	}

	events := wire.NewEventReader(&activityReader{r: resp.Body, timer: timer, d: a.cfg.HeartbeatTimeout})
	for {
		ev, err := events.Next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("daemon closed the watch")
			}
			return progress, causeOr(sctx, err)
		}
		if ev.Store == "" {
			ev.Store = store
		}
		if ev.Store != store {
			return progress, fmt.Errorf("event of store %s on a stream of store %s", ev.Store, store)
		}
		switch ev.Type {
		case wire.Update, wire.Snapshot:
			err = a.applyEvent(ev, gen)
		case wire.Overrides:
			a.applyOverrides(ev.Overrides)
		case wire.Heartbeat:
			// The daemon has sent every update up to the heartbeat's
			// revision (docs/api.md).
			err = a.applyEvent(wire.Event{Type: wire.Update, Revision: ev.Revision, Store: ev.Store}, gen)
		}
		if err != nil {
			return progress, err
		}
		progress = true
	}
}

// openWatch asks base for a watch stream of names from revision from (a
// snapshot if from is 0), with the subscription in the body of POST
// /v1/watch, whatever its length. A daemon that does not take POST
// (405: an earlier daemon) is asked with GET and a query string.
func (a *Agent) openWatch(ctx context.Context, base string, names []string, from int64) (*http.Response, error) {
	wr := wire.WatchRequest{Configs: names, Host: a.cfg.Host}
	if from > 0 {
		wr.From = &from
	}
	body, err := json.Marshal(wr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/watch", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		return resp, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.log.Info("the daemon does not take POST /v1/watch; watching with GET", "daemon", base)
	u := base + "/v1/watch?configs=" + url.QueryEscape(strings.Join(names, ",")) + "&host=" + url.QueryEscape(a.cfg.Host)
	if from > 0 {
		u += "&from=" + strconv.FormatInt(from, 10)
	}
	if req, err = http.NewRequestWithContext(ctx, http.MethodGet, u, nil); err != nil {
		return nil, err
	}
	return a.hc.Do(req)
}

// checkStore returns errStoreChanged if the response to a watch from
// revision from says that its daemon's store is not the one whose
// revisions the agent holds (Cfg-Store), or refuses the watch because its
// latest revision is below from (Cfg-Latest-Revision): a store made
// again, or restored from an older copy. Waiting for such a daemon to
// reach from would serve stale configs for as long as it takes, maybe
// forever.
func (a *Agent) checkStore(resp *http.Response, store string, from int64) error {
	if from == 0 {
		return nil // a snapshot: nothing held to compare
	}
	a.mu.Lock()
	held := a.store
	a.mu.Unlock()
	if store != "" && held != "" && store != held {
		return fmt.Errorf("%w: the daemon serves store %s, the agent holds revisions of store %s", errStoreChanged, store, held)
	}
	if latest, err := strconv.ParseInt(resp.Header.Get(wire.HeaderLatestRevision), 10, 64); err == nil && latest < from && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: the daemon's latest revision is %d, the agent holds revision %d", errStoreChanged, latest, from)
	}
	return nil
}

// causeOr returns the reason ctx was canceled, if it was, else err.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// activityReader resets timer to d whenever it reads a byte.
type activityReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (r *activityReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.timer.Reset(r.d)
	}
	return n, err
}

// reportLoop reports to the daemons at start, every ReportEvery and
// after every change, until ctx is done.
func (a *Agent) reportLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.ReportEvery)
	defer tick.Stop()
	for {
		a.report(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.reportNow:
		}
	}
}

func (a *Agent) report(ctx context.Context) {
	a.mu.Lock()
	rep := wire.HostReport{Labels: a.cfg.Labels, Configs: sortedKeys(a.subs), Applied: a.applied, Metrics: a.cfg.Metrics}
	for _, name := range slices.Sorted(maps.Keys(a.overrides)) {
		o := a.overrides[name]
		rep.Overrides = append(rep.Overrides, wire.AppliedOverride{ID: o.ID, Config: name, Version: o.Version})
	}
	body, _ := json.Marshal(rep)
	start := a.daemon
	a.mu.Unlock()
	var errs []error
	for i := range a.daemons {
		base := a.daemons[(start+i)%len(a.daemons)]
		err := a.post(ctx, base+"/v1/hosts/"+url.PathEscape(a.cfg.Host), body)
		if err == nil {
			return
		}
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		a.log.Debug("report failed", "err", errors.Join(errs...))
	}
}

func (a *Agent) post(ctx context.Context, u string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %w", u, httpError(resp))
	}
	io.Copy(io.Discard, resp.Body)
	return nil
}
