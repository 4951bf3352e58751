package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// Config configures an Agent.
type Config struct {
	// Daemons are the base URLs of the daemons to fail over between, in
	// order of preference (http://host:port). At least one is required.
	Daemons []string
	// Host is the name the agent reports itself under; os.Hostname() if empty.
	Host string
	// Labels are reported with the host (cluster, region, role, …).
	Labels map[string]string
	// CacheDir is the on-disk cache (see package cache). Required.
	CacheDir string
	// Metrics is where this host's application metrics are scraped
	// (its Prometheus endpoint), reported to the daemon for canaries.
	Metrics string
	// Token is the daemon's write token, sent with host reports.
	Token string
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// ReportEvery is how often the agent reports to the daemon besides
	// after every update; 10s if zero.
	ReportEvery time.Duration
	// HeartbeatTimeout is how long the agent waits for any byte of the
	// daemon's watch stream before it gives the daemon up and fails over;
	// 15s (three times the daemon's default heartbeat) if zero.
	HeartbeatTimeout time.Duration
	// Heartbeat is how often the agent sends a heartbeat on its local
	// watch streams; 5s if zero.
	Heartbeat time.Duration
	// FetchTimeout bounds each attempt to fetch a config from a daemon on
	// its first request; 5s if zero.
	FetchTimeout time.Duration
	// MissingGrace is how long a subscribed config that a daemon said
	// does not exist stays subscribed after a local client last named it,
	// when no local watch stream names it; DefaultMissingGrace if zero.
	MissingGrace time.Duration
}

// Agent is the per-host agent. Create it with New and run it with Serve.
type Agent struct {
	cfg     Config
	daemons []*wire.Client
	log     *slog.Logger

	retryMin, retryMax time.Duration
	// The bounds of the subscription: MaxPending, MaxSubscriptionBytes.
	maxPending, maxSubBytes int

	// applyMu serializes changes to the held configs: cache writes, then
	// memory, in the order they are decided.
	applyMu sync.Mutex

	mu      sync.Mutex
	configs map[string]cache.ConfigVersion // held versions and tombstones
	subs    map[string]bool                // the subscription
	// subGen counts the changes of subs, subBytes is the size of its
	// names (nameCost), and missing holds the subscribed configs of
	// which the agent holds no live version.
	subGen        uint64
	subBytes      int
	missing       map[string]missingName
	applied       int64
	appliedCommit string
	// saved is the applied revision state.json holds: the one the agent
	// reports, so that a report never runs ahead of what a restarted
	// agent resumes from.
	saved int64
	// store is the identity of the store the held revisions are of (""
	// while unknown); resync is set while the agent must take a snapshot
	// of the daemon's store as the whole truth, whatever its revisions.
	store     string
	resync    bool
	daemon    int                     // index of the daemon the subscription uses
	connected string                  // URL of the daemon streaming to us, if any
	overrides map[string]heldOverride // by config name
	watchers  map[*watcher]struct{}
	flights   map[string]*flight

	subChanged chan struct{}
	reportNow  chan struct{}
	served     bool
}

