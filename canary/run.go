package canary

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/canary/metrics"
	"github.com/cfg-dev/cfg/wire"
)

// Outcome is how a run ended.
type Outcome string

// Outcomes of a run.
const (
	// Landed: every phase (and the bake, if the spec has one) passed; the
	// change is committed and every host runs it.
	Landed Outcome = "landed"
	// RolledBack: a phase failed, or the run was interrupted; the change
	// was never committed and the canary hosts run the committed config
	// again.
	RolledBack Outcome = "rolled_back"
	// Reverted: the change landed, the bake failed, and a revert was
	// committed and published (if a host was not seen to run it, Run
	// returns an error that names it).
	Reverted Outcome = "reverted"
	// Failed: an error ended the run; what it had pushed was rolled back
	// (or, once landed, the change stays landed).
	Failed Outcome = "failed"
)

// Verdict is the verdict of a phase or of the bake: Pass, Fail, or ""
// while it has not ended.
type Verdict string

// Verdicts of a phase or of the bake.
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
)

// ApplyGrace is how long, beyond one scrape interval, a phase may go on
// with fewer canary hosts running the candidate than it pushed it to
// (at its start, while they apply it; later, when some stop running it).
// Agents report an override a moment after they apply it; 10 s also
// covers an agent reconnecting to a daemon (its longest retry wait). A
// phase that has fewer canaries running the candidate for longer fails:
// no data about the candidate is not a pass.
const ApplyGrace = 10 * time.Second

// pollEvery is how often the hosts' reports and the daemon's revisions
// are read while waiting for them.
const pollEvery = 100 * time.Millisecond

// maxReportBytes bounds a run's report as the daemon records it (the
// daemon reads bodies of at most 1 MiB): the oldest evaluations of the
// longest phases are left out beyond it.
const maxReportBytes = 768 << 10

// Candidate is the config under test: the working tree's compile of the
// spec's config.
type Candidate struct {
	Type     string
	Compiled bool
	Data     []byte
}

// Hash identifies the candidate's data: hex SHA-256.
func (c Candidate) Hash() string {
	h := sha256.Sum256(c.Data)
	return hex.EncodeToString(h[:])
}

// API is the part of a distribution daemon's API (docs/api.md) that a
// canary uses; *Daemon implements it over HTTP.
type API interface {
	Hosts(ctx context.Context) ([]wire.Host, error)
	Current(ctx context.Context, name string) (revision int64, commit string, err error)
	PutOverride(ctx context.Context, o wire.Override) (wire.Override, error)
	RenewOverride(ctx context.Context, id string) error
	DeleteOverride(ctx context.Context, id string) error
	PutRun(ctx context.Context, r wire.Run) error
	RevertedRuns(ctx context.Context, config string) ([]wire.Run, error)
}

// Options configure a run.
type Options struct {
	ID        string // the run's ID (and its override's)
	SpecName  string // the spec config's name, for the record
	Spec      Spec
	Candidate Candidate
	Daemon    API
	// Provider reads metrics; nil means the spec's provider.
	Provider metrics.Provider
	Seed     uint64
	// By says who runs the canary ("Name <email>"), for the record.
	By string
	// Land commits the change and returns the commit; the daemon then
	// publishes it. If it commits nothing, Run rolls back; the run is
	// RolledBack when the error is a *NotLandedError, Failed otherwise.
	Land func(ctx context.Context) (string, error)
	// Revert commits the undoing of the landed change and returns the
	// commit; it is required when the spec has a bake.
	Revert func(ctx context.Context) (string, error)
	// AllowReverted lets a candidate that an earlier run landed and
	// reverted be tried again; without it, Run refuses it (RevertedError).
	AllowReverted bool
	// Progress receives a line per evaluation and per step; may be nil.
	Progress func(line string)
	// ApplyTimeout bounds the wait for hosts to revert, and for the
	// daemon to publish and the hosts to apply a landed or reverting
	// commit; 30 s if zero.
	ApplyTimeout time.Duration
	// Clock is the clock of every wait and time stamp of the run; the
	// real clock if nil.
	Clock clockwork.Clock
}

// A NotLandedError from Options.Land says that Land committed nothing
// because the change cannot land as it was canaried (the branch it was to
// land on moved since the candidate was read): Run rolls back, and the run
// is RolledBack with the error as its reason, not Failed.
type NotLandedError struct{ Err error }

func (e *NotLandedError) Error() string { return e.Err.Error() }
func (e *NotLandedError) Unwrap() error { return e.Err }

// RevertedError is Run's refusal of a candidate that an earlier run
// landed and then reverted.
type RevertedError struct{ Run wire.Run }

func (e *RevertedError) Error() string {
	return fmt.Sprintf("this candidate of %s was landed and then reverted by canary run %s (started %s)",
		e.Run.Config, e.Run.ID, e.Run.Started.UTC().Format(time.RFC3339))
}

