package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/internal/durable"
	"github.com/cfg-dev/cfg/store"
)

// Defaults of Config's optional fields.
const (
	DefaultHeartbeat               = 5 * time.Second
	DefaultPoll                    = time.Second
	DefaultWatchBuffer             = 256
	DefaultWatchQueueBytes         = 16 << 20
	DefaultMaxConnections          = 10000
	DefaultMaxWatches              = 8000
	DefaultMaxWatchesPerAddress    = 100
	DefaultMaxWatchBytes           = 16 << 20
	DefaultMaxWatchBytesPerAddress = 4 << 20
	DefaultReadTimeout             = 30 * time.Second
	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultWriteTimeout            = 10 * time.Second
	DefaultIdleTimeout             = 60 * time.Second
)

// Bounds of requests that are not configurable.
const (
	// MaxHeaderBytes bounds a request's line and headers together: a
	// request over it gets 431.
	MaxHeaderBytes = 64 << 10
	// RetryAfter is the Retry-After of a watch refused for being over a
	// limit, and of a request refused because the daemon cannot reach its
	// shared store, in seconds.
	RetryAfter = 5
)

// StoreFile is the name of the store in Config.DataDir; its identity is
// recorded beside it, in StoreFile+store.IdentitySuffix.
const StoreFile = "cfg.db"

// MaxBody is the largest request body the daemon reads (413 beyond).
const MaxBody = 1 << 20

// hostsFlushEvery is how often host reports are written to the store.
const hostsFlushEvery = 5 * time.Second

// hostReportTTL is how long the store keeps a host's last report: a host
// that has not reported for that long is not loaded at the next start.
const hostReportTTL = 24 * time.Hour

// Config configures a Daemon.
type Config struct {
	// RepoPath is the config repository: a directory in a git work tree
	// (the config repository root), or a bare repository.
	RepoPath string
	// Branch is the branch to tail; empty means the branch HEAD names
	// when the daemon starts.
	Branch string
	// DataDir holds the store (StoreFile); it is made if missing. It is
	// unused when Store is set.
	DataDir string
	// Store, if set, is the store the daemon serves, in place of the one
	// in DataDir. The daemon does not close it: whoever opened it closes
	// it, after Close. A SharedStore (store.Etcd) makes the daemon one of
	// a cluster: every daemon sharing the store serves reads and watch
	// streams, following what is published; the one elected tails the
	// branch and publishes.
	Store store.Store
	// Member names the daemon in the election of the publisher of a
	// shared store, and in /healthz and /metrics (default HOST:PID).
	Member string
	// ElectionTTL is the lease of the publisher's election on a shared
	// store, rounded up to whole seconds (DefaultElectionTTL if zero):
	// when the publisher's process dies, another daemon publishes within
	// it.
	ElectionTTL time.Duration
	// KeepRevisions, if positive, is how many of the latest revisions
	// keep their history: the publisher compacts the store (store.Store
	// Compact) after every revision it publishes. Zero keeps every
	// revision's history. A watch from a compacted revision gets a
	// snapshot.
	KeepRevisions int64
	// Token authorizes writes (POST, PUT, DELETE). Without one the daemon
	// is read-only: it answers every write with 403 (ReadOnlyMessage).
	Token string
	// Heartbeat is the interval of heartbeat events on watch streams
	// (DefaultHeartbeat if zero).
	Heartbeat time.Duration
	// Poll is how often the tailer reads the branch head when no file
	// system notification came (DefaultPoll if zero).
	Poll time.Duration
	// WatchBuffer is how many revisions a watch stream may fall behind
	// before the daemon closes it (DefaultWatchBuffer if zero); the
	// client then resumes with from=.
	WatchBuffer int
	// WatchQueueBytes is how much config data may wait to be written on
	// one watch stream (DefaultWatchQueueBytes if zero): a stream that
	// has revisions waiting is closed when the next one would take them
	// above it, as one that falls WatchBuffer revisions behind is.
	WatchQueueBytes int64
	// MaxConnections is how many connections the daemon serves at once;
	// others wait to be accepted. Zero means DefaultMaxConnections, or
	// the process's file descriptor limit minus ReservedFDs if that is
	// less; New refuses more than that.
	MaxConnections int
	// MaxWatches is how many watch streams the daemon serves at once
	// (DefaultMaxWatches if zero), and MaxWatchesPerAddress how many of
	// them one remote address may hold (DefaultMaxWatchesPerAddress if
	// zero); a watch above either is answered 503 with Retry-After.
	MaxWatches           int
	MaxWatchesPerAddress int
	// MaxWatchBytes bounds the parameters (query and body) of the watch
	// streams open at once (DefaultMaxWatchBytes if zero), and
	// MaxWatchBytesPerAddress those of one remote address
	// (DefaultMaxWatchBytesPerAddress if zero); a stream holds its
	// parameters, parsed, for as long as it lasts, and a watch above
	// either is answered 503 with Retry-After before its body is read. A
	// body counts by its Content-Length, 1 MiB without one. Neither may
	// be below 1 MiB, the largest body a watch may have.
	MaxWatchBytes           int64
	MaxWatchBytesPerAddress int64
	// ReadTimeout bounds reading a whole request, body included
	// (DefaultReadTimeout if zero), ReadHeaderTimeout its request line
	// and headers (DefaultReadHeaderTimeout if zero). IdleTimeout is how
	// long a keep-alive connection may wait for its next request
	// (DefaultIdleTimeout if zero).
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// WriteTimeout bounds writing a response (DefaultWriteTimeout if
	// zero); a watch stream, and a config's data, are written in pieces
	// of at most 32 KiB, each of which the client must take within
	// WriteTimeout, or the stream or response ends.
	WriteTimeout time.Duration
	// Logger receives the daemon's logs; nil discards them.
	Logger *slog.Logger
}

