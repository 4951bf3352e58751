package canary

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cfg-dev/cfg/canary/metrics"
	"github.com/cfg-dev/cfg/wire"
)

// The controller's tests run in simulated time: a model of a daemon and
// its hosts' agents (simFleet) and of the hosts' metrics (simProvider)
// on a fake clock that advances only when the controller waits on it.
// The model follows docs/api.md: an override and every renewal of it
// reach its hosts, whose agents serve it until its lease runs out on
// their clock; a commit is published by the daemon and applied by every
// host; hosts report what they serve. The real daemon and agents are
// tested in their packages, and the whole with real processes in
// cmd/cfg/canary_test.go.

// simStep is how far the simulated clock moves at a time.
const simStep = 100 * time.Millisecond

var simStart = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

type simRev struct {
	n      int64
	commit string
	data   string
	at     time.Time
}

type simOverride struct {
	o       wire.Override
	expires time.Time
}

// served is what a host served from a time on.
type served struct {
	at       time.Time
	data     string
	override string // ID/VERSION, or ""
}

type simHost struct {
	name    string
	labels  map[string]string
	metrics string // the URL its metrics are scraped at
	// ignoreOverrides makes the host's agent never serve an override;
	// from cutOff on (if set) it receives nothing from the daemon; lag
	// delays what the daemon sends it from then on, beyond the fleet's
	// delay.
	ignoreOverrides bool
	cutOff          time.Time
	lag             time.Duration
	// From quietFrom (if set) for quietFor, the host's reports do not
	// reach the daemon, which goes on giving the last one (quietReport,
	// taken at quietFrom) while it serves what it receives.
	quietFrom   time.Time
	quietFor    time.Duration
	quietReport *wire.Host

	applied int64
	data    string         // the committed data it holds
	ov      *wire.Override // the override it serves
	until   time.Time      // when its agent drops ov unless sent it again
	history []served
}

func (h *simHost) serving() served {
	if h.ov != nil {
		return served{data: string(h.ov.Data), override: fmt.Sprintf("%s/%d", h.ov.ID, h.ov.Version)}
	}
	return served{data: h.data}
}

// note records what h serves at t, if it changed.
func (h *simHost) note(t time.Time) {
	s := h.serving()
	if n := len(h.history); n > 0 && h.history[n-1].data == s.data && h.history[n-1].override == s.override {
		return
	}
	s.at = t
	h.history = append(h.history, s)
}

// delivery is the daemon's state for a host, reaching it at a time.
type delivery struct {
	at   time.Time
	host *simHost
	rev  simRev
	ovs  []wire.Override
}

type simFleet struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	config string
	// delay is the time from a change on the daemon to the hosts serving
	// and reporting it; publishLag from a commit to its publication.
	delay, publishLag time.Duration

	mu        sync.Mutex
	revs      []simRev
	pending   []simRev // commits not yet published
	overrides map[string]*simOverride
	runs      map[string]wire.Run
	hosts     []*simHost
	queue     []delivery
	deleted   time.Time       // when an override was last deleted
	retired   map[string]bool // the IDs removed: the daemon refuses to set them again
	renewLost bool            // renewals answer 404
	// renewStuck says which renewals (counted from 1) never answer: they
	// wait until their deadline, on the simulated clock.
	renewStuck func(n int) bool
	renewals   int
	// afterPut, if set, runs once a PUT of an override has set it,
	// before the daemon answers: an answer the caller may no longer
	// wait for.
	afterPut func()
	// From hostsDown for hostsDownFor, GET /v1/hosts fails.
	hostsDown    time.Time
	hostsDownFor time.Duration
	lines        []string
}