// PlanError says that the hosts cannot be chosen as the spec asks.
type PlanError struct{ Err error }

func (e *PlanError) Error() string { return e.Err.Error() }
func (e *PlanError) Unwrap() error { return e.Err }

// run is one run in progress.
type run struct {
	o        Options
	clock    clockwork.Clock
	rep      *Report
	provider metrics.Provider
	hosts    map[string]wire.Host // the eligible hosts at the start
	pushed   []string             // every host the override ever named
	versions []int64              // every version of the override the run set
	firstPut time.Time
	baseline [][]float64 // per bake check, the fleet's values before the change
	// recordNow asks keepLease to record the run at once (a commit it
	// made), rather than at its next renewal.
	recordNow chan struct{}

	// mu guards the fields below, and rep's Commit and RevertCommit,
	// which keepLease records.
	mu       sync.Mutex
	leased   bool      // the override exists and its lease is kept
	renewed  time.Time // when the daemon last confirmed the lease
	leaseErr error     // why the lease was lost
	lost     context.CancelCauseFunc
}

func (r *run) now() time.Time { return r.clock.Now() }

func (r *run) progress(format string, args ...any) {
	if r.o.Progress != nil {
		r.o.Progress(fmt.Sprintf(format, args...))
	}
}

// sleep waits for d on the run's clock, or until ctx is done.
func (r *run) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.Chan():
	}
	// Both may be ready, and select picks either: a cancellation wins.
	return ctx.Err()
}

// Run runs the canary. Before pushing anything it reads the fleet's
// values of the bake's checks, if the spec has a bake. Then, phase by
// phase, it pushes the candidate to the phase's canary hosts as an
// override under a lease (renewed every third of it until the override
// is removed), waits until they report running it, and evaluates the
// checks every interval on the canaries and controls that report running
// the candidate and the committed config, until the phase's duration is
// over, extended while a check is in breach. A failed check, a phase
// without enough canaries running the candidate, an error or a cancelled
// ctx (Ctrl-C) rolls back: the override is removed and Run waits until
// every host it named serves the committed config again. When every
// phase passes, Land commits the change; once the daemon has published
// it and the canary hosts run it, the override is removed. A bake then
// watches the whole fleet; if it fails, Revert commits the undoing of the
// change, and Run waits until the fleet runs it.
//
// The run is recorded on the daemon at its start and its end. Run
// returns the report; the error is non-nil only when the run could not
// be completed or verified (the report then says how far it got), or
// when it did not start (nil report: a PlanError, a RevertedError, or
// the daemon's).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Spec.Bake != nil && o.Revert == nil {
		return nil, errors.New("canary: the spec has a bake, but there is no way to revert (Options.Revert)")
	}
	r := &run{o: o, clock: o.Clock, recordNow: make(chan struct{}, 1)}
	r.rep = &Report{ID: o.ID, Config: o.Spec.Config, Spec: o.SpecName, By: o.By, Seed: o.Seed, Candidate: o.Candidate.Hash(),
		Started: r.now().UTC(), Phases: []PhaseReport{}, ScrapeIntervalSeconds: o.Spec.ScrapeIntervalSeconds}
	r.provider = o.Provider
	if r.provider == nil {
		var err error
		if r.provider, err = newProvider(o.Spec, o.Clock); err != nil {
			return nil, err
		}
	}

	if !o.AllowReverted {
		runs, err := o.Daemon.RevertedRuns(ctx, o.Spec.Config)
		if err != nil {
			return nil, err
		}
		if prev := RevertedBefore(runs, o.Spec.Config, r.rep.Candidate); prev != nil {
			return nil, &RevertedError{Run: *prev}
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
	eligible := Eligible(all, o.Spec.Config, r.now(), o.Spec.Provider != ProviderPrometheus)
	plans, err := Plan(o.Spec, eligible, o.Seed)
	if err != nil {
		return nil, &PlanError{err}
	}
	r.hosts = map[string]wire.Host{}
	for _, h := range eligible {
		r.hosts[h.Name] = h
	}
	if err := o.Daemon.PutRun(ctx, r.record(wire.RunRunning)); err != nil {
		return nil, err
	}

	// The lease is kept from the first push until the override is
	// removed, landing included; losing it ends the phases.
	phaseCtx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	r.lost = lost
	keepCtx, stopKeeping := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { r.keepLease(keepCtx) })
	defer func() { stopKeeping(); wg.Wait() }()

	outcome, reason, runErr := r.judgePhases(phaseCtx, plans)
	switch cause := context.Cause(phaseCtx); {
	case ctx.Err() != nil:
		outcome, reason, runErr = RolledBack, "interrupted", nil
	case runErr != nil && cause != nil && !errors.Is(cause, context.Canceled):
		runErr = cause // the lease was lost
	}

	// Landing and rolling back go on when ctx is cancelled (Ctrl-C);
	// each of their waits is bounded by ApplyTimeout.
	cleanup := context.WithoutCancel(ctx)
	switch {
	case outcome == Landed && runErr == nil:
		commit, err := o.Land(cleanup)
		if err != nil {
			runErr = fmt.Errorf("landing: %w", err)
			outcome, reason = Failed, runErr.Error()
			var nl *NotLandedError
			if errors.As(err, &nl) {
				outcome, runErr = RolledBack, nil
			}
			if err := r.rollback(cleanup); err != nil {
				runErr = errors.Join(runErr, err)
			}
			break
		}
		if err := r.land(cleanup, commit); err != nil {
			outcome, reason, runErr = Failed, err.Error(), err
			break
		}
		if o.Spec.Bake == nil {
			break
		}
		failed, err := r.bake(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			reason = "interrupted during the bake; the change stays landed"
		case err != nil:
			runErr = fmt.Errorf("bake: %w (the change stays landed)", err)
			outcome, reason = Failed, runErr.Error()
		case failed != "":
			reason = "bake: " + failed
			outcome = Reverted
			if err := r.revert(cleanup); err != nil {
				runErr = err
				reason += "; " + err.Error()
				if r.rep.RevertRevision == 0 {
					// Nothing reverted on the fleet: the revert was
					// not committed, or not published.
					outcome = Failed
				}
			}
		}
	default:
		if runErr != nil {
			outcome, reason = Failed, runErr.Error()
		}
		if err := r.rollback(cleanup); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	stopKeeping()
	wg.Wait()

	r.rep.Outcome, r.rep.Reason, r.rep.Ended = outcome, reason, r.now().UTC()
	status := map[Outcome]string{Landed: wire.RunLanded, RolledBack: wire.RunRolledBack, Reverted: wire.RunReverted, Failed: wire.RunFailed}[outcome]
	if err := o.Daemon.PutRun(cleanup, r.record(status)); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("recording the run: %w", err))
	}
	return r.rep, runErr
}

