package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cfg-dev/cfg/agent/cache"
)

// Bounds on what local clients can make the agent subscribe to, so that
// the subscription the agent sends its daemons stays one they take
// (docs/api.md, "Bounds").
const (
	// MaxWatchConfigs is the most configs one local watch request may
	// name.
	MaxWatchConfigs = 1000
	// MaxPending is the most configs the agent subscribes to while it
	// holds no version of them: not fetched yet (no daemon answered), or
	// not existing (yet).
	MaxPending = 256
	// MaxSubscriptionBytes bounds the names of the whole subscription, as
	// the JSON of the watch request that sends them to a daemon (which
	// reads at most 1 MiB).
	MaxSubscriptionBytes = 768 << 10
)

// DefaultMissingGrace is how long a subscribed config that a daemon said
// does not exist stays subscribed, unless a local watch stream names it
// or a local request asks for it again meanwhile.
const DefaultMissingGrace = 10 * time.Minute

// errSubscriptionFull is the answer to a local request that would take
// the subscription beyond its bounds.
var errSubscriptionFull = errors.New("the agent's subscription is full")

// missingName is a subscribed config of which the agent holds no live
// version: since is when it last became so or a local request last named
// it, rev the latest revision at which a daemon said it does not exist
// (0 until one has).
type missingName struct {
	since time.Time
	rev   int64
}

// nameCost is what name adds to the JSON list of the subscription.
func nameCost(name string) int {
	b, _ := json.Marshal(name)
	return len(b) + 1
}

// addSubLocked adds name to the subscription, without checking bounds.
func (a *Agent) addSubLocked(name string) {
	if a.subs[name] {
		return
	}
	a.subs[name] = true
	a.subBytes += nameCost(name)
	a.subGen++
}

// dropSubLocked removes name from the subscription.
func (a *Agent) dropSubLocked(name string) {
	if !a.subs[name] {
		return
	}
	delete(a.subs, name)
	delete(a.missing, name)
	a.subBytes -= nameCost(name)
	a.subGen++
}

// pendingLocked counts the subscribed configs the agent holds no version
// of.
func (a *Agent) pendingLocked() int {
	n := 0
	for name := range a.subs {
		if _, ok := a.configs[name]; !ok {
			n++
		}
	}
	return n
}

// fitsLocked returns errSubscriptionFull (wrapped, with the bound) if
// adding names, of which pending the agent holds no version of, would
// take the subscription beyond its bounds.
func (a *Agent) fitsLocked(names []string, pending int) error {
	cost := 0
	for _, n := range names {
		if !a.subs[n] {
			cost += nameCost(n)
		}
	}
	if a.subBytes+cost > a.maxSubBytes {
		return fmt.Errorf("%w: its names would take %d bytes, at most %d", errSubscriptionFull, a.subBytes+cost, a.maxSubBytes)
	}
	if pending > 0 {
		if n := a.pendingLocked() + pending; n > a.maxPending {
			return fmt.Errorf("%w: %d configs it holds no version of, at most %d (one a daemon says does not exist is dropped %v after a local client last named it)",
				errSubscriptionFull, n, a.maxPending, a.cfg.MissingGrace)
		}
	}
	return nil
}

// missingLocked records that the agent holds no live version of the
// subscribed config name, and that a daemon said so at revision rev (0 if
// none did).
func (a *Agent) missingLocked(name string, rev int64, now time.Time) {
	if !a.subs[name] {
		return
	}
	m, ok := a.missing[name]
	if !ok {
		m.since = now
	}
	m.rev = max(m.rev, rev)
	a.missing[name] = m
}

// addSubscriptions adds names to the subscription without fetching them,
// within its bounds; absent holds the names a daemon has just said do
// not exist, with the revision it said so at. Naming a config that is
// subscribed without a version starts its grace again.
func (a *Agent) addSubscriptions(names []string, absent map[string]int64) error {
	now := time.Now()
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	pending := 0
	for _, n := range names {
		if _, held := a.configs[n]; !held && !a.subs[n] {
			pending++
		}
	}
	if err := a.fitsLocked(names, pending); err != nil {
		a.mu.Unlock()
		return err
	}
	gen := a.subGen
	for _, n := range names {
		a.addSubLocked(n)
		if cv, held := a.configs[n]; held && !cv.Deleted {
			continue
		}
		a.missingLocked(n, absent[n], now)
		m := a.missing[n]
		m.since = now
		a.missing[n] = m
	}
	added := a.subGen != gen
	st := a.stateLocked()
	a.mu.Unlock()
	if !added {
		return nil
	}
	signal(a.subChanged)
	signal(a.reportNow)
	return a.writeState(st)
}

// dropMissing drops from the subscription, every grace/4 until ctx is
// done, the configs a daemon said do not exist (never did, or were
// deleted) more than grace ago, that no local watch stream names and no
// local request named since: a local client cannot make the agent keep
// names that do not exist.
func (a *Agent) dropMissing(ctx context.Context) {
	grace := a.cfg.MissingGrace
	t := time.NewTicker(max(grace/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		a.applyMu.Lock()
		a.mu.Lock()
		watched := map[string]bool{}
		for w := range a.watchers {
			maps.Copy(watched, w.names)
		}
		var dropped, tombstones []string
		for name, m := range a.missing {
			if m.rev == 0 || now.Sub(m.since) < grace || watched[name] {
				continue
			}
			if _, ok := a.configs[name]; ok {
				delete(a.configs, name) // a tombstone
				tombstones = append(tombstones, name)
			}
			a.dropSubLocked(name)
			dropped = append(dropped, name)
		}
		st := a.stateLocked()
		a.mu.Unlock()
		var err error
		for _, name := range tombstones {
			err = errors.Join(err, cache.Remove(a.cfg.CacheDir, name))
		}
		if len(dropped) > 0 {
			err = errors.Join(err, a.writeState(st))
		}
		a.applyMu.Unlock()
		if len(dropped) == 0 {
			continue
		}
		slices.Sort(dropped)
		a.log.Info("dropped subscribed configs that do not exist", "configs", len(dropped), "first", dropped[0], "grace", grace)
		if err != nil {
			a.log.Warn("writing the cache after dropping configs", "err", err)
		}
		signal(a.subChanged)
		signal(a.reportNow)
	}
}