// newSim returns a fleet of n hosts (web-1...) running revision 1 of
// demo/service, "old".
func newSim(t *testing.T, n int) *simFleet {
	f := &simFleet{t: t, clock: clockwork.NewFakeClockAt(simStart), config: "demo/service", delay: 300 * time.Millisecond,
		publishLag: 500 * time.Millisecond, overrides: map[string]*simOverride{}, retired: map[string]bool{}, runs: map[string]wire.Run{}}
	f.revs = []simRev{{n: 1, commit: "c1", data: "old", at: simStart}}
	for i := range n {
		name := fmt.Sprintf("web-%d", i+1)
		h := &simHost{name: name, labels: map[string]string{"zone": fmt.Sprintf("z%d", i%2)}, metrics: "http://" + name + ".test/metrics", applied: 1, data: "old"}
		h.note(simStart)
		f.hosts = append(f.hosts, h)
	}
	return f
}

func (f *simFleet) host(name string) *simHost {
	for _, h := range f.hosts {
		if h.name == name {
			return h
		}
	}
	f.t.Fatalf("no host %s", name)
	return nil
}

// sync brings the model to now: deliveries, publications and lease
// expiries, in the order they happen. f.mu is held.
func (f *simFleet) sync(now time.Time) {
	for {
		next, kind := time.Time{}, ""
		consider := func(t time.Time, k string) {
			if !t.After(now) && (kind == "" || t.Before(next)) {
				next, kind = t, k
			}
		}
		if len(f.queue) > 0 {
			consider(f.queue[0].at, "delivery")
		}
		if len(f.pending) > 0 {
			consider(f.pending[0].at, "publish")
		}
		for _, o := range f.overrides {
			consider(o.expires, "expiry")
		}
		for _, h := range f.hosts {
			if h.ov != nil {
				consider(h.until, "agent expiry")
			}
			if !h.quietFrom.IsZero() && h.quietReport == nil {
				consider(h.quietFrom, "quiet")
			}
		}
		switch kind {
		case "":
			return
		case "delivery":
			d := f.queue[0]
			f.queue = f.queue[1:]
			f.deliver(d)
		case "publish":
			r := f.pending[0]
			f.pending = f.pending[1:]
			r.n = f.revs[len(f.revs)-1].n + 1
			f.revs = append(f.revs, r)
			f.send(r.at)
		case "expiry":
			for id, o := range f.overrides {
				if o.expires.Equal(next) {
					delete(f.overrides, id)
				}
			}
			f.send(next)
		case "quiet":
			for _, h := range f.hosts {
				if !h.quietFrom.IsZero() && h.quietReport == nil && h.quietFrom.Equal(next) {
					rep := f.report(h, next)
					h.quietReport = &rep
				}
			}
		case "agent expiry":
			for _, h := range f.hosts {
				if h.ov != nil && h.until.Equal(next) {
					h.ov = nil
					h.note(next)
				}
			}
		}
	}
}

// send queues the daemon's state at t for every host.
func (f *simFleet) send(t time.Time) {
	latest := f.revs[len(f.revs)-1]
	for _, h := range f.hosts {
		var ovs []wire.Override
		for _, o := range f.overrides {
			if slices.Contains(o.o.Hosts, h.name) {
				ovs = append(ovs, o.o)
			}
		}
		f.queue = append(f.queue, delivery{at: t.Add(f.delay + h.lag), host: h, rev: latest, ovs: ovs})
	}
	slices.SortStableFunc(f.queue, func(a, b delivery) int { return a.at.Compare(b.at) })
}

func (f *simFleet) deliver(d delivery) {
	h := d.host
	if !h.cutOff.IsZero() && !d.at.Before(h.cutOff) {
		return
	}
	if d.rev.n > h.applied {
		h.applied, h.data = d.rev.n, d.rev.data
	}
	h.ov = nil
	for _, o := range d.ovs {
		if o.Config == f.config && !h.ignoreOverrides {
			o := o
			h.ov, h.until = &o, d.at.Add(time.Duration(o.LeaseSeconds)*time.Second)
		}
	}
	h.note(d.at)
}