// New returns an agent that serves the configs in cfg.CacheDir at once
// and subscribes to them when Serve runs.
func New(cfg Config) (*Agent, error) {
	if len(cfg.Daemons) == 0 {
		return nil, errors.New("agent: no daemon URLs")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("agent: no cache directory")
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 4}}
	var daemons []*wire.Client
	for _, d := range cfg.Daemons {
		c, err := wire.NewClient(d, cfg.Token, hc)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		daemons = append(daemons, c)
	}
	if cfg.Metrics != "" {
		if u, err := url.Parse(cfg.Metrics); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("agent: metrics URL %q: want http://host:port/path", cfg.Metrics)
		}
	}
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: host name: %w", err)
		}
		cfg.Host = h
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = 10 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 15 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Second
	}
	if cfg.MissingGrace <= 0 {
		cfg.MissingGrace = DefaultMissingGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cache.MakeDir(cfg.CacheDir); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	ld, err := cache.Load(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	for _, d := range ld.Damaged {
		if d.Config != "" {
			log.Warn("damaged cache entry removed; fetching the config again", "config", d.Config, "file", d.Path, "err", d.Err)
		} else {
			log.Warn("damaged cache state; resynchronising from a snapshot", "file", d.Path, "err", d.Err)
		}
	}
	st := ld.State
	a := &Agent{
		cfg:           cfg,
		daemons:       daemons,
		log:           log,
		retryMin:      200 * time.Millisecond,
		retryMax:      10 * time.Second,
		maxPending:    MaxPending,
		maxSubBytes:   MaxSubscriptionBytes,
		configs:       map[string]cache.ConfigVersion{},
		subs:          map[string]bool{},
		missing:       map[string]missingName{},
		applied:       st.Revision,
		saved:         st.Revision,
		appliedCommit: st.Commit,
		store:         st.Store,
		overrides:     map[string]heldOverride{},
		watchers:      map[*watcher]struct{}{},
		flights:       map[string]*flight{},
		subChanged:    make(chan struct{}, 1),
		reportNow:     make(chan struct{}, 1),
	}
	now := time.Now()
	for _, cv := range ld.Configs {
		a.configs[cv.Name] = cv
		a.addSubLocked(cv.Name)
		if cv.Deleted {
			a.missingLocked(cv.Name, cv.Revision, now)
		}
	}
	for _, d := range ld.Damaged {
		if d.Config != "" {
			a.addSubLocked(d.Config)
			a.missingLocked(d.Config, 0, now)
		}
	}
	// With state.json damaged, the store the held revisions are of is
	// unknown: take the daemon's snapshot as the whole truth.
	a.resync = ld.StateDamaged && len(a.configs) > 0
	// The names subscribed without a version, within the bounds: an
	// earlier agent may have taken more.
	dropped, pending := 0, a.pendingLocked()
	for _, name := range st.Configs {
		if a.subs[name] {
			continue
		}
		if repo.CheckName(name) != nil || pending >= a.maxPending || a.subBytes+nameCost(name) > a.maxSubBytes {
			dropped++
			continue
		}
		a.addSubLocked(name)
		a.missingLocked(name, 0, now)
		pending++
	}
	if dropped > 0 {
		log.Warn("state.json subscribes to more configs without a version than the agent takes; dropping the others", "dropped", dropped,
			"kept", pending, "max_pending", a.maxPending)
	}
	log.Info("agent cache loaded", "dir", cfg.CacheDir, "configs", len(a.configs), "applied", a.applied, "store", a.store)
	return a, nil
}

// Serve serves the local API on ln and keeps the subscription to the
// daemons until ctx is done, then returns nil; it returns an error if
// serving ln fails. Serve may be called once.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.mu.Lock()
	if a.served {
		a.mu.Unlock()
		return errors.New("agent: Serve called twice")
	}
	a.served = true
	a.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           a.handler(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.subscribe(ctx) })
	wg.Go(func() { a.expireOverrides(ctx) })
	wg.Go(func() { a.dropMissing(ctx) })
	wg.Go(func() { a.reportLoop(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		scancel()
	case err = <-errc:
		err = fmt.Errorf("agent: %w", err)
	}
	cancel()
	wg.Wait()
	return err
}

// Status is the body of the agent's GET /v1/status.
type Status struct {
	Host string `json:"host"`
	// Daemon is the daemon whose watch stream the agent is reading, empty
	// while it has none.
	Daemon  string `json:"daemon"`
	Applied int64  `json:"applied"`
	// Store is the identity of the store whose revisions the agent holds.
	Store   string         `json:"store,omitempty"`
	Configs []ConfigStatus `json:"configs"`
}

// ConfigStatus is one config in a Status.
type ConfigStatus struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"` // 0 while the agent does not hold it
	Deleted  bool   `json:"deleted,omitempty"`
	// Override and OverrideVersion name the override the agent serves
	// instead of the revision's data, if any.
	Override        string `json:"override,omitempty"`
	OverrideVersion int64  `json:"override_version,omitempty"`
}

