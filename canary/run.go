package canary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/canary/metrics"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// Outcomes of a run.
const (
	Landed     = "landed"
	RolledBack = "rolled_back"
	Failed     = "failed" // an error ended the run before the change was judged; it was rolled back
)

// Candidate is the config under test: the working tree's compile of the
// spec's config.
type Candidate struct {
	Type     string
	Compiled bool
	Data     []byte
}

// Options configure a run.
type Options struct {
	ID        string // the run's ID (and its override's)
	SpecName  string // the spec config's name, for the record
	Spec      Spec
	Candidate Candidate
	Daemon    *Daemon
	// Provider reads metrics; nil means the spec's provider.
	Provider metrics.Provider
	Seed     uint64
	// Land commits the change and returns the commit; the daemon then
	// publishes it.
	Land func(ctx context.Context) (string, error)
	// Progress receives a line per evaluation and per step; may be nil.
	Progress func(line string)
	// ApplyTimeout bounds the wait for hosts to apply an override, to
	// revert, or to apply the landed revision; 30 s if zero.
	ApplyTimeout time.Duration
}

// Report is what a run did and found.
type Report struct {
	ID       string        `json:"id"`
	Config   string        `json:"config"`
	Spec     string        `json:"spec"`
	Seed     uint64        `json:"seed"`
	Base     int64         `json:"base_revision"` // the revision the hosts ran before
	Outcome  string        `json:"outcome"`
	Reason   string        `json:"reason,omitempty"`
	Commit   string        `json:"commit,omitempty"`   // the landed commit
	Revision int64         `json:"revision,omitempty"` // the landed revision
	Started  time.Time     `json:"started"`
	Ended    time.Time     `json:"ended"`
	Phases   []PhaseReport `json:"phases"`
	// RevertSeconds is, for a rolled-back run, the time from the first
	// push of the candidate until every canary host was verified back on
	// the base revision.
	RevertSeconds float64 `json:"revert_seconds,omitempty"`
	// ScrapeIntervalSeconds is the spec's interval, for reading
	// RevertSeconds.
	ScrapeIntervalSeconds int `json:"scrape_interval_seconds"`
}

// PhaseReport is one phase of a Report.
type PhaseReport struct {
	Name    string        `json:"name"`
	Canary  []string      `json:"canary"`
	Control []string      `json:"control"`
	Verdict string        `json:"verdict"` // pass, fail, or "" if the phase did not end
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended"`
	Checks  []CheckReport `json:"checks"`
}

// CheckReport is one check's last evaluation.
type CheckReport struct {
	Name        string   `json:"name"`
	Metric      string   `json:"metric"`
	Predicate   string   `json:"predicate"`
	Canary      *float64 `json:"canary"`  // nil without data
	Control     *float64 `json:"control"` // nil without data
	CanaryN     int      `json:"canary_samples"`
	ControlN    int      `json:"control_samples"`
	P           *float64 `json:"p,omitempty"`
	Verdict     string   `json:"verdict"`
	Reason      string   `json:"reason,omitempty"`
	Evaluations int      `json:"evaluations"`
}

// run is one run in progress.
type run struct {
	o        Options
	rep      *Report
	provider metrics.Provider
	hosts    map[string]store.Host // the eligible hosts at the start
	pushed   []string              // every host the override ever named
	version  int64                 // the override's latest version
	firstPut time.Time
}

func (r *run) progress(format string, args ...any) {
	if r.o.Progress != nil {
		r.o.Progress(fmt.Sprintf(format, args...))
	}
}