func (f *simFleet) lock() time.Time {
	f.mu.Lock()
	now := f.clock.Now()
	f.sync(now)
	return now
}

func (f *simFleet) Hosts(context.Context) ([]wire.Host, error) {
	now := f.lock()
	defer f.mu.Unlock()
	if !f.hostsDown.IsZero() && !now.Before(f.hostsDown) && now.Before(f.hostsDown.Add(f.hostsDownFor)) {
		return nil, errors.New("daemon http://sim: connection refused")
	}
	var out []wire.Host
	for _, h := range f.hosts {
		if h.quietReport != nil && now.Before(h.quietFrom.Add(h.quietFor)) {
			out = append(out, *h.quietReport)
			continue
		}
		out = append(out, f.report(h, now))
	}
	return out, nil
}

// report is h's report to the daemon at t. f.mu is held.
func (f *simFleet) report(h *simHost, t time.Time) wire.Host {
	rep := wire.Host{Name: h.name, Labels: h.labels, Configs: []string{f.config}, Applied: h.applied, LastSeen: t, Metrics: h.metrics}
	if h.ov != nil {
		rep.Overrides = []wire.AppliedOverride{{ID: h.ov.ID, Config: h.ov.Config, Version: h.ov.Version}}
	}
	return rep
}

func (f *simFleet) Current(_ context.Context, name string) (int64, string, error) {
	f.lock()
	defer f.mu.Unlock()
	if name != f.config {
		return 0, "", fmt.Errorf("config %q: %w", name, ErrNotFound)
	}
	r := f.revs[len(f.revs)-1]
	return r.n, r.commit, nil
}

func (f *simFleet) PutOverride(ctx context.Context, o wire.Override) (wire.Override, error) {
	now := f.lock()
	if f.retired[o.ID] {
		// The daemon answers 410: a run never sets its override again
		// once it removed it.
		f.mu.Unlock()
		f.t.Errorf("override %s set again at %v, after its removal", o.ID, now.Sub(simStart))
		return wire.Override{}, fmt.Errorf("setting override %q: id retired: it was removed", o.ID)
	}
	if old, ok := f.overrides[o.ID]; ok {
		o.Version = old.o.Version + 1
	} else {
		o.Version = 1
	}
	o.Expires = now.Add(time.Duration(o.LeaseSeconds) * time.Second)
	f.overrides[o.ID] = &simOverride{o: o, expires: o.Expires}
	f.send(now)
	afterPut := f.afterPut
	f.mu.Unlock()
	if afterPut != nil {
		afterPut()
		if err := ctx.Err(); err != nil {
			// The caller gave up before the answer came.
			return wire.Override{}, fmt.Errorf("setting override %q: %w", o.ID, err)
		}
	}
	o.Data = nil
	return o, nil
}

func (f *simFleet) RenewOverride(ctx context.Context, id string) error {
	f.mu.Lock()
	f.renewals++
	stuck := f.renewStuck != nil && f.renewStuck(f.renewals)
	f.mu.Unlock()
	if stuck {
		// The daemon does not answer: the request waits until the
		// caller gives up, in simulated time.
		deadline, ok := ctx.Deadline()
		if !ok {
			f.t.Error("a renewal without a deadline")
			<-ctx.Done()
			return ctx.Err()
		}
		select {
		case <-f.clock.After(time.Until(deadline)):
			return fmt.Errorf("renewing %q: %w", id, context.DeadlineExceeded)
		case <-ctx.Done():
			return fmt.Errorf("renewing %q: %w", id, ctx.Err())
		}
	}
	now := f.lock()
	defer f.mu.Unlock()
	o, ok := f.overrides[id]
	if !ok || f.renewLost {
		return fmt.Errorf("%w: no override %q", ErrNotFound, id)
	}
	o.expires = now.Add(time.Duration(o.o.LeaseSeconds) * time.Second)
	o.o.Expires = o.expires
	f.send(now)
	return nil
}

