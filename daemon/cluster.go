package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cfg-dev/cfg/internal/backoff"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// SharedStore is a store that several daemons share (store.Etcd): each of
// them follows the revisions published (Follow) and the overrides set
// (FollowOverrides), and the one elected (Lead) tails the branch and
// publishes.
type SharedStore interface {
	store.Store
	// Follow calls fn with every revision published after after, in
	// order, each once, until ctx ends or fn fails.
	Follow(ctx context.Context, after int64, fn func(store.Revision) error) error
	// FollowOverrides calls fn with every override, at once and whenever
	// one is set, renewed or removed, until ctx ends or fn fails.
	FollowOverrides(ctx context.Context, fn func([]wire.Override) error) error
	// Lead campaigns as member to publish, and runs lead while elected,
	// its leadership under a lease of ttl seconds.
	Lead(ctx context.Context, member string, ttl int, lead func(ctx context.Context) error) error
	// Leader names the member that publishes, or "" if none does.
	Leader(ctx context.Context) (string, error)
}

var _ SharedStore = (*store.Etcd)(nil)

// DefaultElectionTTL is the lease of the publisher's election on a
// shared store: when the publishing daemon's process dies, another one
// publishes within it.
const DefaultElectionTTL = 10 * time.Second

// After a failure to follow or lead a shared store, the daemon waits
// retryFirst before it tries again, a wait doubled after each failure up
// to retryShared, and retryFirst again once an attempt got somewhere.
const (
	retryFirst  = 50 * time.Millisecond
	retryShared = 5 * time.Second
)

// leaderTimeout bounds the read of the publisher's name for /healthz and
// /metrics; its answer (or failure) serves every caller for leaderFresh,
// so that those endpoints, open to anyone at any rate, cost etcd at most
// about one read a second per daemon.
const (
	leaderTimeout = 2 * time.Second
	leaderFresh   = time.Second
)

// defaultMember names the daemon in the publisher's election: its host
// and process id.
func defaultMember() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// cluster is the state of a daemon over a shared store.
type cluster struct {
	store SharedStore
	// leading is set while the daemon is the elected publisher.
	leading atomic.Bool
	// handoff is the revision the daemon last published, with its
	// configs, for the follower to take rather than read it again.
	handoff atomic.Pointer[published]
	// following is set once the follower follows the store, and cleared
	// while it fails (reason says why).
	following atomic.Bool
	reason    atomic.Value // string
	// election is the last read of the publisher's name (leader).
	election electionRead
}

// electionRead shares a read of the publisher's name among its callers:
// one read at a time, its answer kept for fresh.
type electionRead struct {
	fresh  time.Duration
	flight singleflight.Group
	mu     sync.Mutex
	at     time.Time // when the last read ended; zero before the first
	leader string
	err    error
}

// last returns the last read's answer, and whether it is fresh (false
// before the first read).
func (e *electionRead) last() (leader string, fresh bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader, !e.at.IsZero() && time.Since(e.at) < e.fresh, e.err
}

// publishing reports whether the daemon publishes: always with a store
// of its own, while elected with a shared one.
func (d *Daemon) publishing() bool {
	return d.cluster == nil || d.cluster.leading.Load()
}

// announce makes r the latest revision: counted, and sent to the watch
// streams.
func (d *Daemon) announce(r *published) {
	// The metrics first: whoever sees the new latest revision sees them.
	d.metrics.latest.Set(float64(r.Number))
	d.latest.Store(r.Number)
	if dropped := d.hub.publish(r); dropped > 0 {
		d.metrics.dropped.WithLabelValues(dropBehind).Add(float64(dropped))
		d.log.Info("dropped watchers that fell behind", "count", dropped)
	}
	// The streams it woke run now, on this thread, rather than once
	// another thread wakes to take them.
	runtime.Gosched()
}

