package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/configs/{name...}", a.getConfig)
	mux.HandleFunc("GET /v1/watch", a.watch)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.Error{Error: fmt.Sprintf(format, args...)})
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// getConfig serves a config from memory, fetching it from a daemon on
// its first request.
func (a *Agent) getConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := repo.CheckName(name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	a.mu.Lock()
	cv, ok := a.configs[name]
	_, overridden := a.overrides[name]
	a.mu.Unlock()
	if !ok && !overridden {
		var err error
		cv, err = a.fetch(r.Context(), name)
		switch {
		case errors.Is(err, errNotFound):
			writeError(w, http.StatusNotFound, "unknown config %q", name)
			return
		case errors.Is(err, errSubscriptionFull):
			writeError(w, http.StatusServiceUnavailable, "config %q: %v", name, err)
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, "config %q is not cached and no daemon answered: %v", name, err)
			return
		}
	}
	a.mu.Lock()
	c, ok := a.effectiveLocked(name)
	latest := max(a.applied, c.Revision)
	store := a.store
	a.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "config %q was deleted at revision %d", name, cv.Revision)
		return
	}
	h := w.Header()
	h.Set(wire.HeaderStore, store)
	h.Set(wire.HeaderRevision, strconv.FormatInt(c.Revision, 10))
	h.Set(wire.HeaderLatestRevision, strconv.FormatInt(latest, 10))
	h.Set(wire.HeaderCommit, c.Commit)
	h.Set(wire.HeaderType, c.Type)
	if c.Override != "" {
		h.Set(wire.HeaderOverride, c.Override+"/"+strconv.FormatInt(c.OverrideVersion, 10))
	}
	if *c.Compiled {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Length", strconv.Itoa(len(c.Data)))
	w.Write(c.Data)
}

// A watcher is one local watch stream.
type watcher struct {
	names map[string]bool
	ch    chan wire.Event
	// overflow is closed when the watcher fell behind, or when the agent
	// resynchronised with another store: its client starts again.
	overflow chan struct{}
}

// broadcastLocked sends the configs named changed, as the agent now
// serves them, to the local watchers that name them. A watcher whose
// buffer is full is dropped: its client reconnects and catches up.
func (a *Agent) broadcastLocked(rev int64, changed []string) {
	if len(changed) == 0 {
		return
	}
	for w := range a.watchers {
		ev := wire.Event{Type: wire.Update, Revision: rev, Store: a.store}
		for _, name := range changed {
			if !w.names[name] {
				continue
			}
			if c, ok := a.effectiveLocked(name); ok {
				ev.Configs = append(ev.Configs, c)
			} else if cv, held := a.configs[name]; held {
				ev.Configs = append(ev.Configs, toWire(cv)) // a deletion
			}
		}
		if len(ev.Configs) == 0 {
			continue
		}
		ev.Commit = ev.Configs[0].Commit
		select {
		case w.ch <- ev:
		default:
			close(w.overflow)
			delete(a.watchers, w)
		}
	}
}

// watch serves a local watch stream from the agent's own state.
func (a *Agent) watch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("configs") == "" {
		writeError(w, http.StatusBadRequest, "missing configs")
		return
	}
	if n := strings.Count(q.Get("configs"), ",") + 1; n > MaxWatchConfigs {
		writeError(w, http.StatusBadRequest, "configs: got %d names, want at most %d", n, MaxWatchConfigs)
		return
	}
	names := map[string]bool{}
	for n := range strings.SplitSeq(q.Get("configs"), ",") {
		if n == "*" {
			writeError(w, http.StatusBadRequest, "configs=* is not served by the agent; name the configs")
			return
		}
		if err := repo.CheckName(n); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		names[n] = true
	}
	from := int64(-1)
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "from: got %q, want a revision", s)
			return
		}
		from = n
	}

	// Fetch what the agent neither holds nor subscribes to yet, and
	// subscribe to every name, so that a config that does not exist yet
	// arrives when it is created. Once no daemon answers, the watch
	// stream fetches the rest when it opens.
	a.mu.Lock()
	var missing []string
	for n := range names {
		if _, ok := a.configs[n]; !ok && !a.subs[n] {
			missing = append(missing, n)
		}
	}
	a.mu.Unlock()
	slices.Sort(missing)
	absent := map[string]int64{}
	for _, n := range missing {
		_, err := a.fetch(r.Context(), n)
		if r.Context().Err() != nil {
			return
		}
		if nf, ok := errors.AsType[*notFound](err); ok {
			absent[n] = nf.latest
			continue
		}
		if err != nil {
			a.log.Debug("watch: fetching config", "config", n, "err", err)
			break
		}
	}
	if err := a.addSubscriptions(sortedKeys(names), absent); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, errSubscriptionFull) {
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, "%v", err)
		return
	}

	wt := &watcher{names: names, ch: make(chan wire.Event, 256), overflow: make(chan struct{})}
	a.mu.Lock()
	var first *wire.Event
	if from < 0 {
		ev := wire.Event{Type: wire.Snapshot, Revision: a.applied, Store: a.store, Commit: a.appliedCommit, Configs: []wire.Config{}}
		for _, n := range sortedKeys(names) {
			if c, ok := a.effectiveLocked(n); ok {
				ev.Configs = append(ev.Configs, c)
				ev.Revision = max(ev.Revision, c.Revision)
			}
		}
		first = &ev
	} else {
		ev := wire.Event{Type: wire.Update, Store: a.store}
		for _, n := range sortedKeys(names) {
			cv, ok := a.configs[n]
			_, overridden := a.overrides[n]
			if ok && cv.Revision > from && cv.Deleted {
				ev.Configs = append(ev.Configs, toWire(cv))
			} else if c, ok := a.effectiveLocked(n); ok && (c.Revision > from || overridden) {
				ev.Configs = append(ev.Configs, c)
			}
		}
		if len(ev.Configs) > 0 {
			slices.SortFunc(ev.Configs, func(x, y wire.Config) int { return cmp.Compare(x.Revision, y.Revision) })
			last := ev.Configs[len(ev.Configs)-1]
			ev.Revision, ev.Commit = last.Revision, last.Commit
			first = &ev
		}
	}
	a.watchers[wt] = struct{}{}
	store := a.store
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.watchers, wt)
		a.mu.Unlock()
	}()

	events := wire.NewEventWriter(w, 30*time.Second)
	if events.WriteHeader(store) != nil {
		return
	}
	send := func(ev wire.Event) bool { return events.Write(ev) == nil }
	if first != nil && !send(*first) {
		return
	}
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wt.overflow:
			return
		case ev := <-wt.ch:
			if !send(ev) {
				return
			}
		case <-tick.C:
			a.mu.Lock()
			rev, store := a.applied, a.store
			a.mu.Unlock()
			if !send(wire.Event{Type: wire.Heartbeat, Revision: rev, Store: store}) {
				return
			}
		}
	}
}