// Daemon publishes the revisions of a config repository and serves them
// over HTTP (docs/api.md). Its methods are safe for concurrent use.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	hist  *gitrepo.History
	hub   *hub
	// cluster is set over a shared store.
	cluster *cluster
	hosts   *hostRegistry
	// overrides are the overrides in effect.
	overrides *overrideSet
	metrics   *metrics
	handler   http.Handler
	// conns holds a place for every open connection (MaxConnections);
	// watches caps the watch streams.
	conns   chan struct{}
	watches *watchLimits
	// writing is the config data watch streams are writing (what they
	// have yet to read is the hub's).
	writing atomic.Int64

	// typesSeen is the record of types the tailer read last.
	typesSeen typesCache

	latest atomic.Int64 // the latest published revision
	// named is the highest revision the daemon has named as the latest
	// to a client (nameLatest).
	named  atomic.Int64
	ready  atomic.Bool  // the tailer has published or found the branch head
	reason atomic.Value // string: why the daemon is not ready

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	startOnce sync.Once
	wg        sync.WaitGroup // the tailer (or the follower and the campaign), the host flusher and the lease sweeper
	streams   sync.WaitGroup // watch streams that took their connection over
	streamsMu sync.Mutex     // held to add to streams, and to set closing
	closing   bool           // Close waits for the streams: none may be added
	closeOnce sync.Once
	closeErr  error
}

// setDefault sets *v to def unless it is positive.
func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// dataDirs makes Config.DataDir and its missing parents, each new one's
// parent synced, so that a power loss soon after the first start does
// not take back the directory with the store in it. A test replaces it
// to see that it does.
var dataDirs = durable.OS