// RevertedBefore returns the latest of runs that landed and then
// reverted the candidate whose Candidate.Hash is candidate, or nil.
func RevertedBefore(runs []wire.Run, config, candidate string) *wire.Run {
	var found *wire.Run
	for i, run := range runs {
		if run.Status == wire.RunReverted && run.Config == config && run.Candidate == candidate &&
			(found == nil || run.Started.After(found.Started)) {
			found = &runs[i]
		}
	}
	return found
}

func newProvider(spec Spec, clock clockwork.Clock) (metrics.Provider, error) {
	if spec.Provider == ProviderPrometheus {
		return metrics.NewPrometheus(spec.PrometheusURL)
	}
	s := metrics.NewScrape(nil, min(spec.Interval(), 10*time.Second))
	s.Now = clock.Now
	return s, nil
}

// record returns the run's record in status. While the run keeps its
// lease (keepLease), a running record is read under r.mu.
func (r *run) record(status string) wire.Run {
	run := wire.Run{ID: r.o.ID, Config: r.o.Spec.Config, Spec: r.o.SpecName, Status: status, Started: r.rep.Started, Base: r.rep.Base,
		Commit: r.rep.Commit, Candidate: r.rep.Candidate, RevertCommit: r.rep.RevertCommit}
	if status == wire.RunRunning {
		run.LeaseSeconds = r.o.Spec.LeaseSeconds
	} else {
		run.Ended = r.rep.Ended
		r.rep.fit(maxReportBytes)
		run.Report, _ = json.Marshal(r.rep)
	}
	return run
}

// judgePhases reads the bake's baseline, if any, and runs the phases; it
// returns Landed when all passed (the change is not landed yet), or
// RolledBack with the reason.
func (r *run) judgePhases(ctx context.Context, plans []PhasePlan) (Outcome, string, error) {
	if r.o.Spec.Bake != nil {
		if err := r.measureBaseline(ctx); err != nil {
			return RolledBack, "", err
		}
	}
	for i, p := range r.o.Spec.Phases {
		plan := plans[i]
		r.rep.Phases = append(r.rep.Phases, PhaseReport{Name: p.Name, Canary: plan.Canary, Control: plan.Control, Checks: []CheckReport{}})
		cur := &r.rep.Phases[len(r.rep.Phases)-1]
		r.progress("phase %q: pushing %s to %s; control %s", p.Name, r.o.Spec.Config, strings.Join(plan.Canary, ","), strings.Join(plan.Control, ","))
		if err := r.push(ctx, plan.Canary); err != nil {
			return RolledBack, "", err
		}
		failed, err := r.observe(ctx, &stage{
			name: fmt.Sprintf("phase %q", p.Name), checks: p.Checks, duration: p.Duration(), rep: cur,
			canary: plan.Canary, control: plan.Control, required: len(plan.Canary),
			canaryOK: r.runsCandidate, controlOK: r.runsCommitted, running: "the candidate",
		})
		cur.Ended = r.now().UTC()
		if err != nil {
			return RolledBack, "", err
		}
		if failed != "" {
			cur.Verdict = Fail
			return RolledBack, fmt.Sprintf("phase %q: %s", p.Name, failed), nil
		}
		cur.Verdict = Pass
		r.progress("phase %q passed", p.Name)
	}
	return Landed, "", nil
}