func (f *simFleet) DeleteOverride(_ context.Context, id string) error {
	now := f.lock()
	defer f.mu.Unlock()
	f.retired[id] = true
	if _, ok := f.overrides[id]; ok {
		delete(f.overrides, id)
		f.deleted = now
		f.send(now)
	}
	return nil
}

// PutRun records r as the daemon does: a running run holds a lease, and
// one that ended is not running again. A run recorded again after its
// lease ran out is an error of the test: the daemon would have listed it
// abandoned while it ran.
func (f *simFleet) PutRun(_ context.Context, r wire.Run) error {
	now := f.lock()
	defer f.mu.Unlock()
	if prev, ok := f.runs[r.ID]; ok {
		if prev.Status != wire.RunRunning && r.Status == wire.RunRunning {
			return fmt.Errorf("run %s has ended: it cannot be running again", r.ID)
		}
		if prev.Status == wire.RunRunning && now.After(prev.Expires) {
			f.t.Errorf("run %s recorded at %v, after its lease ran out at %v: it was listed abandoned while it ran",
				r.ID, now.Sub(simStart), prev.Expires.Sub(simStart))
		}
	}
	r.Expires = time.Time{}
	if r.Status == wire.RunRunning {
		if r.LeaseSeconds < 1 {
			f.t.Errorf("run %s recorded running without a lease", r.ID)
		}
		r.Expires = now.Add(time.Duration(r.LeaseSeconds) * time.Second)
	}
	f.runs[r.ID] = r
	return nil
}

func (f *simFleet) RevertedRuns(ctx context.Context, config string) ([]wire.Run, error) {
	runs, _ := f.Runs(ctx)
	return slices.DeleteFunc(runs, func(r wire.Run) bool { return r.Config != config || r.Status != wire.RunReverted }), nil
}

func (f *simFleet) Runs(context.Context) ([]wire.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []wire.Run
	for _, r := range f.runs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b wire.Run) int { return a.Started.Compare(b.Started) })
	return out, nil
}

// commit makes a commit of data, which the daemon publishes publishLag
// later, and returns its hash.
func (f *simFleet) commit(data string) string {
	now := f.lock()
	defer f.mu.Unlock()
	c := fmt.Sprintf("c%d", len(f.revs)+len(f.pending)+1)
	f.pending = append(f.pending, simRev{commit: c, data: data, at: now.Add(f.publishLag)})
	return c
}

// history returns what each host served, as "data@seconds" steps.
func (f *simFleet) history() map[string][]served {
	f.lock()
	defer f.mu.Unlock()
	out := map[string][]served{}
	for _, h := range f.hosts {
		out[h.name] = slices.Clone(h.history)
	}
	return out
}

// hostView is a host as its service sees itself at a time.
type hostView struct {
	host    string
	data    string
	running time.Duration // since it began serving data
	share   float64       // the fraction of the fleet serving data
}

// health gives a metric's value on a host, NaN if the host has no such
// metric.
type health func(metric string, v hostView) float64

// simProvider reads metrics from simulated hosts: each Collect records
// every host's view, and a query's value is the mean of the metric over
// the views recorded in its window (the latest one for a window of 0).
type simProvider struct {
	f      *simFleet
	health health

	mu     sync.Mutex
	views  map[string][]simView
	resets []time.Time // the since of each Reset
}

type simView struct {
	at time.Time
	v  hostView
}

func (p *simProvider) Collect(_ context.Context, hosts []metrics.Host) error {
	now := p.f.lock()
	views := map[string]hostView{}
	for _, h := range p.f.hosts {
		s := h.serving()
		n := 0
		for _, o := range p.f.hosts {
			if o.serving().data == s.data {
				n++
			}
		}
		running := time.Duration(0)
		for i := len(h.history) - 1; i >= 0 && h.history[i].data == s.data; i-- {
			running = now.Sub(h.history[i].at)
		}
		views[h.name] = hostView{host: h.name, data: s.data, running: running, share: float64(n) / float64(len(p.f.hosts))}
	}
	p.f.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range hosts {
		p.views[h.Name] = append(p.views[h.Name], simView{at: now, v: views[h.Name]})
	}
	return nil
}

