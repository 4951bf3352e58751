package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// Options configures a Client.
type Options struct {
	// AgentURL is the base URL of the host's agent (http://127.0.0.1:PORT).
	AgentURL string
	// CacheDir is the agent's cache directory (cfg agent --cache-dir),
	// read directly when the agent does not answer. Empty disables the
	// fallback.
	CacheDir string
	// HTTPClient makes the requests to the agent. If nil, a client with a
	// 10s timeout is used for Get. Watch streams ignore the timeout.
	HTTPClient *http.Client
	// PollInterval is how often Watch reads the cache and retries the
	// agent while the agent is down; 1s if zero.
	PollInterval time.Duration
	// Logger receives what Watch has to say (a change of store); nil
	// discards it.
	Logger *slog.Logger
}

// Config is one version of a config.
type Config struct {
	Name     string
	Revision int64  // the revision that last changed the config
	Commit   string // the git commit of Revision
	Type     string // the Thrift type of a compiled config, empty for raw configs
	Data     []byte // the config's bytes (canonical JSON for compiled configs)
	// FromCache is set when the agent did not answer and the config was
	// read from its on-disk cache; it may be stale.
	FromCache bool
	// Override and OverrideVersion are set while a canary's override is
	// served to this host instead of Revision's data: Data is then the
	// candidate config under test. Overrides never reach the cache.
	Override        string
	OverrideVersion int64
}

// same reports whether c and d are the same version of a config.
func (c Config) same(d Config) bool {
	return c.Revision == d.Revision && c.Override == d.Override && c.OverrideVersion == d.OverrideVersion
}

// Decode unmarshals the config's data (JSON) into v.
func (c Config) Decode(v any) error {
	if err := json.Unmarshal(c.Data, v); err != nil {
		return fmt.Errorf("decoding config %q: %w", c.Name, err)
	}
	return nil
}

// ErrNotFound is returned (wrapped) by Get for a config that does not exist.
var ErrNotFound = errors.New("config not found")

// Client reads configs through the host's agent. It is safe for
// concurrent use.
type Client struct {
	opts        Options
	log         *slog.Logger
	agent       *wire.Client // for Get; nil without an agent URL
	watcher     *wire.Client // for Watch: no overall timeout
	idleTimeout time.Duration
}

// New returns a Client. At least one of AgentURL and CacheDir is required.
func New(opts Options) (*Client, error) {
	if opts.AgentURL == "" && opts.CacheDir == "" {
		return nil, errors.New("client: neither an agent URL nor a cache directory")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, log: log, idleTimeout: 15 * time.Second}
	if opts.AgentURL != "" {
		hc := opts.HTTPClient
		if hc == nil {
			hc = &http.Client{Timeout: 10 * time.Second}
		}
		wc := *hc
		wc.Timeout = 0
		var err error
		if c.agent, err = wire.NewClient(opts.AgentURL, "", hc); err != nil {
			return nil, fmt.Errorf("client: agent URL %q: want http://host:port", opts.AgentURL)
		}
		if c.watcher, err = wire.NewClient(opts.AgentURL, "", &wc); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// unreachable wraps a failure to talk to the agent at all.
type unreachable struct{ err error }

func (e unreachable) Error() string { return "agent unreachable: " + e.err.Error() }
func (e unreachable) Unwrap() error { return e.err }

// Get returns the named config from the agent. If the agent does not
// answer (it is down, or the request fails in transport), Get reads the
// agent's cache directory instead and sets FromCache. Data in the cache
// that fails its checksum is never returned: Get then returns an error
// wrapping cache.ErrDamaged.
func (c *Client) Get(ctx context.Context, name string) (Config, error) {
	if err := repo.CheckName(name); err != nil {
		return Config{}, err
	}
	if c.agent == nil {
		return c.readCache(name, nil)
	}
	cfg, err := c.getAgent(ctx, name)
	var u unreachable
	if errors.As(err, &u) && ctx.Err() == nil {
		return c.readCache(name, err)
	}
	return cfg, err
}

func (c *Client) getAgent(ctx context.Context, name string) (Config, error) {
	cv, err := c.agent.Config(ctx, name)
	if se, ok := errors.AsType[*wire.StatusError](err); ok {
		if se.Code == http.StatusNotFound {
			return Config{}, fmt.Errorf("config %q: %w: agent: %s", name, ErrNotFound, se.Msg)
		}
		return Config{}, fmt.Errorf("config %q: agent: %s", name, se.Msg)
	}
	if err != nil {
		return Config{}, unreachable{err}
	}
	return Config{Name: name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Data: cv.Data,
		Override: cv.Override, OverrideVersion: cv.OverrideVersion}, nil
}

// readCache reads the config from the agent's cache; agentErr is why the
// agent was not asked or did not answer.
func (c *Client) readCache(name string, agentErr error) (Config, error) {
	if c.opts.CacheDir == "" {
		return Config{}, agentErr
	}
	cv, err := cache.Read(c.opts.CacheDir, name)
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			err = fmt.Errorf("%w (%w)", ErrNotFound, err)
		}
		if agentErr != nil {
			return Config{}, fmt.Errorf("config %q: %w; cache: %w", name, agentErr, err)
		}
		return Config{}, fmt.Errorf("config %q: cache: %w", name, err)
	}
	return Config{Name: name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Data: cv.Data, FromCache: true}, nil
}

