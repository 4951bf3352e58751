package agent

import (
	"context"
	"time"

	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// heldOverride is an override the agent serves, and when it stops
// serving it unless the daemon says otherwise: the override's lease,
// counted on the agent's clock from when the daemon last sent it. A
// daemon renewing a lease sends the override again, so an agent cut off
// from every daemon drops an abandoned override by itself.
type heldOverride struct {
	wire.Override
	until time.Time
}

// overrideSweep is how often the agent looks for overrides whose lease
// ran out.
const overrideSweep = 250 * time.Millisecond

// applyOverrides replaces the overrides the agent serves with list, the
// overrides in effect for this host among its configs (an "overrides"
// watch event), and tells the local watchers of every config whose
// served data changed. Overrides are kept in memory only: the cache
// holds committed revisions, so a restarted agent, or an application
// reading the cache, gets the committed config.
func (a *Agent) applyOverrides(list []wire.Override) {
	now := time.Now()
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	next := map[string]heldOverride{}
	for _, o := range list {
		if a.subs[o.Config] && repo.CheckName(o.Config) == nil && o.Data != nil {
			next[o.Config] = heldOverride{Override: o, until: now.Add(time.Duration(o.LeaseSeconds) * time.Second)}
		}
	}
	var changed []string
	for name, o := range a.overrides {
		if n, ok := next[name]; !ok || n.ID != o.ID || n.Version != o.Version {
			changed = append(changed, name)
		}
	}
	for name := range next {
		if _, ok := a.overrides[name]; !ok {
			changed = append(changed, name)
		}
	}
	a.overrides = next
	a.broadcastLocked(a.applied, changed)
	a.mu.Unlock()
	if len(changed) > 0 {
		a.log.Info("overrides changed", "configs", changed, "overrides", len(next))
		signal(a.reportNow)
	}
}

// expireOverrides drops overrides whose lease ran out on the agent's
// clock, until ctx is done.
func (a *Agent) expireOverrides(ctx context.Context) {
	t := time.NewTicker(overrideSweep)
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
		var expired []string
		for name, o := range a.overrides {
			if now.After(o.until) {
				delete(a.overrides, name)
				expired = append(expired, name)
			}
		}
		a.broadcastLocked(a.applied, expired)
		a.mu.Unlock()
		a.applyMu.Unlock()
		if len(expired) > 0 {
			a.log.Warn("override lease ran out without word from a daemon; serving the committed config", "configs", expired)
			signal(a.reportNow)
		}
	}
}

// effectiveLocked returns the config as the agent serves it: the
// override's data if one is in effect, else the held version; false if
// the agent has neither, or holds the config's deletion.
func (a *Agent) effectiveLocked(name string) (wire.Config, bool) {
	cv, held := a.configs[name]
	o, overridden := a.overrides[name]
	switch {
	case overridden:
		compiled := o.Compiled
		return wire.Config{Name: name, Revision: cv.Revision, Commit: cv.Commit, Type: o.Type, Compiled: &compiled, Data: o.Data,
			Override: o.ID, OverrideVersion: o.Version}, true
	case held && !cv.Deleted:
		return toWire(cv), true
	}
	return wire.Config{}, false
}

func names(cvs []cache.ConfigVersion) []string {
	out := make([]string, len(cvs))
	for i, cv := range cvs {
		out[i] = cv.Name
	}
	return out
}