// push sets the override to hosts. The hosts count as pushed from the
// request on: one that fails may have set the override all the same (the
// run interrupted, or the answer lost, after the daemon took it), and the
// rollback then removes it and waits for them to revert.
func (r *run) push(ctx context.Context, hosts []string) error {
	if r.firstPut.IsZero() {
		r.firstPut = r.now()
	}
	for _, h := range hosts {
		if !slices.Contains(r.pushed, h) {
			r.pushed = append(r.pushed, h)
		}
	}
	o, err := r.o.Daemon.PutOverride(ctx, wire.Override{ID: r.o.ID, Config: r.o.Spec.Config, Hosts: hosts, Type: r.o.Candidate.Type,
		Compiled: r.o.Candidate.Compiled, Data: r.o.Candidate.Data, LeaseSeconds: r.o.Spec.LeaseSeconds})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.leased, r.renewed = true, r.now()
	r.mu.Unlock()
	r.versions = append(r.versions, o.Version)
	return nil
}

// release stops keeping the lease: the override is about to be removed.
func (r *run) release() {
	r.mu.Lock()
	r.leased = false
	r.mu.Unlock()
}

// leaseLost returns why the lease was lost, or nil.
func (r *run) leaseLost() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaseErr
}

// recordSoon has keepLease record the run at once, so that a run killed
// after it committed is listed with its commit.
func (r *run) recordSoon() {
	select {
	case r.recordNow <- struct{}{}:
	default: // asked already
	}
}

// keepLease renews the override's lease every third of it while the run
// holds it, until ctx is done; losing the lease cancels the phases with
// the reason. It runs from the start of the run to its end, so that the
// lease is kept through every phase boundary and through landing.
//
// At the same pace it records the run again, running, which renews the
// run's own lease (as long as the override's): the daemon lists a run
// whose lease ran out as abandoned, so a run killed in its bake, which
// holds no override, is not listed as running for ever. A record that
// fails is recorded again soon, like a renewal.
//
// A renewal has a third of the lease to answer (a request's time, on the
// real clock); one that fails or does not answer in time is tried again
// soon, on a new request, until the lease must have run out since the
// daemon last confirmed it. So a stuck connection or a slow daemon costs
// a retry, not the lease.
func (r *run) keepLease(ctx context.Context) {
	lease := r.o.Spec.Lease()
	every := max(lease/3, 100*time.Millisecond)
	retry := max(every/4, 100*time.Millisecond)
	t := r.clock.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-r.recordNow:
		}
		next := every
		r.mu.Lock()
		held, rec := r.leased, r.record(wire.RunRunning)
		r.mu.Unlock()
		if held {
			attempt, cancel := context.WithTimeout(ctx, every)
			err := r.o.Daemon.RenewOverride(attempt, r.o.ID)
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("the daemon did not answer in %s", every)
			}
			cancel()
			if r.renewalDone(ctx, err, lease) {
				next = retry
			}
		}
		attempt, cancel := context.WithTimeout(ctx, every)
		if err := r.o.Daemon.PutRun(attempt, rec); err != nil && ctx.Err() == nil {
			next = retry
		}
		cancel()
		t.Reset(next)
	}
}

// renewalDone records how a renewal of the lease ended, losing the lease
// when the daemon says it ran out or has not confirmed it for as long as
// it lasts; it reports whether to try again soon.
func (r *run) renewalDone(ctx context.Context, err error, lease time.Duration) (again bool) {
	now := r.now()
	r.mu.Lock()
	switch {
	case err == nil:
		r.renewed = now
	case ctx.Err() != nil || !r.leased:
		// Stopped, or removed on purpose meanwhile.
	case errors.Is(err, ErrNotFound):
		r.leased, r.leaseErr = false, fmt.Errorf("the override's lease ran out on the daemon: %w", err)
	case now.Sub(r.renewed) >= lease:
		// A daemon that does not answer may still hold the lease until
		// then, but not after.
		r.leased, r.leaseErr = false, fmt.Errorf("could not renew the override's lease in %s: %w", lease, err)
	default:
		again = true
	}
	lostErr := r.leaseErr
	r.mu.Unlock()
	if lostErr != nil {
		r.lost(lostErr)
	}
	return again
}

// stage is what observe judges: a phase, or the bake.
type stage struct {
	name     string // `phase "two hosts"`, or "bake"
	checks   []Check
	duration time.Duration
	rep      *PhaseReport
	// canary are the hosts judged against control (a phase's canaries
	// and controls), or against baseline (the bake's fleet).
	canary, control []string
	baseline        [][]float64
	// required is how many canary hosts must run what is judged; with
	// fewer for longer than an interval plus ApplyGrace a phase fails,
	// and the bake ends with an error (shortIsError).
	required     int
	shortIsError bool
	// canaryOK and controlOK say why a host's report leaves it out of an
	// evaluation, or "".
	canaryOK, controlOK func(h wire.Host, reported bool, now time.Time) string
	running             string // what the canary side runs, for messages
}