// Run runs the canary: phase by phase it pushes the candidate to the
// phase's canary hosts as an override under a lease, verifies they
// applied it, and evaluates the checks every interval until the phase's
// duration is over or a check fails. A failed check, an error or a
// cancelled ctx (Ctrl-C) rolls back: the override is removed and Run
// waits until every host it named serves the base revision again. When
// every phase passes, Land commits the change, and once the daemon has
// published it and the canary hosts run it, the override is removed.
//
// The run is recorded on the daemon at its start and its end. Run
// returns the report; the error is non-nil only when the run could not
// be completed or verified (the report then says how far it got).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = 30 * time.Second
	}
	r := &run{o: o, rep: &Report{ID: o.ID, Config: o.Spec.Config, Spec: o.SpecName, Seed: o.Seed, Started: time.Now().UTC(),
		Phases: []PhaseReport{}, ScrapeIntervalSeconds: o.Spec.ScrapeIntervalSeconds}}
	r.provider = o.Provider
	if r.provider == nil {
		var err error
		if r.provider, err = newProvider(o.Spec); err != nil {
			return nil, err
		}
	}

	base, _, err := o.Daemon.Current(ctx, o.Spec.Config)
	if err != nil {
		return nil, err
	}
	r.rep.Base = base
	all, err := o.Daemon.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	eligible := Eligible(all, o.Spec.Config, time.Now(), o.Spec.Provider != ProviderPrometheus)
	plans, err := Plan(o.Spec, eligible, o.Seed)
	if err != nil {
		return nil, &PlanError{err}
	}
	r.hosts = map[string]store.Host{}
	for _, h := range eligible {
		r.hosts[h.Name] = h
	}
	if err := o.Daemon.PutRun(ctx, r.record(wire.RunRunning)); err != nil {
		return nil, err
	}

	// The lease is renewed until the run ends; losing it ends the run.
	leaseCtx, stopLease := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopLease(nil)

	outcome, reason, runErr := r.phases(leaseCtx, plans, &wg, stopLease)
	switch cause := context.Cause(leaseCtx); {
	case ctx.Err() != nil:
		outcome, reason, runErr = RolledBack, "interrupted", nil
	case runErr != nil && cause != nil && !errors.Is(cause, context.Canceled):
		runErr = cause // the lease was lost
	}
	stopLease(nil)
	wg.Wait()

	// Clean up with a context of our own: ctx may be cancelled (Ctrl-C).
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*o.ApplyTimeout)
	defer cancel()
	switch {
	case outcome == Landed:
		runErr = r.land(cleanup)
		if runErr != nil {
			outcome, reason = Failed, runErr.Error()
		}
	default:
		if runErr != nil {
			outcome, reason = Failed, runErr.Error()
		}
		if err := r.rollback(cleanup); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	r.rep.Outcome, r.rep.Reason, r.rep.Ended = outcome, reason, time.Now().UTC()
	status := map[string]string{Landed: wire.RunLanded, RolledBack: wire.RunRolledBack, Failed: wire.RunFailed}[outcome]
	if err := o.Daemon.PutRun(cleanup, r.record(status)); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("recording the run: %w", err))
	}
	return r.rep, runErr
}

// PlanError says that the hosts cannot be chosen as the spec asks.
type PlanError struct{ Err error }

func (e *PlanError) Error() string { return e.Err.Error() }
func (e *PlanError) Unwrap() error { return e.Err }

func newProvider(spec Spec) (metrics.Provider, error) {
	if spec.Provider == ProviderPrometheus {
		return metrics.NewPrometheus(spec.PrometheusURL)
	}
	return metrics.NewScrape(nil, min(spec.Interval(), 10*time.Second)), nil
}

func (r *run) record(status string) wire.Run {
	run := wire.Run{ID: r.o.ID, Config: r.o.Spec.Config, Spec: r.o.SpecName, Status: status, Started: r.rep.Started, Base: r.rep.Base, Commit: r.rep.Commit}
	if status != wire.RunRunning {
		run.Ended = r.rep.Ended
		run.Report, _ = json.Marshal(r.rep)
	}
	return run
}

// phases runs the phases; it returns Landed when all passed (the change
// is not landed yet), or RolledBack with the reason.
func (r *run) phases(ctx context.Context, plans []PhasePlan, wg *sync.WaitGroup, lost context.CancelCauseFunc) (outcome, reason string, err error) {
	for i, p := range r.o.Spec.Phases {
		plan := plans[i]
		pr := PhaseReport{Name: p.Name, Canary: plan.Canary, Control: plan.Control, Started: time.Now().UTC(), Checks: []CheckReport{}}
		r.rep.Phases = append(r.rep.Phases, pr)
		cur := &r.rep.Phases[len(r.rep.Phases)-1]
		r.progress("phase %q: pushing %s to %s; control %s", p.Name, r.o.Spec.Config, strings.Join(plan.Canary, ","), strings.Join(plan.Control, ","))
		if err := r.push(ctx, plan.Canary); err != nil {
			return RolledBack, "", err
		}
		if i == 0 {
			wg.Go(func() { r.renew(ctx, lost) })
		}
		if err := r.awaitHosts(ctx, plan.Canary, "apply the candidate", func(h store.Host) bool { return r.applied(h) }); err != nil {
			return RolledBack, "", err
		}
		cur.Started = time.Now().UTC()
		failed, err := r.observe(ctx, p, plan, cur)
		cur.Ended = time.Now().UTC()
		if err != nil {
			return RolledBack, "", err
		}
		if failed != "" {
			cur.Verdict = "fail"
			return RolledBack, fmt.Sprintf("phase %q: %s", p.Name, failed), nil
		}
		cur.Verdict = "pass"
		r.progress("phase %q passed", p.Name)
	}
	return Landed, "", nil
}