// follow feeds the hub with the revisions published in the shared store,
// by whichever daemon, until ctx is done: every daemon of a cluster,
// the publisher included, learns of revisions this way only.
func (d *Daemon) follow(ctx context.Context) {
	c := d.cluster
	after := d.latest.Load()
	b := backoff.New(retryFirst, retryShared)
	c.following.Store(true)
	for {
		err := c.store.Follow(ctx, after, func(r store.Revision) error {
			p, err := d.loadPublished(ctx, r)
			if err != nil {
				return err
			}
			d.announce(p)
			after = r.Number
			b.Reset()
			c.following.Store(true)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		c.reason.Store(fmt.Sprintf("following the store: %v", err))
		c.following.Store(false)
		d.log.Error("following the store", "after", after, "err", err)
		if b.Sleep(ctx) != nil {
			return
		}
	}
}

// loadPublished returns revision r for the hub: the one this daemon just
// published, if it is r, or else r with its configs read from the store,
// once for every stream; a revision whose configs' data is more than
// hubBytes goes without them (each stream reads what it watches).
func (d *Daemon) loadPublished(ctx context.Context, r store.Revision) (*published, error) {
	if p := d.cluster.handoff.Load(); p != nil && p.Number == r.Number && p.Commit == r.Commit {
		d.cluster.handoff.CompareAndSwap(p, nil)
		return p, nil
	}
	p := &published{Revision: r}
	errBig := errors.New("over hubBytes")
	err := d.store.Since(ctx, r.Number-1, store.All(), func(c store.ConfigVersion) error {
		if c.Revision != r.Number {
			return errPast
		}
		if p.size += int64(len(c.Data)); p.size > hubBytes {
			return errBig
		}
		p.configs = append(p.configs, c)
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errPast):
	case errors.Is(err, errBig), errors.Is(err, store.ErrCompacted):
		// A stream reads the configs itself, or, once they are
		// compacted, starts again from a snapshot.
		p.configs, p.size, p.stored = nil, 0, true
	default:
		return nil, fmt.Errorf("reading revision %d: %w", r.Number, err)
	}
	return p, nil
}

// lead campaigns to publish, tails the branch while elected, and
// campaigns again when the leadership is lost, until ctx is done.
func (d *Daemon) lead(ctx context.Context) {
	c := d.cluster
	ttl := int((d.cfg.ElectionTTL + time.Second - 1) / time.Second)
	b := backoff.New(retryFirst, retryShared)
	for {
		err := c.store.Lead(ctx, d.cfg.Member, ttl, func(lctx context.Context) error {
			d.log.Info("publishing: elected", "member", d.cfg.Member)
			b.Reset()
			d.reason.Store(fmt.Sprintf("the tailer has not read branch %q yet", d.cfg.Branch))
			d.ready.Store(false)
			c.leading.Store(true)
			defer c.leading.Store(false)
			d.tail(lctx)
			return lctx.Err()
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrLeadershipLost) {
			d.log.Warn("publishing: leadership lost; campaigning again", "member", d.cfg.Member, "err", err)
		} else {
			d.log.Error("campaigning to publish", "member", d.cfg.Member, "err", err)
		}
		if b.Sleep(ctx) != nil {
			return
		}
	}
}

// leader names the daemon that publishes: this one with a store of its
// own, the elected member with a shared one ("" if none is).
// The read is the daemon's, not the caller's: a caller that goes away
// stops waiting for it, and the others still get its answer.
func (d *Daemon) leader(ctx context.Context) (string, error) {
	if d.cluster == nil {
		return d.cfg.Member, nil
	}
	e := &d.cluster.election
	if leader, fresh, err := e.last(); fresh {
		return leader, err
	}
	select {
	case r := <-e.flight.DoChan("", d.readElection):
		return r.Val.(string), r.Err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// readElection reads the publisher's name from the shared store, for
// leader, and keeps the answer.
func (d *Daemon) readElection() (any, error) {
	rctx, cancel := context.WithTimeout(d.ctx, leaderTimeout)
	defer cancel()
	leader, err := d.cluster.store.Leader(rctx)
	e := &d.cluster.election
	e.mu.Lock()
	defer e.mu.Unlock()
	e.at, e.leader, e.err = time.Now(), leader, err
	return leader, err
}

// unreachable says why the daemon cannot reach its shared store, as its
// last read of the election found: "" with a store of its own, before the
// first read and while reads work. It never waits for etcd: when the last
// answer is older than the election read's freshness, it starts a read
// for the next caller.
func (d *Daemon) unreachable() string {
	if d.cluster == nil {
		return ""
	}
	e := &d.cluster.election
	_, fresh, err := e.last()
	if !fresh {
		e.flight.DoChan("", d.readElection) // buffered: nobody need take its answer
	}
	if err != nil {
		return electionFailed(err)
	}
	return ""
}

// electionFailed says why a read of the publisher's election failed, as
// /healthz and heartbeats do.
func electionFailed(err error) string {
	return fmt.Sprintf("reading the publisher's election: %v", err)
}

// unreachableError cuts short the reads of a shared store that a client
// waits for, once the daemon finds that it cannot reach the store.
type unreachableError struct{ reason string }

func (e *unreachableError) Error() string {
	return "the daemon cannot reach its store: " + e.reason
}

// whileReachable runs read, the reads of the store that a client waits
// for, and returns its error. With a shared store, read's context ends
// once the daemon finds that it cannot reach the store, and the error is
// then an *unreachableError: at once if the daemon's last read of the
// election failed, or else when a read of the election fails that it
// makes after read has run for leaderFresh, and again every leaderFresh
// while read runs (the read /healthz and heartbeats share). Cut off from
// etcd, a read would otherwise wait for as long as its client does.
func (d *Daemon) whileReachable(ctx context.Context, read func(context.Context) error) error {
	if d.cluster == nil {
		return read(ctx)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if reason := d.unreachable(); reason != "" {
		cancel(&unreachableError{reason})
	} else {
		watch := time.AfterFunc(leaderFresh, func() {
			for {
				if _, err := d.leader(ctx); err != nil {
					// A no-op if read is done or its client gone.
					cancel(&unreachableError{electionFailed(err)})
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(leaderFresh):
				}
			}
		})
		defer watch.Stop()
	}
	err := read(ctx)
	if u, ok := errors.AsType[*unreachableError](context.Cause(ctx)); ok && err != nil {
		return u
	}
	return err
}