// membership is which hosts an evaluation judges, by their reports.
type membership struct {
	canary, control []string
	excluded        []Exclusion
}

// members reads the hosts' reports and sorts st's hosts into those that
// run what they should and those left out, with why.
func (r *run) members(ctx context.Context, st *stage) (membership, error) {
	hosts, err := r.o.Daemon.Hosts(ctx)
	var m membership
	if err != nil {
		for _, h := range append(slices.Clone(st.canary), st.control...) {
			m.excluded = append(m.excluded, Exclusion{Host: h, Reason: "the hosts' reports could not be read"})
		}
		return m, err
	}
	byName := map[string]wire.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	now := r.now()
	for _, name := range st.canary {
		h, ok := byName[name]
		if why := st.canaryOK(h, ok, now); why != "" {
			m.excluded = append(m.excluded, Exclusion{Host: name, Reason: why})
		} else {
			m.canary = append(m.canary, name)
		}
	}
	for _, name := range st.control {
		h, ok := byName[name]
		if why := st.controlOK(h, ok, now); why != "" {
			m.excluded = append(m.excluded, Exclusion{Host: name, Reason: why})
		} else {
			m.control = append(m.control, name)
		}
	}
	return m, nil
}

// fresh says why a host's report cannot be used, or "".
func fresh(h wire.Host, reported bool, now time.Time) string {
	switch {
	case !reported:
		return "does not report to the daemon"
	case now.Sub(h.LastSeen) > MaxHostAge:
		return fmt.Sprintf("last reported %v ago", now.Sub(h.LastSeen).Round(time.Second))
	}
	return ""
}

// runsCandidate says why h does not run the candidate, or "": its report
// must name a version of the override that the run set (every version
// holds the candidate).
func (r *run) runsCandidate(h wire.Host, reported bool, now time.Time) string {
	if why := fresh(h, reported, now); why != "" {
		return why
	}
	for _, o := range h.Overrides {
		if o.Config != r.o.Spec.Config {
			continue
		}
		if o.ID == r.o.ID && slices.Contains(r.versions, o.Version) {
			return ""
		}
		return fmt.Sprintf("serves override %s/%d, not the candidate", o.ID, o.Version)
	}
	return fmt.Sprintf("serves revision %d, not the candidate", h.Applied)
}

// runsCommitted says why h does not run the committed config, or "".
func (r *run) runsCommitted(h wire.Host, reported bool, now time.Time) string {
	if why := fresh(h, reported, now); why != "" {
		return why
	}
	for _, o := range h.Overrides {
		if o.Config == r.o.Spec.Config {
			return fmt.Sprintf("serves override %s/%d, not the committed config", o.ID, o.Version)
		}
	}
	return ""
}

// runsLanded says why h does not run the landed revision, or "".
func (r *run) runsLanded(h wire.Host, reported bool, now time.Time) string {
	if why := r.runsCommitted(h, reported, now); why != "" {
		return why
	}
	if h.Applied < r.rep.Revision {
		return fmt.Sprintf("serves revision %d, not the landed revision %d", h.Applied, r.rep.Revision)
	}
	return ""
}

func (r *run) metricHosts(names []string) []metrics.Host {
	out := make([]metrics.Host, len(names))
	for i, n := range names {
		out[i] = metrics.Host{Name: n, URL: r.hosts[n].Metrics}
	}
	return out
}