// Decode gets the named config and unmarshals its data (JSON) into v.
func (c *Client) Decode(ctx context.Context, name string, v any) error {
	cfg, err := c.Get(ctx, name)
	if err != nil {
		return err
	}
	return cfg.Decode(v)
}

// Watch calls fn with the named config's current value as soon as it is
// known, then with every newer version, in revision order, until ctx is
// done; it then returns ctx.Err(). Calls to fn are made one at a time
// from Watch's goroutine. A canary's override and its removal are
// versions too: fn gets the override's data (Override set), then the
// committed config again when the override goes.
//
// Watch follows the agent's local watch stream and reconnects to it,
// starting each stream from the agent's current value. While the agent is down
// it reads the agent's cache every PollInterval (delivering versions
// with FromCache set; a damaged entry is logged, not delivered) and
// retries the agent. A config that does not
// exist yet is delivered when it is created; a deletion is not delivered
// (fn keeps the last value), but a config created again is.
//
// Revision numbers belong to the daemons' store: when the agent says its
// revisions are of another store than the last version delivered (the
// store was made again, and the agent resynchronised with it), or its
// current version has a lower revision than the last one delivered (the
// store was restored from an older copy), Watch delivers the agent's
// current version whatever its revision, and logs why.
func (c *Client) Watch(ctx context.Context, name string, fn func(Config)) error {
	if err := repo.CheckName(name); err != nil {
		return err
	}
	var have Config
	var haveStore string
	// deliver passes cfg, of the store identified by store, to fn if it is
	// newer than what fn has, or if it is the agent's current version
	// (current) while what fn has is of another store or a later revision
	// (the agent resynchronised with another store, or with an older copy
	// of its store).
	deliver := func(cfg Config, store string, current bool) {
		switch {
		case store != "" && haveStore != "" && store != haveStore:
			c.log.Info("store changed: taking the agent's version", "config", name, "store", store, "revision", cfg.Revision,
				"previous_store", haveStore, "previous_revision", have.Revision)
		case current && cfg.Revision < have.Revision:
			c.log.Info("the agent's revision went back: taking its version", "config", name, "store", store, "revision", cfg.Revision,
				"previous_revision", have.Revision)
		case cfg.Revision > have.Revision || cfg.Revision == have.Revision && !cfg.same(have):
		default:
			return
		}
		have = cfg
		if store != "" {
			haveStore = store
		}
		fn(cfg)
	}
	var cacheErr string // the last error reading the cache
	for {
		connected := false
		if c.watcher != nil {
			connected, _ = c.watchAgent(ctx, name, deliver)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if connected {
			// The stream broke: reconnect almost at once.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if c.opts.CacheDir != "" {
			cv, err := cache.Read(c.opts.CacheDir, name)
			switch {
			case err == nil:
				st, _ := cache.ReadState(c.opts.CacheDir)
				deliver(Config{Name: name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Data: cv.Data, FromCache: true}, st.Store, false)
			case !errors.Is(err, cache.ErrNotFound) && err.Error() != cacheErr:
				// Said once, not at every poll.
				c.log.Warn("reading the agent's cache", "config", name, "err", err)
			}
			cacheErr = ""
			if err != nil {
				cacheErr = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.opts.PollInterval):
		}
	}
}

// watchAgent follows one local watch stream, from a snapshot, until it
// fails; it reports whether the agent accepted the watch. A stream silent
// for idleTimeout (the agent sends heartbeats) ends.
func (c *Client) watchAgent(ctx context.Context, name string, deliver func(Config, string, bool)) (bool, error) {
	w, err := c.watcher.Watch(ctx, wire.WatchRequest{Configs: []string{name}}, wire.WatchOptions{GET: true, Idle: c.idleTimeout})
	if err != nil {
		return false, err
	}
	defer w.Close()
	for {
		ev, err := w.Next()
		if err != nil {
			return true, err
		}
		for _, wc := range ev.Configs {
			if wc.Name == name && !wc.Deleted {
				deliver(Config{Name: name, Revision: wc.Revision, Commit: wc.Commit, Type: wc.Type, Data: wc.Data,
					Override: wc.Override, OverrideVersion: wc.OverrideVersion}, ev.Store, ev.Type == wire.Snapshot)
			}
		}
	}
}
