package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cfg-dev/cfg/internal/backoff"
	"github.com/cfg-dev/cfg/wire"
)

// After a failure to read or watch the store (no leader, no member
// reachable), Follow and FollowOverrides wait followFirst before they try
// again, a wait doubled after each failure up to followRetry, and
// followFirst again once an attempt got somewhere.
const (
	followFirst = 50 * time.Millisecond
	followRetry = 5 * time.Second
)

// Follow calls fn with every revision published after the revision after,
// in order, each once, as they are published, until ctx ends or fn
// returns an error, which Follow returns. It is how a daemon that does
// not publish learns of revisions: one etcd watch of revs/, whatever the
// number of the daemon's own watchers.
//
// When the watch cannot go on (etcd compacted the revisions it was to
// resume from, the member lost its leader, the connection broke), Follow
// reads the revisions it missed from the store, in one range read of
// revs/, and watches again from the etcd revision of that read: a watch
// that fell behind a compaction costs one read, not a loop of errors.
// Failures to read are retried, at most followRetry apart.
func (s *Etcd) Follow(ctx context.Context, after int64, fn func(Revision) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.follow(ctx, after, 0, fn)
}

// follow is Follow, watching from etcd revision watchFrom first if it is
// not 0, rather than reading the store first.
func (s *Etcd) follow(ctx context.Context, after, watchFrom int64, fn func(Revision) error) error {
	ctx = clientv3.WithRequireLeader(ctx)
	last := after
	deliver := func(k, v []byte) error {
		r, err := decodeRecord(s.inner(bucketRevs, k), v)
		if err != nil {
			return s.damage(err)
		}
		if r.Number <= last {
			return nil
		}
		if r.Number != last+1 {
			return errGap
		}
		last = r.Number
		return fn(r)
	}
	b := backoff.New(followFirst, followRetry)
	for {
		if watchFrom == 0 {
			// Read what the watch would have brought.
			s.followReads.Add(1)
			resp, err := s.cli.Get(ctx, s.key(bucketRevs, revKey(last+1)), clientv3.WithRange(s.bucketEnd(bucketRevs)))
			if err != nil {
				if err := b.Sleep(ctx); err != nil {
					return err
				}
				continue
			}
			for _, kv := range resp.Kvs {
				err := deliver(kv.Key, kv.Value)
				if errors.Is(err, errGap) {
					err = s.damage(fmt.Errorf("%w: revision %d missing", ErrDamaged, last+1))
				}
				if err != nil {
					return err
				}
			}
			watchFrom = resp.Header.Revision + 1
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := s.cli.Watch(wctx, s.bucketStart(bucketRevs), clientv3.WithRange(s.bucketEnd(bucketRevs)), clientv3.WithRev(watchFrom), clientv3.WithFilterDelete())
		err := func() error {
			for resp := range ch {
				if resp.Err() != nil {
					return nil // read the store, then watch again
				}
				for _, ev := range resp.Events {
					err := deliver(ev.Kv.Key, ev.Kv.Value)
					if errors.Is(err, errGap) {
						return nil
					}
					if err != nil {
						return err
					}
				}
				b.Reset()
			}
			return ctx.Err()
		}()
		cancel()
		if err != nil {
			return err
		}
		watchFrom = 0
		if err := b.Sleep(ctx); err != nil {
			return err
		}
	}
}

// errGap: a watch brought a revision after one it did not bring.
var errGap = errors.New("revisions missed")

// leadRelease bounds the wait of Lead, once its member is done, to give
// the leadership up (resign, revoke its lease), in all: a member cut off
// from etcd gives up waiting, and its lease ends by itself.
const leadRelease = 5 * time.Second

// ErrLeadershipLost: Lead's member stopped being the publisher before its
// work was done.
var ErrLeadershipLost = errors.New("publisher leadership lost")

// Lead campaigns, as member, to be the one publisher of the store: it
// waits until elected (or ctx ends), then runs lead with a context that
// ends when ctx does or when the leadership is lost, and resigns once
// lead returns. The leadership lives under an etcd lease of ttl seconds,
// renewed while the process lives: when it dies, another member is
// elected within ttl seconds. Lead returns lead's error, or an error
// wrapping ErrLeadershipLost if the leadership ended first, or why the
// member was not elected.
//
// The election makes one publisher the rule, not a condition of safety:
// Append keeps revisions dense and whole even when a publisher that lost
// its leadership (paused past its lease) still appends.
func (s *Etcd) Lead(ctx context.Context, member string, ttl int, lead func(ctx context.Context) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	// The session and the election live in rel, which outlives ctx, so
	// that a member that stops (ctx ends) resigns and revokes its lease,
	// and the next member is elected at once rather than a ttl later, and
	// so that ctx ending is not taken for a lost leadership. Until the
	// session is made, ctx ending ends rel, and with it the wait for
	// etcd; once the member is done (ctx ends or lead returns), rel ends
	// leadRelease later: resigning and revoking, or etcd's cleanup of a
	// campaign cut short, which waits on its client's context, share that
	// one deadline, so that a member cut off from etcd still stops.
	rel, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	stop := context.AfterFunc(ctx, release)
	cli := clientv3.NewCtxClient(rel)
	cli.KV, cli.Lease, cli.Watcher = s.cli.KV, s.cli.Lease, s.cli.Watcher
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl), concurrency.WithContext(rel))
	if !stop() || err != nil {
		if err == nil {
			err = ctx.Err()
			session.Close()
		}
		return fmt.Errorf("campaigning to publish: %w", err)
	}
	defer session.Close()
	var releasing sync.Once
	finish := func() { releasing.Do(func() { time.AfterFunc(leadRelease, release) }) }
	defer finish()
	defer context.AfterFunc(ctx, finish)()
	e := concurrency.NewElection(session, s.prefix+"publisher/")
	if err := e.Campaign(ctx, member); err != nil {
		return fmt.Errorf("campaigning to publish: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	lost := make(chan struct{})
	go func() {
		select {
		case <-session.Done():
			close(lost)
			cancel()
		case <-lctx.Done():
		}
	}()
	err = lead(lctx)
	cancel()
	select {
	case <-lost:
		if err == nil || errors.Is(err, context.Canceled) {
			return fmt.Errorf("publishing as %q: %w", member, ErrLeadershipLost)
		}
		return fmt.Errorf("publishing as %q: %w (%w)", member, ErrLeadershipLost, err)
	default:
	}
	finish()
	e.Resign(rel)
	return err
}

// Leader returns the member that leads (Lead), or "" if none does.
func (s *Etcd) Leader(ctx context.Context) (string, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	resp, err := s.cli.Get(ctx, s.prefix+"publisher/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// bucketRenewed holds a key for each renewed override (RenewOverride),
// under the override's lease, so that a renewal that only keeps the lease
// alive is seen by FollowOverrides. Its name sorts just before
// "overrides/": one watch of the keys from "overrides-" to "overrides0"
// sees both buckets.
var bucketRenewed = []byte("overrides-renewed")

// FollowOverrides calls fn with every override, as Overrides returns
// them, at once and then whenever one is set, renewed, removed or its
// lease ends, until ctx ends or fn returns an error, which
// FollowOverrides returns. It is how a daemon learns of the overrides set
// through the others: one etcd watch of overrides/ and of the renewals;
// the overrides are read again after each batch of events (they are few:
// one per canary in progress). When the watch cannot go on, they are read
// again and watched from that read; failures are retried, at most
// followRetry apart.
func (s *Etcd) FollowOverrides(ctx context.Context, fn func([]wire.Override) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	ctx = clientv3.WithRequireLeader(ctx)
	// From "overrides-": overrides-renewed/ then overrides/.
	start, end := s.prefix+string(bucketOverrides)+"-", s.bucketEnd(bucketOverrides)
	b := backoff.New(followFirst, followRetry)
	for {
		list, rev, err := s.overrides(ctx)
		if err != nil {
			if errors.Is(err, ErrDamaged) {
				return err
			}
			if err := b.Sleep(ctx); err != nil {
				return err
			}
			continue
		}
		if err := fn(list); err != nil {
			return err
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := s.cli.Watch(wctx, start, clientv3.WithRange(end), clientv3.WithRev(rev+1))
		err = func() error {
			for resp := range ch {
				if resp.Err() != nil {
					return nil // read again, then watch again
				}
				// Events that came meanwhile are covered by one read.
				for len(ch) > 0 {
					if r := <-ch; r.Err() != nil {
						return nil
					}
				}
				list, _, err := s.overrides(ctx)
				if err != nil {
					if errors.Is(err, ErrDamaged) {
						return err
					}
					return nil
				}
				if err := fn(list); err != nil {
					return err
				}
				b.Reset()
			}
			return ctx.Err()
		}()
		cancel()
		if err != nil {
			return err
		}
		if err := b.Sleep(ctx); err != nil {
			return err
		}
	}
}
