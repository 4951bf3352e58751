package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/repo"
)

// Type is the Thrift type of a gate config, as the compile records it.
const Type = "Gate"

// Schema is the schema that declares Type, as load() names it: a struct
// of that name in another schema is not a gate.
const Schema = "@cfg//gate.thrift"

// ErrNotLoaded fails the checks of a followed gate before its first version
// has arrived.
var ErrNotLoaded = errors.New("not loaded yet")

// Version identifies a version of a followed config: the committed revision,
// or a canary's override of it.
type Version struct {
	Name     string
	Revision int64 // the revision that last changed the config
	Commit   string
	// Override and OverrideVersion are set while a canary's override is
	// served to this host.
	Override        string
	OverrideVersion int64
	// FromCache says the version was read from the agent's cache while the
	// agent was down.
	FromCache bool
}

// VersionOf returns the Version of a config delivered by the client library.
func VersionOf(c client.Config) *Version {
	return &Version{Name: c.Name, Revision: c.Revision, Commit: c.Commit, Override: c.Override, OverrideVersion: c.OverrideVersion, FromCache: c.FromCache}
}

func (v *Version) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d", v.Revision)
	if v.Override != "" {
		fmt.Fprintf(&b, " with override %s/%d", v.Override, v.OverrideVersion)
	}
	if v.FromCache {
		b.WriteString(" (from the agent's cache)")
	}
	return b.String()
}

// FollowOptions configure Follow.
type FollowOptions struct {
	// Options compile every version (the application's restraints).
	Options
	// OnUpdate, if set, is called after each version the client library
	// delivers has been put in effect or refused, one call at a time.
	OnUpdate func(Status)
	// Logger receives a line for each version refused; nil discards them.
	Logger *slog.Logger
}

// Status is the state of a followed gate.
type Status struct {
	Name string
	// Gate and Version are the gate in effect and its version; nil until
	// a version compiles.
	Gate    *Gate
	Version *Version
	// Latest is the latest version delivered, and Err why it is not in
	// effect (it does not compile here: an unknown restraint, say), or nil.
	Latest *Version
	Err    error
}

// Live is a gate followed through the client library: each version the
// agent delivers (each commit that changes it, a canary's override and its
// removal) is compiled once and then swapped in atomically, so that a check
// sees one version whole, and reads take no lock. When the agent is down,
// the client library reads its cache: a Live gate keeps deciding with the
// last version it had, or loads one from the cache. A version that does
// not compile (it names a restraint this application does not register)
// leaves the previous one in effect, and is reported in Status and logged.
// Live is safe for concurrent use.
type Live struct {
	name      string
	opts      FollowOptions
	log       *slog.Logger
	cur       atomic.Pointer[liveState]
	notLoaded error
	loaded    chan struct{}
	loadOnce  sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

type liveState struct {
	gate    *Gate
	version *Version
	latest  *Version
	err     error
}

// Follow follows the gate config name through c until ctx is done or Stop
// is called. Checks fail closed with ErrNotLoaded until the first version
// arrives (Wait waits for it).
func Follow(ctx context.Context, c *client.Client, name string, opts FollowOptions) (*Live, error) {
	if err := repo.CheckName(name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Live{
		name:      name,
		opts:      opts,
		log:       opts.Logger,
		notLoaded: fmt.Errorf("gate %q: %w", name, ErrNotLoaded),
		loaded:    make(chan struct{}),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	go func() {
		defer close(l.done)
		c.Watch(ctx, name, l.apply)
	}()
	return l, nil
}

// Name returns the gate's config name.
func (l *Live) Name() string { return l.name }

// apply compiles a delivered version and puts it in effect.
func (l *Live) apply(cfg client.Config) {
	v := VersionOf(cfg)
	next := &liveState{latest: v}
	var g *Gate
	var err error
	if cfg.Type != "" && cfg.Type != Type {
		err = fmt.Errorf("config %q is a %s, not a %s of @cfg//gate.thrift", cfg.Name, cfg.Type, Type)
	} else {
		g, err = Compile(cfg.Data, l.opts.Options)
	}
	if err != nil {
		next.err = fmt.Errorf("gate %q %s: %w", l.name, v, err)
		if prev := l.cur.Load(); prev != nil {
			next.gate, next.version = prev.gate, prev.version
		}
		l.log.Error("gate version refused; the previous one stays in effect", "gate", l.name, "version", v.String(), "err", err)
	} else {
		next.gate, next.version = g, v
	}
	l.cur.Store(next)
	l.loadOnce.Do(func() { close(l.loaded) })
	if l.opts.OnUpdate != nil {
		l.opts.OnUpdate(next.status(l.name))
	}
}

func (s *liveState) status(name string) Status {
	return Status{Name: name, Gate: s.gate, Version: s.version, Latest: s.latest, Err: s.err}
}

// Check decides the gate for u with the version in effect (Gate.Check), and
// sets Decision.Version. Before any version has arrived, or when none has
// compiled, it fails closed with the reason.
func (l *Live) Check(u Unit) Decision {
	s := l.cur.Load()
	if s == nil {
		return Decision{Rule: -1, Err: l.notLoaded}
	}
	if s.gate == nil {
		return Decision{Rule: -1, Err: s.err, Version: s.latest}
	}
	d := s.gate.Check(u)
	d.Version = s.version
	return d
}

// Status returns the gate's state.
func (l *Live) Status() Status {
	s := l.cur.Load()
	if s == nil {
		return Status{Name: l.name, Err: l.notLoaded}
	}
	return s.status(l.name)
}

// Wait waits until the first version has arrived (from the agent or its
// cache) and returns nil, or the version's error if it did not compile, or
// ctx's error.
func (l *Live) Wait(ctx context.Context) error {
	select {
	case <-l.loaded:
		if s := l.cur.Load(); s.gate == nil {
			return s.err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gate %q: %w", l.name, context.Cause(ctx))
	}
}

// Stop stops following the gate and waits until the following goroutine
// has returned; checks keep using the version in effect.
func (l *Live) Stop() {
	l.cancel()
	<-l.done
}