// Status returns what the agent holds and where it gets updates from.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Host: a.cfg.Host, Daemon: a.connected, Applied: a.applied, Store: a.store, Configs: []ConfigStatus{}}
	for _, name := range slices.Sorted(maps.Keys(a.subs)) {
		cv := a.configs[name]
		o := a.overrides[name]
		st.Configs = append(st.Configs, ConfigStatus{Name: name, Revision: cv.Revision, Deleted: cv.Deleted, Override: o.ID, OverrideVersion: o.Version})
	}
	return st
}

func (a *Agent) stateLocked() cache.State {
	return cache.State{Revision: a.applied, Commit: a.appliedCommit, Store: a.store, Configs: slices.Sorted(maps.Keys(a.subs))}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// fromWire converts a config of an event, whose commit is evCommit;
// held is the version the agent holds.
func fromWire(c wire.Config, evRev int64, evCommit string, held cache.ConfigVersion) cache.ConfigVersion {
	cv := cache.ConfigVersion{Name: c.Name, Revision: c.Revision, Commit: c.Commit, Type: c.Type, Deleted: c.Deleted, Data: c.Data}
	if cv.Commit == "" && c.Revision == evRev {
		cv.Commit = evCommit
	}
	switch {
	case c.Compiled != nil:
		cv.Compiled = *c.Compiled
	case held.Revision > 0 && !held.Deleted:
		cv.Compiled = held.Compiled
	default:
		cv.Compiled = guessCompiled(c.Name, c.Type)
	}
	if cv.Deleted {
		cv.Data, cv.Type, cv.Compiled = nil, "", false
	} else if cv.Data == nil {
		cv.Data = []byte{}
	}
	return cv
}

// guessCompiled tells a compiled config from a raw one when the daemon
// does not say: compiled configs have a type, or else are named without
// an extension (x.json is named x), while raw configs keep theirs.
func guessCompiled(name, typ string) bool {
	return typ != "" || !strings.Contains(path.Base(name), ".")
}

func toWire(cv cache.ConfigVersion) wire.Config {
	c := wire.Config{Name: cv.Name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Deleted: cv.Deleted, Data: cv.Data}
	if !cv.Deleted {
		c.Compiled = &cv.Compiled
	}
	return c
}

// applyEvent applies an update or snapshot from the daemon's stream of
// the subscription as it was at generation gen (subGen): it writes the
// configs that are newer than the held ones to the cache, then memory,
// advances the applied revision and writes the state, and tells local
// watchers. The applied revision advances only if the subscription is
// still the stream's: a config added since the stream began may have
// changes the stream did not carry.
func (a *Agent) applyEvent(ev wire.Event, gen uint64) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()

	a.mu.Lock()
	if ev.Type == wire.Snapshot && (a.resync || ev.Store != "" && a.store != "" && ev.Store != a.store) {
		a.mu.Unlock()
		if ev.Revision == 0 {
			// A store that has published nothing yet is no truth to
			// take: keep serving what the agent holds until it has.
			return errNothingPublished
		}
		return a.resyncFrom(ev, gen)
	}
	adopted := ev.Store != "" && a.store == ""
	if adopted {
		a.store = ev.Store
	}
	if ev.Type == wire.Update && ev.Revision <= a.applied && !adopted {
		a.mu.Unlock()
		return nil // already applied: a daemon replayed too much
	}
	var todo []cache.ConfigVersion
	seen := map[string]bool{}
	for _, c := range ev.Configs {
		if !a.subs[c.Name] || repo.CheckName(c.Name) != nil {
			continue
		}
		seen[c.Name] = true
		if c.Revision > a.configs[c.Name].Revision {
			todo = append(todo, fromWire(c, ev.Revision, ev.Commit, a.configs[c.Name]))
		}
	}
	if ev.Type == wire.Snapshot {
		// A snapshot holds every named config that exists; the others
		// were deleted by the snapshot's revision at the latest.
		for name := range a.subs {
			if cv, ok := a.configs[name]; ok && !seen[name] && !cv.Deleted && cv.Revision < ev.Revision {
				todo = append(todo, cache.ConfigVersion{Name: name, Revision: ev.Revision, Commit: ev.Commit, Deleted: true})
			}
		}
	}
	a.mu.Unlock()

	for _, cv := range todo {
		if err := a.writeCache(cv); err != nil {
			return err
		}
	}

	a.mu.Lock()
	a.heldLocked(todo, ev, seen)
	advanced := ev.Revision > a.applied && a.subGen == gen
	if advanced {
		a.applied, a.appliedCommit = ev.Revision, ev.Commit
	}
	st := a.stateLocked()
	a.broadcastLocked(ev.Revision, names(todo))
	a.mu.Unlock()
	if len(todo) == 0 && !advanced && !adopted {
		return nil
	}

	if err := a.writeState(st); err != nil {
		return err
	}
	if len(todo) > 0 {
		a.log.Info("applied", "revision", ev.Revision, "configs", len(todo))
	}
	signal(a.reportNow)
	return nil
}