// observe waits until the stage's canary hosts run what is judged (at
// most an interval plus ApplyGrace), then evaluates its checks every
// interval until its duration is over, or longer while a check is in
// breach (at most the longest breach_seconds of its checks longer), or
// until a check fails. It returns why the stage failed, or "".
func (r *run) observe(ctx context.Context, st *stage) (string, error) {
	interval := r.o.Spec.Interval()
	patience := interval + ApplyGrace
	var m membership
	var err error
	for since := r.now(); ; {
		m, err = r.members(ctx, st)
		if err == nil && len(m.canary) == len(st.canary) {
			break
		}
		if r.now().Sub(since) > patience {
			if len(m.canary) >= st.required && err == nil {
				break // the bake goes on with the hosts that run it
			}
			if err != nil {
				return "", fmt.Errorf("%s: reading the hosts' reports: %w", st.name, err)
			}
			short := fmt.Sprintf("%d of %d canary hosts run %s %v after it was pushed (%s)",
				len(m.canary), len(st.canary), st.running, patience, exclusions(m.excluded, st.canary))
			if st.shortIsError {
				return "", errors.New(short)
			}
			return short + ": no data about the candidate is not a pass", nil
		}
		if err := r.sleep(ctx, pollEvery); err != nil {
			return "", err
		}
	}

	start := r.now()
	st.rep.Started = start.UTC()
	trackers := make([]*judge.Tracker, len(st.checks))
	var longestBreach time.Duration
	for i, c := range st.checks {
		jc, err := c.judge()
		if err != nil {
			return "", err
		}
		trackers[i] = judge.NewTracker(jc, start)
		longestBreach = max(longestBreach, jc.Breach)
		st.rep.Checks = append(st.rep.Checks, CheckReport{Name: c.Name, Metric: c.Metric, Predicate: jc.Predicate.String(jc.Worse), Verdict: judge.Waiting})
	}
	r.provider.Reset(start)
	all := r.metricHosts(append(slices.Clone(st.canary), st.control...))
	if err := r.provider.Collect(ctx, all); err != nil && ctx.Err() == nil {
		return "", err
	}
	end := start.Add(st.duration)
	var shortSince, unreadSince time.Time
	extending := false
	for k := 1; ; k++ {
		// Checks are judged on the evaluation schedule (at), so that a
		// breach of breach_seconds fails after exactly as many intervals
		// whatever the timer's jitter; metrics are read up to now.
		at := start.Add(time.Duration(k) * interval)
		if err := r.sleep(ctx, at.Sub(r.now())); err != nil {
			return "", err
		}
		now := r.now()
		if err := r.provider.Collect(ctx, all); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", err
		}
		m, err := r.members(ctx, st)
		ev := Evaluation{At: at.UTC(), Seconds: at.Sub(start).Seconds(), Canary: m.canary, Control: m.control, Excluded: m.excluded}
		if len(m.canary) < st.required {
			if shortSince.IsZero() {
				shortSince = now
			}
			if now.Sub(shortSince) > patience {
				st.rep.addEvaluation(ev)
				if err != nil {
					return "", fmt.Errorf("%s: reading the hosts' reports: %w", st.name, err)
				}
				short := fmt.Sprintf("%d of %d canary hosts ran %s for %v (%s)", len(m.canary), len(st.canary), st.running,
					now.Sub(shortSince), exclusions(m.excluded, st.canary))
				if st.shortIsError {
					return "", errors.New(short)
				}
				return short + ": no data about the candidate is not a pass", nil
			}
		} else {
			shortSince = time.Time{}
		}
		if err != nil {
			// Without the reports nothing is known of who runs what: no
			// judgment, and the phase goes on for at most patience.
			st.rep.addEvaluation(ev)
			r.progress("%s %v/%v: not judged: reading the hosts' reports: %v", st.name, at.Sub(start), st.duration, err)
			continue
		}

		canary, control := r.metricHosts(m.canary), r.metricHosts(m.control)
		type read struct {
			canary, control []float64
			err             error
		}
		reads := make([]read, len(st.checks))
		var unread error
		for i, c := range st.checks {
			q := c.query()
			cv, err1 := r.provider.Values(ctx, q, canary, now)
			if errors.Is(err1, metrics.ErrUnavailable) {
				unread = err1
				break
			}
			rd := read{canary: values(cv)}
			var err2 error
			if st.baseline != nil {
				rd.control = st.baseline[i]
			} else {
				var samples []metrics.Sample
				samples, err2 = r.provider.Values(ctx, q, control, now)
				if errors.Is(err2, metrics.ErrUnavailable) {
					unread = err2
					break
				}
				rd.control = values(samples)
			}
			rd.err = errors.Join(err1, err2)
			reads[i] = rd
		}
		if unread != nil {
			// The metrics could not be read (their server is down, say):
			// no judgment, as without the reports, for at most patience.
			// That is not a lack of data about the candidate.
			st.rep.addEvaluation(ev)
			if unreadSince.IsZero() {
				unreadSince = now
			}
			if now.Sub(unreadSince) > patience {
				return "", fmt.Errorf("%s: reading the metrics: %w", st.name, unread)
			}
			r.progress("%s %v/%v: not judged: reading the metrics: %v", st.name, at.Sub(start), st.duration, unread)
			continue
		}
		unreadSince = time.Time{}
		evs := make([]judge.Evaluation, len(st.checks))
		for i, rd := range reads {
			evs[i] = trackers[i].Observe(at, rd.canary, rd.control)
			if rd.err != nil {
				evs[i].Reason = strings.TrimSpace(evs[i].Reason + " (" + rd.err.Error() + ")")
			}
		}
		var breaching []string
		for i, tr := range trackers {
			if tr.Breaching() {
				breaching = append(breaching, fmt.Sprintf("%q", st.checks[i].Name))
			}
		}
		over := !at.Before(end)
		final := over && (len(breaching) == 0 || !at.Before(end.Add(longestBreach)))
		if over {
			st.rep.ExtendedSeconds = at.Sub(end).Seconds()
		}
		if final {
			for i, tr := range trackers {
				if evs[i].Verdict != judge.Fail {
					if fin := tr.Final(at); fin.Verdict == judge.Fail {
						evs[i] = fin
					}
				}
			}
		}
		failed := ""
		var parts []string
		for i, c := range st.checks {
			st.rep.Checks[i].update(evs[i])
			ev.Checks = append(ev.Checks, checkValue(c.Name, evs[i]))
			parts = append(parts, fmt.Sprintf("%s %s/%s %s", c.Name, num(evs[i].Canary), num(evs[i].Control), evs[i].Verdict))
			if evs[i].Verdict == judge.Fail && failed == "" {
				failed = fmt.Sprintf("check %q failed: %s", c.Name, evs[i].Reason)
			}
		}
		st.rep.addEvaluation(ev)
		line := fmt.Sprintf("%s %v/%v: %s", st.name, at.Sub(start), st.duration, strings.Join(parts, "; "))
		if len(m.excluded) > 0 {
			line += "; left out: " + exclusions(m.excluded, nil)
		}
		r.progress("%s", line)
		switch {
		case failed != "":
			return failed, nil
		case final:
			return "", nil
		case over && !extending:
			extending = true
			r.progress("%s is over with %s in breach: it goes on until the breach ends or lasts its breach_seconds (at most %v)",
				st.name, strings.Join(breaching, ", "), longestBreach)
		}
	}
}