// New opens the repository and the store in cfg.DataDir, which it checks
// whole (store.OpenBolt): a damaged store is a store.DamagedError; or it
// takes cfg.Store. The tailer starts with the first Serve.
func New(cfg Config) (*Daemon, error) {
	if cfg.DataDir == "" && cfg.Store == nil {
		return nil, errors.New("no data directory")
	}
	if cfg.KeepRevisions < 0 {
		return nil, fmt.Errorf("revisions to keep: got %d, want 0 (all) or more", cfg.KeepRevisions)
	}
	if cfg.Member == "" {
		cfg.Member = defaultMember()
	}
	setDefault(&cfg.ElectionTTL, DefaultElectionTTL)
	setDefault(&cfg.Heartbeat, DefaultHeartbeat)
	setDefault(&cfg.Poll, DefaultPoll)
	setDefault(&cfg.WatchBuffer, DefaultWatchBuffer)
	setDefault(&cfg.WatchQueueBytes, DefaultWatchQueueBytes)
	setDefault(&cfg.MaxWatches, DefaultMaxWatches)
	setDefault(&cfg.MaxWatchesPerAddress, DefaultMaxWatchesPerAddress)
	setDefault(&cfg.MaxWatchBytes, DefaultMaxWatchBytes)
	setDefault(&cfg.MaxWatchBytesPerAddress, DefaultMaxWatchBytesPerAddress)
	if cfg.MaxWatchBytesPerAddress < MaxBody || cfg.MaxWatchBytes < cfg.MaxWatchBytesPerAddress {
		return nil, fmt.Errorf("watch parameter bytes: got %d in all and %d per address, want at least %d per address (the largest watch body) and no more per address than in all",
			cfg.MaxWatchBytes, cfg.MaxWatchBytesPerAddress, MaxBody)
	}
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	fds, fdsKnown := fdLimit()
	conns, err := connLimits(cfg.MaxConnections, fds, fdsKnown)
	if err != nil {
		return nil, err
	}
	cfg.MaxConnections = conns
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hist, err := gitrepo.OpenHistory(cfg.RepoPath)
	if err != nil {
		return nil, err
	}
	if cfg.Branch == "" {
		if cfg.Branch, err = hist.HeadBranch(); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.RepoPath, err)
		}
	}
	st := cfg.Store
	if st == nil {
		if err := durable.MkdirAll(dataDirs, cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		if st, err = store.OpenBolt(filepath.Join(cfg.DataDir, StoreFile)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cfg: cfg, log: log, store: st, hist: hist, ctx: ctx, cancel: cancel,
		conns: make(chan struct{}, cfg.MaxConnections), watches: newWatchLimits(cfg.MaxWatches, cfg.MaxWatchesPerAddress, cfg.MaxWatchBytes, cfg.MaxWatchBytesPerAddress)}
	if shared, ok := st.(SharedStore); ok {
		d.cluster = &cluster{store: shared, election: electionRead{fresh: leaderFresh}}
	}
	fail := func(err error) (*Daemon, error) {
		cancel()
		d.closeStore()
		return nil, err
	}
	info, err := st.Latest(ctx)
	if err != nil {
		return fail(err)
	}
	d.latest.Store(info.Number)
	// A daemon of a cluster reads the hosts that reported to the others
	// from the store when asked (hostList).
	var hosts []store.Host
	if d.cluster == nil {
		if hosts, err = st.Hosts(ctx); err != nil {
			return fail(err)
		}
	}
	d.hosts = newHostRegistry(hosts)
	overrides, err := st.Overrides(ctx)
	if err != nil {
		return fail(err)
	}
	d.overrides = newOverrideSet(overrides)
	d.metrics = newMetrics(d)
	d.metrics.latest.Set(float64(info.Number))
	d.hub = newHub(cfg.WatchBuffer, cfg.WatchQueueBytes, cfg.Heartbeat)
	d.reason.Store(fmt.Sprintf("the tailer has not read branch %q yet", cfg.Branch))
	d.handler = d.routes()
	if cfg.Token == "" {
		log.Warn("read-only: started without a token; writes (host reports, canary overrides and runs) are refused with 403 until cfg serve is started with --token-file FILE or CFG_TOKEN")
	}
	return d, nil
}

// Handler returns the daemon's HTTP API, for serving it some other way
// than Serve; the tailer runs only once Serve has been called.
func (d *Daemon) Handler() http.Handler { return d.handler }

// Serve starts the tailer (on the first call) and serves the HTTP API on
// ln until ctx is done or Close is called; it then ends every watch stream,
// waits a few seconds for other requests, closes ln and returns nil. The
// tailer keeps running until Close. Connections on every listener Serve is
// given count against Config.MaxConnections together.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	if d.ctx.Err() != nil {
		return errors.New("daemon closed")
	}
	d.startOnce.Do(func() {
		if d.cluster != nil {
			// Every daemon follows the store; the elected one publishes.
			d.wg.Go(func() { d.follow(d.ctx) })
			d.wg.Go(func() { d.followOverrides(d.ctx) })
			d.wg.Go(func() { d.lead(d.ctx) })
		} else {
			d.wg.Go(func() { d.tail(d.ctx) })
		}
		d.wg.Go(func() { d.flushHosts(d.ctx) })
		d.wg.Go(func() { d.sweepOverrides(d.ctx) })
	})
	base, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	srv := &http.Server{
		Handler:           d.handler,
		ReadHeaderTimeout: d.cfg.ReadHeaderTimeout,
		ReadTimeout:       d.cfg.ReadTimeout,
		WriteTimeout:      d.cfg.WriteTimeout,
		IdleTimeout:       d.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(base, serveContextKey{}, base) },
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(newLimitListener(ln, d.conns)) }()
	select {
	case err := <-errc:
		return err
	case <-base.Done():
	}
	// Watch streams end with base; other requests get a few seconds.
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// closeWait bounds, from the start of Close, the wait for the store to
// take the hosts' last reports: a daemon cut off from etcd still stops
// (the publisher's election gives its leadership up within as long).
const closeWait = 5 * time.Second

// Close stops the tailer, ends every watch stream, writes the hosts'
// reports to the store (waiting at most closeWait) and closes it, unless
// it is Config.Store (its opener closes it). Serve calls in progress
// return.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		defer cancel()
		d.cancel()
		d.wg.Wait()
		d.hub.close()
		d.streamsMu.Lock()
		d.closing = true
		d.streamsMu.Unlock()
		d.streams.Wait()
		err := d.hosts.flush(ctx, d.store)
		if err != nil {
			d.log.Warn("stopping: the hosts' last reports were not saved", "err", err)
		}
		d.closeErr = errors.Join(err, d.closeStore())
	})
	return d.closeErr
}

// closeStore closes the store if the daemon opened it.
func (d *Daemon) closeStore() error {
	if d.cfg.Store != nil {
		return nil
	}
	return d.store.Close()
}

// flushHosts writes the hosts' reports to the store every hostsFlushEvery.
func (d *Daemon) flushHosts(ctx context.Context) {
	every(ctx, hostsFlushEvery, func() {
		if err := d.hosts.flush(ctx, d.store); err != nil && ctx.Err() == nil {
			d.log.Warn("saving host reports", "err", err)
		}
	})
}

// every calls fn every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// nameLatest returns the revision to name as the latest to a client that
// was shown revision n (0 if none): the highest of n, the latest revision
// the daemon announced and every revision it named before. A revision is
// in the store a moment before the daemon announces it, and a client may
// read it in that moment (the latest revision, a config it changed); a
// client told a revision is the latest is never told a lower one after.
func (d *Daemon) nameLatest(n int64) int64 {
	n = max(n, d.latest.Load())
	for {
		named := d.named.Load()
		if named >= n {
			return named
		}
		if d.named.CompareAndSwap(named, n) {
			return n
		}
	}
}