// resyncFrom applies a snapshot of the daemon's store as the whole truth,
// when the agent's revisions are of another store (or the store lost
// revisions the agent holds): every subscribed config takes the
// snapshot's version, or a deletion at the snapshot's revision, whatever
// revisions it held, so that the revisions held are the store's again.
// The applied revision becomes the snapshot's, and local watch streams,
// which hold revisions of the old store, end so that their clients start
// again from a snapshot.
func (a *Agent) resyncFrom(ev wire.Event, gen uint64) error {
	a.mu.Lock()
	var todo []cache.ConfigVersion
	seen := map[string]bool{}
	for _, c := range ev.Configs {
		if !a.subs[c.Name] || repo.CheckName(c.Name) != nil {
			continue
		}
		seen[c.Name] = true
		held := a.configs[c.Name]
		if cv := fromWire(c, ev.Revision, ev.Commit, held); !sameVersion(cv, held) {
			todo = append(todo, cv)
		}
	}
	for name := range a.subs {
		held, ok := a.configs[name]
		if ok && !seen[name] && (!held.Deleted || held.Revision > ev.Revision) {
			todo = append(todo, cache.ConfigVersion{Name: name, Revision: ev.Revision, Commit: ev.Commit, Deleted: true})
		}
	}
	oldStore, oldApplied := a.store, a.applied
	for name, m := range a.missing {
		m.rev = 0 // a revision of the old store
		a.missing[name] = m
	}
	a.mu.Unlock()

	for _, cv := range todo {
		if err := a.writeCache(cv); err != nil {
			return err
		}
	}

	a.mu.Lock()
	a.heldLocked(todo, ev, seen)
	a.store, a.resync = ev.Store, false
	a.applied, a.appliedCommit = 0, ""
	if a.subGen == gen {
		a.applied, a.appliedCommit = ev.Revision, ev.Commit
	}
	st := a.stateLocked()
	for w := range a.watchers {
		close(w.overflow)
		delete(a.watchers, w)
	}
	a.mu.Unlock()

	if err := a.writeState(st); err != nil {
		return err
	}
	a.log.Info("resynchronised from a snapshot", "store", ev.Store, "revision", ev.Revision, "previous_store", oldStore, "previous_revision", oldApplied, "configs_changed", len(todo))
	signal(a.reportNow)
	return nil
}