// push sets the override to hosts.
func (r *run) push(ctx context.Context, hosts []string) error {
	o, err := r.o.Daemon.PutOverride(ctx, wire.Override{ID: r.o.ID, Config: r.o.Spec.Config, Hosts: hosts, Type: r.o.Candidate.Type,
		Compiled: r.o.Candidate.Compiled, Data: r.o.Candidate.Data, LeaseSeconds: r.o.Spec.LeaseSeconds})
	if err != nil {
		return err
	}
	if r.firstPut.IsZero() {
		r.firstPut = time.Now()
	}
	r.version = o.Version
	for _, h := range hosts {
		if !slices.Contains(r.pushed, h) {
			r.pushed = append(r.pushed, h)
		}
	}
	return nil
}

// renew renews the lease every third of it until ctx is done; if the
// lease is lost, it cancels the run with the reason.
func (r *run) renew(ctx context.Context, lost context.CancelCauseFunc) {
	t := time.NewTicker(max(r.o.Spec.Lease()/3, 100*time.Millisecond))
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.o.Daemon.RenewOverride(ctx, r.o.ID)
		switch {
		case err == nil:
			failures = 0
		case errors.Is(err, ErrNotFound):
			lost(fmt.Errorf("the override's lease ran out on the daemon: %w", err))
			return
		case ctx.Err() == nil:
			// A daemon that does not answer may still hold the lease;
			// give up when it must have run out.
			if failures++; failures >= 3 {
				lost(fmt.Errorf("could not renew the override's lease: %w", err))
				return
			}
		}
	}
}

// applied reports whether h serves the current version of the override.
func (r *run) applied(h store.Host) bool {
	for _, o := range h.Overrides {
		if o.ID == r.o.ID && o.Config == r.o.Spec.Config && o.Version >= r.version {
			return true
		}
	}
	return false
}

// reverted reports whether h serves none of the run's overrides.
func (r *run) reverted(h store.Host) bool {
	return !slices.ContainsFunc(h.Overrides, func(o wire.AppliedOverride) bool { return o.ID == r.o.ID })
}

