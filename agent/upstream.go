package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
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
	errResubscribe = errors.New("subscription changed")
	// errStoreChanged: the daemon's store is not the one whose revisions
	// the agent holds, or it lacks revisions the agent holds; the agent
	// resynchronises from a snapshot.
	errStoreChanged = errors.New("store changed")
	// errNothingPublished: the daemon to resynchronise with has not
	// published a revision yet.
	errNothingPublished = errors.New("resynchronising: the daemon's store has no revision yet")
)

// fetched is a config read from a daemon with GET: the config, the
// daemon's latest revision and its store.
type fetched struct {
	cv     cache.ConfigVersion
	latest int64
	store  string
}

// fetchFrom reads a config from one daemon.
func (a *Agent) fetchFrom(ctx context.Context, d *wire.Client, name string) (fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.FetchTimeout)
	defer cancel()
	c, err := d.Config(ctx, name)
	if se, ok := errors.AsType[*wire.StatusError](err); ok && se.Code == http.StatusNotFound {
		return fetched{}, &notFound{d.URL(), name, max(se.Latest, 0)}
	}
	if err != nil {
		return fetched{}, err
	}
	if c.Revision <= 0 {
		return fetched{}, fmt.Errorf("daemon %s: config %q: header %s: got %d, want a revision", d.URL(), name, wire.HeaderRevision, c.Revision)
	}
	cv := cache.ConfigVersion{Name: name, Revision: c.Revision, Commit: c.Commit, Type: c.Type, Compiled: c.Compiled, Data: c.Data}
	return fetched{cv, max(c.Latest, c.Revision), c.Store}, nil
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
		d := a.daemons[(start+i)%len(a.daemons)]
		f, err := a.fetchFrom(ctx, d, name)
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
		d := a.daemons[a.daemon]
		base := d.URL()
		a.mu.Unlock()
		if len(names) == 0 {
			select {
			case <-ctx.Done():
			case <-a.subChanged:
			}
			continue
		}

		progress, err := a.stream(ctx, d, names, gen, from)
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
		if m, ok := errors.AsType[*movingError](err); ok {
			a.mu.Lock()
			a.daemon = m.to
			next := a.daemons[m.to].URL()
			a.mu.Unlock()
			a.log.Warn("the daemon cannot reach its store; moving to one that is ready", "daemon", base, "next", next, "reason", m.reason)
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
			next := a.daemons[a.daemon].URL()
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

// stream reads one watch stream from d for names, the subscription at
// generation gen, from revision from (a snapshot if from is 0) and
// applies its events until it fails, the subscription changes
// (errResubscribe) or ctx is done. It reports whether it applied any
// event. A stream silent for HeartbeatTimeout, from the request on, ends
// (wire.ErrIdle).
func (a *Agent) stream(ctx context.Context, d *wire.Client, names []string, gen uint64, from int64) (progress bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	base := d.URL()

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

	// The subscription goes in the body of POST /v1/watch, whatever its
	// length; a daemon that does not take POST (405: an earlier daemon)
	// is asked with GET and a query string.
	wr := wire.WatchRequest{Configs: names, Host: a.cfg.Host}
	if from > 0 {
		wr.From = &from
	}
	w, err := d.Watch(sctx, wr, wire.WatchOptions{Idle: a.cfg.HeartbeatTimeout})
	if se, ok := errors.AsType[*wire.StatusError](err); ok {
		if err := a.checkStore(se.Store, se.Latest, from, false); err != nil {
			return false, err
		}
	}
	if err != nil {
		return false, causeOr(sctx, err)
	}
	defer w.Close()
	if w.Method == http.MethodGet {
		a.log.Info("the daemon does not take POST /v1/watch; watching with GET", "daemon", base)
	}
	store := w.Store
	if err := a.checkStore(store, w.Latest, from, true); err != nil {
		return false, err
	}
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
				f, err := a.fetchFrom(sctx, d, n)
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

	stayed := false // logged that no other daemon was ready
	for {
		ev, err := w.Next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("daemon closed the watch")
			}
			if errors.Is(err, wire.ErrIdle) {
				return progress, err
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
			if err == nil && ev.Unreachable != "" {
				if to, ok := a.readyDaemon(sctx); ok {
					err = &movingError{to: to, reason: ev.Unreachable}
				} else if !stayed {
					stayed = true
					a.log.Warn("the daemon cannot reach its store, and no other daemon is ready; staying", "daemon", base, "reason", ev.Unreachable)
				}
			}
		}
		if err != nil {
			return progress, err
		}
		progress = true
	}
}

// movingError ends a stream whose daemon cannot reach its store, for
// the daemon at index to, which answered that it is ready.
type movingError struct {
	to     int
	reason string // the daemon's, in its heartbeat
}

func (e *movingError) Error() string {
	return "the daemon cannot reach its store: " + e.reason
}

// probeTimeout bounds the wait for the other daemons' answers to
// readyDaemon.
const probeTimeout = 2 * time.Second

// readyDaemon asks every daemon but the current one whether it is ready
// (GET /healthz), all at once, and returns the first of them, in the
// order after the current one, that answered 200; false if none did (a
// store that no daemon reaches, or a single daemon).
func (a *Agent) readyDaemon(ctx context.Context) (int, bool) {
	a.mu.Lock()
	cur := a.daemon
	a.mu.Unlock()
	n := len(a.daemons)
	if n < 2 {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	ready := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		if i != cur {
			wg.Go(func() { ready[i] = a.daemons[i].Healthz(ctx) == nil })
		}
	}
	wg.Wait()
	for k := 1; k < n; k++ {
		if i := (cur + k) % n; ready[i] {
			return i, true
		}
	}
	return 0, false
}

// checkStore returns errStoreChanged if the answer to a watch from
// revision from says that its daemon's store is not the one whose
// revisions the agent holds (Cfg-Store), or refuses the watch because its
// latest revision is below from (Cfg-Latest-Revision; -1 if it does not
// say): a store made again, or restored from an older copy. Waiting for
// such a daemon to reach from would serve stale configs for as long as it
// takes, maybe forever.
func (a *Agent) checkStore(store string, latest, from int64, accepted bool) error {
	if from == 0 {
		return nil // a snapshot: nothing held to compare
	}
	a.mu.Lock()
	held := a.store
	a.mu.Unlock()
	if store != "" && held != "" && store != held {
		return fmt.Errorf("%w: the daemon serves store %s, the agent holds revisions of store %s", errStoreChanged, store, held)
	}
	if latest >= 0 && latest < from && !accepted {
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
	rep := wire.HostReport{Labels: a.cfg.Labels, Configs: sortedKeys(a.subs), Applied: a.saved, Metrics: a.cfg.Metrics}
	for _, name := range slices.Sorted(maps.Keys(a.overrides)) {
		o := a.overrides[name]
		rep.Overrides = append(rep.Overrides, wire.AppliedOverride{ID: o.ID, Config: name, Version: o.Version})
	}
	start := a.daemon
	a.mu.Unlock()
	var errs []error
	for i := range a.daemons {
		d := a.daemons[(start+i)%len(a.daemons)]
		rctx, cancel := context.WithTimeout(ctx, a.cfg.FetchTimeout)
		err := d.ReportHost(rctx, a.cfg.Host, rep)
		cancel()
		if err == nil {
			return
		}
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		a.log.Debug("report failed", "err", errors.Join(errs...))
	}
}