// exclusions lists the hosts left out and why; with hosts, only those
// among them.
func exclusions(ex []Exclusion, hosts []string) string {
	var parts []string
	for _, e := range ex {
		if hosts == nil || slices.Contains(hosts, e.Host) {
			parts = append(parts, e.Host+" "+e.Reason)
		}
	}
	return strings.Join(parts, "; ")
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

// measureBaseline reads the bake's checks on the whole fleet for the
// longest of their windows (at least an interval) before anything is
// pushed: the values relative bake checks compare with.
func (r *run) measureBaseline(ctx context.Context) error {
	b := r.o.Spec.Bake
	fleet := r.metricHosts(slices.Sorted(maps.Keys(r.hosts)))
	window := r.o.Spec.Interval()
	for _, c := range b.Checks {
		window = max(window, c.window())
	}
	r.progress("bake baseline: reading %d checks on the %d hosts for %v before pushing anything", len(b.Checks), len(fleet), window)
	r.provider.Reset(r.now())
	if err := r.provider.Collect(ctx, fleet); err != nil {
		return err
	}
	start := r.now()
	for k := 1; ; k++ {
		at := start.Add(time.Duration(k) * r.o.Spec.Interval())
		if err := r.sleep(ctx, at.Sub(r.now())); err != nil {
			return err
		}
		if err := r.provider.Collect(ctx, fleet); err != nil {
			return err
		}
		if !at.Before(start.Add(window)) {
			break
		}
	}
	now := r.now()
	r.baseline = make([][]float64, len(b.Checks))
	for i, c := range b.Checks {
		jc, err := c.judge()
		if err != nil {
			return err
		}
		samples, err := r.provider.Values(ctx, c.query(), fleet, now)
		r.baseline[i] = values(samples)
		v, ok := judge.Aggregate(jc.ControlAgg, r.baseline[i])
		bv := BaselineValue{Name: c.Name, Value: finite(v), N: len(r.baseline[i])}
		r.rep.Baseline = append(r.rep.Baseline, bv)
		if !ok && c.Predicate.Relative != nil && jc.NoData != judge.NoDataPass {
			if err != nil {
				return fmt.Errorf("bake check %q: no values on the fleet before the change to compare with: %w", c.Name, err)
			}
			return fmt.Errorf("bake check %q: no values on the fleet before the change to compare with", c.Name)
		}
		r.progress("bake baseline: %s %s", c.Name, num(v))
	}
	return nil
}

// bake watches the fleet running the landed revision; it returns why the
// bake failed, or "".
func (r *run) bake(ctx context.Context) (string, error) {
	b := r.o.Spec.Bake
	fleet := slices.Sorted(maps.Keys(r.hosts))
	r.rep.Bake = &PhaseReport{Name: "bake", Canary: fleet, Control: []string{}, Checks: []CheckReport{}}
	r.progress("bake: watching %s on revision %d for %v", strings.Join(fleet, ","), r.rep.Revision, b.Duration())
	failed, err := r.observe(ctx, &stage{
		name: "bake", checks: b.Checks, duration: b.Duration(), rep: r.rep.Bake,
		canary: fleet, baseline: r.baseline, required: 1, shortIsError: true,
		canaryOK: r.runsLanded, running: fmt.Sprintf("revision %d", r.rep.Revision),
	})
	r.rep.Bake.Ended = r.now().UTC()
	switch {
	case err != nil:
	case failed != "":
		r.rep.Bake.Verdict = Fail
	default:
		r.rep.Bake.Verdict = Pass
		r.progress("bake passed")
	}
	return failed, err
}

// awaitHosts waits until every host in names satisfies ok, as the hosts
// report to the daemon, for at most ApplyTimeout.
func (r *run) awaitHosts(ctx context.Context, names []string, what string, ok func(wire.Host) bool) error {
	deadline := r.now().Add(r.o.ApplyTimeout)
	for {
		hosts, err := r.o.Daemon.Hosts(ctx)
		var pending []string
		if err == nil {
			for _, name := range names {
				i := slices.IndexFunc(hosts, func(h wire.Host) bool { return h.Name == name })
				if i < 0 || !ok(hosts[i]) {
					pending = append(pending, name)
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		if r.now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waiting for hosts to %s: %w", what, err)
			}
			return fmt.Errorf("%s did not %s within %v", strings.Join(pending, ", "), what, r.o.ApplyTimeout)
		}
		if err := r.sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// awaitPublished waits until the daemon's current version of the config
// comes from commit, for at most ApplyTimeout, and returns its revision.
func (r *run) awaitPublished(ctx context.Context, commit string) (int64, error) {
	deadline := r.now().Add(r.o.ApplyTimeout)
	for {
		rev, c, err := r.o.Daemon.Current(ctx, r.o.Spec.Config)
		if err == nil && c == commit {
			return rev, nil
		}
		if r.now().After(deadline) {
			return 0, fmt.Errorf("the daemon did not publish commit %s within %v: does it tail this repository?", commit, r.o.ApplyTimeout)
		}
		if err := r.sleep(ctx, pollEvery); err != nil {
			return 0, err
		}
	}
}

// reverted reports whether h serves none of the run's overrides.
func (r *run) reverted(h wire.Host) bool {
	return !slices.ContainsFunc(h.Overrides, func(o wire.AppliedOverride) bool { return o.ID == r.o.ID })
}

// rollback removes the override and waits until every host it named
// serves the committed config again.
func (r *run) rollback(ctx context.Context) error {
	if len(r.pushed) == 0 {
		return nil
	}
	r.release()
	r.progress("rolling back: removing the override from %s", strings.Join(r.pushed, ","))
	if err := r.o.Daemon.DeleteOverride(ctx, r.o.ID); err != nil {
		return fmt.Errorf("rolling back: %w", err)
	}
	if err := r.awaitHosts(ctx, r.pushed, "revert", r.reverted); err != nil {
		return fmt.Errorf("rolling back: %w", err)
	}
	r.rep.RevertSeconds = r.now().Sub(r.firstPut).Seconds()
	r.progress("rolled back: %s serve revision %d again", strings.Join(r.pushed, ","), r.rep.Base)
	return nil
}

// land waits for the daemon to publish the landing commit and the canary
// hosts to apply it, then removes the override. The lease is kept until
// then, so that no canary host goes back to the old config.
func (r *run) land(ctx context.Context, commit string) error {
	r.mu.Lock()
	r.rep.Commit = commit
	r.mu.Unlock()
	r.recordSoon()
	r.progress("landed as commit %s; waiting for the daemon to publish it", commit)
	rev, err := r.awaitPublished(ctx, commit)
	if err != nil {
		r.rollback(ctx)
		return err
	}
	r.rep.Revision = rev
	// Remove the override only once the canary hosts hold the landed
	// revision, so that they never go back to the old config.
	err = r.awaitHosts(ctx, r.pushed, fmt.Sprintf("apply revision %d", rev), func(h wire.Host) bool { return h.Applied >= rev })
	if lostErr := r.leaseLost(); lostErr != nil {
		err = errors.Join(err, fmt.Errorf("while landing: %w", lostErr))
	}
	r.release()
	if err := errors.Join(err, r.o.Daemon.DeleteOverride(ctx, r.o.ID)); err != nil {
		return err
	}
	r.progress("revision %d published; override removed", rev)
	return nil
}

// revert commits the undoing of the landed change and waits until the
// daemon has published it and the fleet runs it.
func (r *run) revert(ctx context.Context) error {
	r.progress("reverting commit %s", r.rep.Commit)
	commit, err := r.o.Revert(ctx)
	if err != nil {
		return fmt.Errorf("reverting: %w", err)
	}
	r.mu.Lock()
	r.rep.RevertCommit = commit
	r.mu.Unlock()
	r.recordSoon()
	rev, err := r.awaitPublished(ctx, commit)
	if err != nil {
		return fmt.Errorf("reverting: %w", err)
	}
	r.rep.RevertRevision = rev
	fleet := slices.Sorted(maps.Keys(r.hosts))
	if err := r.awaitHosts(ctx, fleet, fmt.Sprintf("apply revision %d", rev), func(h wire.Host) bool { return h.Applied >= rev }); err != nil {
		return fmt.Errorf("reverting: %w", err)
	}
	r.progress("reverted as commit %s: revision %d published and applied by %s", commit, rev, strings.Join(fleet, ","))
	return nil
}