// awaitHosts waits until every host in names satisfies ok, as the hosts
// report to the daemon, for at most ApplyTimeout.
func (r *run) awaitHosts(ctx context.Context, names []string, what string, ok func(store.Host) bool) error {
	deadline := time.Now().Add(r.o.ApplyTimeout)
	for {
		hosts, err := r.o.Daemon.Hosts(ctx)
		var pending []string
		if err == nil {
			for _, name := range names {
				i := slices.IndexFunc(hosts, func(h store.Host) bool { return h.Name == name })
				if i < 0 || !ok(hosts[i]) {
					pending = append(pending, name)
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waiting for hosts to %s: %w", what, err)
			}
			return fmt.Errorf("%s did not %s within %v", strings.Join(pending, ", "), what, r.o.ApplyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *run) metricHosts(names []string) []metrics.Host {
	out := make([]metrics.Host, len(names))
	for i, n := range names {
		out[i] = metrics.Host{Name: n, URL: r.hosts[n].Metrics}
	}
	return out
}

// observe evaluates the phase's checks every interval until its duration
// is over or a check fails; it returns why the phase failed, or "".
func (r *run) observe(ctx context.Context, p Phase, plan PhasePlan, cur *PhaseReport) (string, error) {
	start := time.Now()
	trackers := make([]*judge.Tracker, len(p.Checks))
	for i, c := range p.Checks {
		jc, err := c.judge()
		if err != nil {
			return "", err
		}
		trackers[i] = judge.NewTracker(jc, start)
		cur.Checks = append(cur.Checks, CheckReport{Name: c.Name, Metric: c.Metric, Predicate: jc.Predicate.String(jc.Worse), Verdict: judge.Waiting.String()})
	}
	r.provider.Reset()
	canary, control := r.metricHosts(plan.Canary), r.metricHosts(plan.Control)
	both := append(slices.Clone(canary), control...)
	interval := r.o.Spec.Interval()
	end := start.Add(p.Duration())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if err := r.provider.Collect(ctx, both); err != nil && ctx.Err() == nil {
		return "", err
	}
	for k := 1; ; k++ {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
		// Checks are judged on the evaluation schedule (at), so that a
		// breach of breach_seconds fails after exactly as many intervals
		// whatever the timer's jitter; metrics are read up to now.
		now, at := time.Now(), start.Add(time.Duration(k)*interval)
		if err := r.provider.Collect(ctx, both); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", err
		}
		last := !at.Before(end)
		var parts []string
		failed := ""
		for i, c := range p.Checks {
			q := c.query()
			cv, err1 := r.provider.Values(ctx, q, canary, now)
			kv, err2 := r.provider.Values(ctx, q, control, now)
			ev := trackers[i].Observe(at, values(cv), values(kv))
			if err := errors.Join(err1, err2); err != nil {
				ev.Reason = strings.TrimSpace(ev.Reason + " (" + err.Error() + ")")
			}
			if last && ev.Verdict != judge.Fail {
				final := trackers[i].Final(at)
				if final.Verdict == judge.Fail {
					ev = final
				}
			}
			cur.Checks[i].update(ev)
			parts = append(parts, fmt.Sprintf("%s %s/%s %s", c.Name, num(ev.Canary), num(ev.Control), ev.Verdict))
			if ev.Verdict == judge.Fail && failed == "" {
				failed = fmt.Sprintf("check %q failed: %s", c.Name, ev.Reason)
			}
		}
		elapsed := at.Sub(start)
		r.progress("phase %q %v/%v: %s", p.Name, elapsed, p.Duration(), strings.Join(parts, "; "))
		if failed != "" || last {
			return failed, nil
		}
	}
}

func (c *CheckReport) update(ev judge.Evaluation) {
	c.Evaluations++
	c.Verdict, c.Reason = ev.Verdict.String(), ev.Reason
	c.CanaryN, c.ControlN = ev.CanaryN, ev.ControlN
	c.Canary, c.Control, c.P = finite(ev.Canary), finite(ev.Control), finite(ev.P)
}

func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func num(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.4g", x)
}

func values(samples []metrics.Sample) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = s.Value
	}
	return out
}

// rollback removes the override and waits until every host it named
// serves the base revision again.
func (r *run) rollback(ctx context.Context) error {
	if len(r.pushed) == 0 {
		return nil
	}
	r.progress("rolling back: removing the override from %s", strings.Join(r.pushed, ","))
	if err := r.o.Daemon.DeleteOverride(ctx, r.o.ID); err != nil {
		return fmt.Errorf("rolling back: %w", err)
	}
	if err := r.awaitHosts(ctx, r.pushed, "revert", r.reverted); err != nil {
		return fmt.Errorf("rolling back: %w", err)
	}
	r.rep.RevertSeconds = time.Since(r.firstPut).Seconds()
	r.progress("rolled back: %s serve revision %d again", strings.Join(r.pushed, ","), r.rep.Base)
	return nil
}

// land commits the change, waits for the daemon to publish it and the
// canary hosts to apply it, then removes the override.
func (r *run) land(ctx context.Context) error {
	commit, err := r.o.Land(ctx)
	if err != nil {
		r.rollback(ctx)
		return fmt.Errorf("landing: %w", err)
	}
	r.rep.Commit = commit
	r.progress("landed as commit %s; waiting for the daemon to publish it", commit)
	deadline := time.Now().Add(r.o.ApplyTimeout)
	for {
		rev, c, err := r.o.Daemon.Current(ctx, r.o.Spec.Config)
		if err == nil && c == commit {
			r.rep.Revision = rev
			break
		}
		if time.Now().After(deadline) {
			r.rollback(ctx)
			return fmt.Errorf("the daemon did not publish commit %s within %v: does it tail this repository?", commit, r.o.ApplyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Remove the override only once the canary hosts hold the landed
	// revision, so that they never go back to the old config.
	err = r.awaitHosts(ctx, r.pushed, fmt.Sprintf("apply revision %d", r.rep.Revision), func(h store.Host) bool { return h.Applied >= r.rep.Revision })
	if err := errors.Join(err, r.o.Daemon.DeleteOverride(ctx, r.o.ID)); err != nil {
		return err
	}
	r.progress("revision %d published; override removed", r.rep.Revision)
	return nil
}