func (p *simProvider) Values(_ context.Context, q metrics.Query, hosts []metrics.Host, now time.Time) ([]metrics.Sample, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []metrics.Sample
	for _, h := range hosts {
		sum, n := 0.0, 0
		views := p.views[h.Name]
		for i, v := range views {
			if v.at.After(now) || (now.Sub(v.at) >= q.Window && i < len(views)-1) {
				continue
			}
			sum += p.health(q.Metric, v.v)
			n++
		}
		value := math.NaN()
		if n > 0 {
			value = sum / float64(n)
		}
		out = append(out, metrics.Sample{Series: h.Name, Value: value})
	}
	return out, nil
}

func (p *simProvider) Reset(since time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.views = map[string][]simView{}
	p.resets = append(p.resets, since)
}

// run runs a canary of "new" on the fleet, on the simulated clock, with
// Land and Revert committing "new" and "old".
func (f *simFleet) run(ctx context.Context, s Spec, h health, tune ...func(*Options)) (*Report, error) {
	o := Options{
		ID: "run-1", SpecName: "demo/canary", Spec: s, Seed: 1, Daemon: f, Clock: f.clock, By: "T <t@example.com>",
		Candidate: Candidate{Compiled: true, Data: []byte("new")},
		Provider:  &simProvider{f: f, health: h, views: map[string][]simView{}},
		Land:      func(context.Context) (string, error) { return f.commit("new"), nil },
		Revert:    func(context.Context) (string, error) { return f.commit("old"), nil },
		Progress: func(line string) {
			f.t.Logf("%5.1fs %s", f.clock.Since(simStart).Seconds(), line)
			f.mu.Lock()
			f.lines = append(f.lines, line)
			f.mu.Unlock()
		},
	}
	for _, t := range tune {
		t(&o)
	}
	// Advance the clock whenever the controller and its lease keeper
	// both wait on it.
	driving, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wait, cancel := context.WithTimeout(driving, time.Minute)
			err := f.clock.BlockUntilContext(wait, 2)
			cancel()
			if driving.Err() != nil {
				return
			}
			if err != nil {
				panic("simulated clock: the controller has not waited on the clock for a minute")
			}
			f.clock.Advance(simStep)
		}
	}()
	defer func() { stop(); <-done }()
	return Run(ctx, o)
}

// checkContinuous checks that no host went back to "old" after it first
// served "new", except after the override was deleted in a rollback (of a
// run rolled back, or failed before landing), or after a revert was
// published.
func (f *simFleet) checkContinuous(t *testing.T, rep *Report) {
	t.Helper()
	f.mu.Lock()
	lastPublished := f.revs[len(f.revs)-1].at
	f.mu.Unlock()
	for name, hist := range f.history() {
		var steps []string
		for _, s := range hist {
			steps = append(steps, fmt.Sprintf("%s@%.1fs", s.data, s.at.Sub(simStart).Seconds()))
		}
		first := slices.IndexFunc(hist, func(s served) bool { return s.data == "new" })
		if first < 0 {
			continue
		}
		for _, s := range hist[first:] {
			if s.data != "old" {
				continue
			}
			switch {
			case (rep.Outcome == RolledBack || rep.Outcome == Failed && rep.Commit == "") && !f.deleted.IsZero() && !s.at.Before(f.deleted):
			case rep.Outcome == Reverted && !s.at.Before(lastPublished):
			default:
				t.Errorf("%s went back to the old config at %.1f s (deleted at %.1f s): %s", name, s.at.Sub(simStart).Seconds(),
					f.deleted.Sub(simStart).Seconds(), strings.Join(steps, " "))
			}
		}
	}
}