// heldLocked records the versions of todo, written to the cache for
// event ev, as held; seen holds the configs ev carries. The configs a
// snapshot lacks that the agent holds no version of do not exist.
func (a *Agent) heldLocked(todo []cache.ConfigVersion, ev wire.Event, seen map[string]bool) {
	now := time.Now()
	for _, cv := range todo {
		a.configs[cv.Name] = cv
		if cv.Deleted {
			a.missingLocked(cv.Name, cv.Revision, now)
		} else {
			delete(a.missing, cv.Name)
		}
	}
	if ev.Type == wire.Snapshot {
		for name := range a.missing {
			if _, held := a.configs[name]; !held && !seen[name] {
				a.missingLocked(name, ev.Revision, now)
			}
		}
	}
}

// sameVersion reports whether the agent holds exactly cv.
func sameVersion(cv, held cache.ConfigVersion) bool {
	return cv.Revision == held.Revision && cv.Commit == held.Commit && cv.Type == held.Type && cv.Compiled == held.Compiled &&
		cv.Deleted == held.Deleted && bytes.Equal(cv.Data, held.Data)
}

// applyFetched adds a config fetched with GET at the daemon's latest
// revision latest, from the store identified by store, to the held
// configs and the subscription. A config of another store than the one
// the agent holds revisions of is not mixed with them: the agent
// resynchronises first (errStoreChanged).
func (a *Agent) applyFetched(cv cache.ConfigVersion, latest int64, store string) (cache.ConfigVersion, error) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()

	a.mu.Lock()
	if store != "" && store != a.store {
		switch {
		case a.store == "":
			a.store = store // the first store the agent learns of
		case len(a.subs) > 0:
			a.resync = true
			a.mu.Unlock()
			signal(a.subChanged)
			return cache.ConfigVersion{}, fmt.Errorf("%w: the daemon serves store %s, the agent holds revisions of store %s", errStoreChanged, store, a.store)
		default:
			// Nothing held: take the daemon's store as it is.
			a.store, a.applied, a.appliedCommit = store, 0, ""
		}
	}
	if !a.subs[cv.Name] {
		if err := a.fitsLocked([]string{cv.Name}, 0); err != nil {
			a.mu.Unlock()
			return cache.ConfigVersion{}, err
		}
	}
	held, isHeld := a.configs[cv.Name]
	newer := cv.Revision > held.Revision
	a.mu.Unlock()
	if newer {
		if err := a.writeCache(cv); err != nil {
			return cache.ConfigVersion{}, err
		}
	}

	a.mu.Lock()
	added := !a.subs[cv.Name]
	if added && len(a.subs) == 0 && latest > a.applied {
		// The only config held is current as of latest.
		a.applied, a.appliedCommit = latest, ""
	}
	a.addSubLocked(cv.Name)
	if newer {
		a.configs[cv.Name] = cv
		delete(a.missing, cv.Name)
		a.broadcastLocked(cv.Revision, []string{cv.Name})
	} else if isHeld {
		cv = held
	}
	st := a.stateLocked()
	a.mu.Unlock()

	if err := a.writeState(st); err != nil {
		return cache.ConfigVersion{}, err
	}
	if added {
		signal(a.subChanged)
		signal(a.reportNow)
	}
	return cv, nil
}

// cacheError is a failure to write the cache: the agent's own, not a
// daemon's, so the agent backs off rather than fail over.
type cacheError struct{ err error }

func (e *cacheError) Error() string { return e.err.Error() }
func (e *cacheError) Unwrap() error { return e.err }

func (a *Agent) writeCache(cv cache.ConfigVersion) error {
	if err := cache.Write(a.cfg.CacheDir, cv); err != nil {
		return &cacheError{err}
	}
	return nil
}

// writeState writes st to state.json; applyMu is held, so that states are
// written in the order they were taken.
func (a *Agent) writeState(st cache.State) error {
	if err := cache.WriteState(a.cfg.CacheDir, st); err != nil {
		return &cacheError{err}
	}
	a.mu.Lock()
	a.saved = st.Revision
	a.mu.Unlock()
	return nil
}
