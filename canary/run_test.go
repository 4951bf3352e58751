package canary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/canary/metrics"
	"github.com/cfg-dev/cfg/wire"
)

// These tests run the controller in simulated time (sim_test.go).

func absCheck(name, metric string, limit float64, breach int, noData string) Check {
	c := absolute()[0]
	c.Name, c.Metric, c.Predicate.Absolute.Limit, c.BreachSeconds, c.NoData = name, metric, limit, breach, noData
	c.CanaryAggregation, c.ControlAggregation, c.Worse, c.Quantile, c.WindowSeconds = "MAX", "MAX", "HIGHER_IS_WORSE", 0.99, 1
	return c
}

func relCheck(name, metric string, ratio, slack float64, breach int) Check {
	c := relative()[0]
	c.Name, c.Metric, c.Predicate.Relative.MaxRatio, c.Predicate.Relative.Slack, c.BreachSeconds = name, metric, ratio, slack, breach
	c.CanaryAggregation, c.ControlAggregation, c.Worse, c.NoData, c.Quantile, c.WindowSeconds = "MEAN", "MEAN", "HIGHER_IS_WORSE", "WAIT", 0.99, 1
	return c
}

func phase(name string, targets Targets, seconds int, checks ...Check) Phase {
	return Phase{Name: name, Targets: targets, DurationSeconds: seconds, Checks: checks}
}

func simSpec(interval, lease int, phases ...Phase) Spec {
	return Spec{Config: "demo/service", Provider: ProviderScrape, ScrapeIntervalSeconds: interval, LeaseSeconds: lease, Phases: phases}
}

// bad returns a health whose metric "errors" is 1 on hosts serving "new"
// while when says so, and 0 otherwise.
func bad(when func(v hostView) bool) health {
	return func(metric string, v hostView) float64 {
		if metric != "errors" {
			return math.NaN()
		}
		if v.data == "new" && when(v) {
			return 1
		}
		return 0
	}
}

var (
	always = bad(func(hostView) bool { return true })
	never  = bad(func(hostView) bool { return false })
)

// checkServing checks what each host serves after the run: the landed
// revision for a landed run, the old config otherwise, and no override.
func (f *simFleet) checkServing(t *testing.T, rep *Report) {
	t.Helper()
	want := "old"
	if rep.Outcome == Landed {
		want = "new"
	}
	// Let what the run last did reach the hosts.
	f.clock.Advance(time.Second)
	f.lock()
	defer f.mu.Unlock()
	for _, h := range f.hosts {
		if h.ov != nil || h.data != want {
			t.Errorf("%s serves %+v (data %q, revision %d) after the run, want %q", h.name, h.ov, h.data, h.applied, want)
		}
	}
}

func TestRunChecks(t *testing.T) {
	// Bad for the first 1.5 s on the new config, then fine.
	briefly := bad(func(v hostView) bool { return v.running < 1500*time.Millisecond })
	for _, tc := range []struct {
		name    string
		health  health
		check   Check
		outcome Outcome
		reason  string
		evals   int // evaluations of the phase
	}{
		{"brief breach passes", briefly, absCheck("c", "errors", 0.5, 4, "WAIT"), Landed, "", 5},
		{"sustained breach fails after breach_seconds", always, absCheck("c", "errors", 0.5, 2, "WAIT"), RolledBack,
			`phase "two": check "c" failed: canary 1 > 0.5 for 2s (limit 2s)`, 3},
		{"no data FAIL fails at once", always, absCheck("c", "missing", 0.5, 0, "FAIL"), RolledBack,
			`phase "two": check "c" failed: no canary data`, 1},
		{"no data PASS passes", always, absCheck("c", "missing", 0.5, 0, "PASS"), Landed, "", 5},
		{"no data WAIT fails at the end", always, absCheck("c", "missing", 0.5, 0, "WAIT"), RolledBack,
			`phase "two": check "c" failed: no canary data during the phase`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 4)
			rep, err := f.run(context.Background(), simSpec(1, 5, phase("two", Targets{Count: ptr(2)}, 5, tc.check)), tc.health)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome || rep.Reason != tc.reason {
				t.Fatalf("outcome %q (%s), want %q (%s)", rep.Outcome, rep.Reason, tc.outcome, tc.reason)
			}
			if got := len(rep.Phases[0].Evaluations); got != tc.evals {
				t.Errorf("%d evaluations, want %d", got, tc.evals)
			}
			f.checkServing(t, rep)
			f.checkContinuous(t, rep)
			if tc.name == "brief breach passes" && !slices.ContainsFunc(f.lines, func(l string) bool { return strings.HasSuffix(l, " breach") }) {
				t.Errorf("no evaluation saw the brief breach: %q", f.lines)
			}
			runs, _ := f.Runs(context.Background())
			wantStatus := map[Outcome]string{Landed: wire.RunLanded, RolledBack: wire.RunRolledBack}[tc.outcome]
			if len(runs) != 1 || runs[0].Status != wantStatus || len(runs[0].Report) == 0 || runs[0].Candidate != rep.Candidate {
				t.Errorf("recorded runs %+v; want one %s with its report and candidate", runs, wantStatus)
			}
		})
	}
}

// TestRunResetsAtPhaseStart checks that each phase tells the provider
// when it starts (after its canaries applied the candidate), so that a
// provider that does not forget by itself, as the prometheus provider's
// server does not, reads only the samples taken since.
func TestRunResetsAtPhaseStart(t *testing.T) {
	t.Parallel()
	f := newSim(t, 6)
	var p *simProvider
	spec := simSpec(1, 5, phase("one", Targets{Count: ptr(1)}, 3, absCheck("c", "errors", 0.5, 0, "WAIT")),
		phase("two", Targets{Count: ptr(2)}, 3, absCheck("c", "errors", 0.5, 0, "WAIT")))
	rep, err := f.run(context.Background(), spec, never, func(o *Options) { p = o.Provider.(*simProvider) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != Landed || len(rep.Phases) != 2 {
		t.Fatalf("outcome %q (%s), %d phases; want landed, 2", rep.Outcome, rep.Reason, len(rep.Phases))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.resets) != 2 {
		t.Fatalf("the provider was reset %d times (%v), want once a phase", len(p.resets), p.resets)
	}
	for i, ph := range rep.Phases {
		if !p.resets[i].Equal(ph.Started) {
			t.Errorf("phase %q started at %v, the provider was reset to count samples since %v", ph.Name, ph.Started, p.resets[i])
		}
	}
}

// A check's breach counts from its first failing evaluation, exactly on
// the evaluation schedule: with a 2 s interval and a 4 s breach, the
// third failing evaluation fails the check.
func TestRunBreachSchedule(t *testing.T) {
	f := newSim(t, 4)
	bad := bad(func(v hostView) bool { return v.running >= 3*time.Second })
	rep, err := f.run(context.Background(), simSpec(2, 30, phase("two", Targets{Count: ptr(2)}, 20, absCheck("c", "errors", 0.5, 4, "WAIT"))), bad)
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, ev := range rep.Phases[0].Evaluations {
		verdicts = append(verdicts, fmt.Sprintf("%vs:%v", ev.Seconds, ev.Checks[0].Verdict))
	}
	// The canaries have run the candidate for the 0.3 s it took them
	// to report it (the observation starts then) plus the phase's time.
	want := []string{"2s:pass", "4s:breach", "6s:breach", "8s:fail"}
	if !slices.Equal(verdicts, want) {
		t.Errorf("evaluations %v, want %v", verdicts, want)
	}
	if rep.Outcome != RolledBack {
		t.Errorf("outcome %q", rep.Outcome)
	}
}

// Cancelling the run (Ctrl-C) rolls back.
func TestRunInterrupted(t *testing.T) {
	f := newSim(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := f.run(ctx, simSpec(1, 5, phase("two", Targets{Count: ptr(2)}, 60, absCheck("c", "errors", 0.5, 0, "WAIT"))), never,
		func(o *Options) {
			progress := o.Progress
			o.Progress = func(line string) {
				progress(line)
				if strings.HasPrefix(line, `phase "two" 3s/`) {
					cancel()
				}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != RolledBack || rep.Reason != "interrupted" {
		t.Errorf("outcome %q (%s), want rolled_back (interrupted)", rep.Outcome, rep.Reason)
	}
	f.checkServing(t, rep)
	f.checkContinuous(t, rep)
}

// A run interrupted while the daemon's answer to its first push is on
// its way (the daemon has set the override and sent it to the hosts) is
// rolled back like any other: the push failed for the run, not for the
// daemon, so Run removes the override and returns once every host it
// named serves the committed config, rather than leaving them on the
// candidate until the lease runs out.
func TestRunInterruptedDuringPush(t *testing.T) {
	f := newSim(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The answer takes a second, by which time the hosts serve the
	// override; the run is interrupted before it comes.
	f.afterPut = func() {
		f.clock.Advance(time.Second)
		cancel()
	}
	spec := simSpec(1, 60, phase("two", Targets{Count: ptr(2)}, 20, absCheck("c", "errors", 0.5, 0, "WAIT")))
	plan, err := Plan(spec, hostsN(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.run(ctx, spec, never)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != RolledBack || rep.Reason != "interrupted" {
		t.Errorf("outcome %q (%s), want rolled_back (interrupted)", rep.Outcome, rep.Reason)
	}
	f.lock()
	var overridden []string
	for _, h := range f.hosts {
		if h.ov != nil {
			overridden = append(overridden, h.name)
		}
	}
	_, set := f.overrides["run-1"]
	f.mu.Unlock()
	if set || len(overridden) > 0 {
		t.Errorf("when Run returns, the daemon holds the override: %v; %v serve it (pushed to %v)", set, overridden, plan[0].Canary)
	}
	for _, h := range plan[0].Canary {
		if hist := f.history()[h]; !slices.ContainsFunc(hist, func(s served) bool { return s.data == "new" }) {
			t.Errorf("%s never served the candidate: %+v", h, hist)
		}
	}
	f.checkServing(t, rep)
	f.checkContinuous(t, rep)
}

// With phases three times as long as the lease, and a daemon that takes
// longer than the lease to publish the landing commit, every canary host
// serves the candidate from when it first gets it until the rollback or
// the landing: the lease is renewed through phase boundaries and
// landing.
func TestRunServesContinuously(t *testing.T) {
	for _, tc := range []struct {
		name    string
		health  health
		outcome Outcome
		stuck   func(n int) bool
	}{
		{"good change lands", never, Landed, nil},
		{"bad change rolls back", bad(func(v hostView) bool { return v.running > 9*time.Second }), RolledBack, nil},
		// A renewal that never answers is given up after a third of the
		// lease and tried again in time.
		{"every other renewal stuck", never, Landed, func(n int) bool { return n%2 == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 6)
			f.publishLag = 5 * time.Second
			f.renewStuck = tc.stuck
			spec := simSpec(1, 3,
				phase("two", Targets{Count: ptr(2)}, 9, absCheck("c", "errors", 0.5, 2, "WAIT")),
				phase("half", Targets{Percent: ptr(50.0)}, 9, absCheck("c", "errors", 0.5, 2, "WAIT")))
			rep, err := f.run(context.Background(), spec, tc.health)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome {
				t.Fatalf("outcome %q (%s), want %q", rep.Outcome, rep.Reason, tc.outcome)
			}
			f.checkServing(t, rep)
			f.checkContinuous(t, rep)
			for _, p := range rep.Phases {
				for _, ev := range p.Evaluations {
					if len(ev.Excluded) > 0 {
						t.Errorf("phase %q at %vs left out %+v", p.Name, ev.Seconds, ev.Excluded)
					}
				}
			}
		})
	}
}

// A landing that commits nothing because the change cannot land as it
// was canaried (the branch moved) rolls back: the override is removed,
// every host serves the committed config again, and the run is
// RolledBack with the reason, not Failed. Any other error of Land fails
// the run, rolled back too.
func TestRunLandRefused(t *testing.T) {
	spec := simSpec(1, 3, phase("two", Targets{Count: ptr(2)}, 6, absCheck("c", "errors", 0.5, 2, "WAIT")))
	for _, tc := range []struct {
		name    string
		err     error
		outcome Outcome
		wantErr bool
	}{
		{"not landed", &NotLandedError{errors.New("nothing committed: the branch moved")}, RolledBack, false},
		{"an error", errors.New("disk full"), Failed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 4)
			rep, err := f.run(context.Background(), spec, never, func(o *Options) {
				o.Land = func(context.Context) (string, error) { return "", tc.err }
			})
			if (err != nil) != tc.wantErr || rep.Outcome != tc.outcome || rep.Reason != "landing: "+tc.err.Error() || rep.Commit != "" {
				t.Fatalf("outcome %q (%s), commit %q, error %v; want %q (landing: %v)", rep.Outcome, rep.Reason, rep.Commit, err, tc.outcome, tc.err)
			}
			f.checkServing(t, rep)
			f.checkContinuous(t, rep)
			runs, _ := f.RevertedRuns(context.Background(), "")
			if len(runs) != 0 {
				t.Errorf("reverted runs %+v", runs)
			}
			f.mu.Lock()
			status := f.runs["run-1"].Status
			f.mu.Unlock()
			if want := map[Outcome]string{RolledBack: wire.RunRolledBack, Failed: wire.RunFailed}[tc.outcome]; status != want {
				t.Errorf("the daemon records the run as %q, want %q", status, want)
			}
		})
	}
}

// Each evaluation judges only the canaries that report running the
// candidate and the controls that report the committed config; the
// others are named. A phase with fewer canaries running the candidate
// than it pushed it to, for longer than an interval and ApplyGrace,
// fails.
func TestRunMembership(t *testing.T) {
	spec := simSpec(2, 5, phase("two", Targets{Count: ptr(2)}, 40, relCheck("c", "errors", 1.5, 0.01, 4)))
	plan, err := Plan(spec, hostsN(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	canary, control := plan[0].Canary, plan[0].Control

	t.Run("a canary that never runs the candidate", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		f.host(canary[1]).ignoreOverrides = true
		rep, err := f.run(context.Background(), spec, never)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`phase "two": 1 of 2 canary hosts run the candidate 12s after it was pushed (%s serves revision 1, not the candidate): no data about the candidate is not a pass`, canary[1])
		if rep.Outcome != RolledBack || rep.Reason != want || len(rep.Phases[0].Evaluations) != 0 {
			t.Errorf("outcome %q (%s), %d evaluations; want rolled_back (%s) before any evaluation", rep.Outcome, rep.Reason, len(rep.Phases[0].Evaluations), want)
		}
		f.checkServing(t, rep)
	})

	t.Run("a canary that stops running the candidate", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		// Cut off from the daemon 5 s in, the host's agent drops the
		// override when the lease runs out on its clock.
		f.host(canary[0]).cutOff = simStart.Add(5 * time.Second)
		rep, err := f.run(context.Background(), spec, never)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outcome != RolledBack || !strings.HasPrefix(rep.Reason, `phase "two": 1 of 2 canary hosts ran the candidate for 14s (`+canary[0]+` serves revision 1, not the candidate)`) {
			t.Errorf("outcome %q (%s)", rep.Outcome, rep.Reason)
		}
		evs := rep.Phases[0].Evaluations
		first := slices.IndexFunc(evs, func(ev Evaluation) bool { return len(ev.Excluded) > 0 })
		if first < 0 {
			t.Fatalf("no evaluation left %s out: %+v", canary[0], evs)
		}
		for _, ev := range evs[first:] {
			want := []Exclusion{{Host: canary[0], Reason: "serves revision 1, not the candidate"}}
			if !slices.Equal(ev.Excluded, want) || !slices.Equal(ev.Canary, canary[1:]) || len(ev.Checks) > 0 && ev.Checks[0].CanaryN != 1 {
				t.Errorf("evaluation at %vs: canary %v (%d values), left out %+v; want %v judged and %+v left out",
					ev.Seconds, ev.Canary, ev.Checks[0].CanaryN, ev.Excluded, canary[1:], want)
			}
		}
	})

	t.Run("a control that serves another override", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		f.PutOverride(context.Background(), wire.Override{ID: "other", Config: "demo/service", Hosts: control[:1], Data: []byte("other"), LeaseSeconds: 3600})
		spec := spec
		spec.Phases = []Phase{phase("two", Targets{Count: ptr(2)}, 6, relCheck("c", "errors", 1.5, 0.01, 4))}
		rep, err := f.run(context.Background(), spec, never)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outcome != Landed {
			t.Errorf("outcome %q (%s)", rep.Outcome, rep.Reason)
		}
		for _, ev := range rep.Phases[0].Evaluations {
			want := []Exclusion{{Host: control[0], Reason: "serves override other/1, not the committed config"}}
			if !slices.Equal(ev.Excluded, want) || !slices.Equal(ev.Control, control[1:]) || ev.Checks[0].ControlN != 1 {
				t.Errorf("evaluation at %vs: control %v, left out %+v; want %+v left out", ev.Seconds, ev.Control, ev.Excluded, want)
			}
		}
		var text strings.Builder
		rep.WriteText(&text)
		if want := fmt.Sprintf("  left out of evaluations: %s from 3 of 3 (serves override other/1, not the committed config)\n", control[0]); !strings.Contains(text.String(), want) {
			t.Errorf("report text lacks %q:\n%s", want, text.String())
		}
	})
}

// A phase never ends in breach: one that ends with a check in breach goes
// on until the breach ends (and the phase passes) or lasts its
// breach_seconds (and the phase fails).
func TestRunBreachAtEndOfPhase(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to time.Duration // the candidate fails while running this long
		outcome  Outcome
		reason   string
		extended float64
	}{
		// The failures start 25 s into a 30 s phase (the evaluation at
		// 26 s) and go on: the breach reaches 4 s at 30 s.
		{"late failure", 25 * time.Second, time.Hour, RolledBack, `check "c" failed: canary 1 > control 0 × 1.5 + 0.01 for 4s (limit 4s)`, 0},
		// At 28 s: the phase is extended to 32 s, where 4 s are reached.
		{"later failure", 27 * time.Second, time.Hour, RolledBack, `check "c" failed: canary 1 > control 0 × 1.5 + 0.01 for 4s (limit 4s)`, 2},
		// At 28 s and 30 s, cleared at 32 s: the phase passes then.
		{"brief failure at the end", 27 * time.Second, 31 * time.Second, Landed, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 4)
			f.delay = 0
			health := bad(func(v hostView) bool { return v.running > tc.from && v.running <= tc.to })
			rep, err := f.run(context.Background(), simSpec(2, 60, phase("two", Targets{Count: ptr(2)}, 30, relCheck("c", "errors", 1.5, 0.01, 4))), health)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome || !strings.Contains(rep.Reason, tc.reason) || rep.Phases[0].ExtendedSeconds != tc.extended {
				t.Errorf("outcome %q (%s), extended %v s; want %q (%s), extended %v s", rep.Outcome, rep.Reason, rep.Phases[0].ExtendedSeconds, tc.outcome, tc.reason, tc.extended)
			}
		})
	}
}

// A change whose failure shows only after twice the lease is rolled back
// when the phases last long enough, and reverted by the bake otherwise.
func TestRunLateFailure(t *testing.T) {
	const lease = 4
	late := bad(func(v hostView) bool { return v.running > 2*lease*time.Second })
	check := relCheck("c", "errors", 1.5, 0.01, 2)
	bake := &Bake{DurationSeconds: 3 * lease, Checks: []Check{relCheck("c", "errors", 1.5, 0.01, 2)}}
	for _, tc := range []struct {
		name    string
		spec    Spec
		outcome Outcome
		reason  string
	}{
		{"phases three times the lease", simSpec(1, lease,
			phase("two", Targets{Count: ptr(2)}, 3*lease, check), phase("half", Targets{Percent: ptr(50.0)}, 3*lease, check)),
			RolledBack, `phase "two": check "c" failed`},
		{"short phases and a bake", func() Spec {
			s := simSpec(1, lease, phase("two", Targets{Count: ptr(2)}, lease, check), phase("half", Targets{Percent: ptr(50.0)}, lease/2, check))
			s.Bake = bake
			return s
		}(), Reverted, `bake: check "c" failed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 6)
			rep, err := f.run(context.Background(), tc.spec, late)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome || !strings.HasPrefix(rep.Reason, tc.reason) {
				t.Fatalf("outcome %q (%s), want %q (%s...)", rep.Outcome, rep.Reason, tc.outcome, tc.reason)
			}
			f.checkServing(t, rep)
			f.checkContinuous(t, rep)
		})
	}
}

// A change that overloads what the whole fleet shares passes the phases
// at half the fleet and is reverted by the bake; the reverted candidate
// is not tried again unless asked.
func TestRunFleetOverload(t *testing.T) {
	f := newSim(t, 6)
	overload := bad(func(v hostView) bool { return v.share > 0.6 })
	check := relCheck("error ratio", "errors", 2, 0.02, 4)
	spec := simSpec(2, 10, phase("two", Targets{Count: ptr(2)}, 10, check), phase("half", Targets{Percent: ptr(50.0)}, 10, check))
	spec.Bake = &Bake{DurationSeconds: 20, Checks: []Check{check}}
	reverts := 0
	rep, err := f.run(context.Background(), spec, overload, func(o *Options) {
		revert := o.Revert
		o.Revert = func(ctx context.Context) (string, error) { reverts++; return revert(ctx) }
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != Reverted || reverts != 1 || rep.Commit == "" || rep.RevertCommit == "" || rep.RevertRevision != rep.Revision+1 {
		t.Fatalf("outcome %q (%s), %d reverts, commit %q, revert %q (revision %d after %d)", rep.Outcome, rep.Reason, reverts, rep.Commit, rep.RevertCommit, rep.RevertRevision, rep.Revision)
	}
	want := `bake: check "error ratio" failed: canary 1 > control 0 × 2 + 0.02 for 4s (limit 4s)`
	if rep.Reason != want || rep.Bake.Verdict != Fail || rep.Phases[1].Verdict != Pass {
		t.Errorf("reason %q, bake %q, last phase %q; want %q, fail, pass", rep.Reason, rep.Bake.Verdict, rep.Phases[1].Verdict, want)
	}
	if len(rep.Baseline) != 1 || rep.Baseline[0].Value == nil || *rep.Baseline[0].Value != 0 || rep.Baseline[0].N != 6 {
		t.Errorf("baseline %+v, want 0 from 6 hosts", rep.Baseline)
	}
	f.checkServing(t, rep)
	f.checkContinuous(t, rep)
	runs, _ := f.Runs(context.Background())
	if len(runs) != 1 || runs[0].Status != wire.RunReverted || runs[0].RevertCommit != rep.RevertCommit || runs[0].Candidate != rep.Candidate {
		t.Errorf("recorded run %+v", runs)
	}

	// The same candidate again: refused before anything is pushed.
	rep2, err := f.run(context.Background(), spec, overload, func(o *Options) { o.ID = "run-2" })
	var re *RevertedError
	if rep2 != nil || !errors.As(err, &re) || re.Run.ID != "run-1" ||
		err.Error() != "this candidate of demo/service was landed and then reverted by canary run run-1 (started 2026-11-22T05:00:00Z)" {
		t.Errorf("second run of the reverted candidate: %+v, %v", rep2, err)
	}
	// Unless asked.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep2, err = f.run(ctx, spec, overload, func(o *Options) { o.ID, o.AllowReverted = "run-3", true })
	if err != nil || rep2.Outcome != RolledBack || rep2.Reason != "interrupted" {
		t.Errorf("with AllowReverted: %+v, %v", rep2, err)
	}
}

// A bake that has nothing to compare with fails the run before anything
// is pushed.
func TestRunBakeWithoutBaseline(t *testing.T) {
	f := newSim(t, 4)
	spec := simSpec(1, 5, phase("two", Targets{Count: ptr(2)}, 5, relCheck("c", "errors", 1.5, 0.01, 2)))
	spec.Bake = &Bake{DurationSeconds: 5, Checks: []Check{relCheck("missing", "missing", 1.5, 0.01, 2)}}
	rep, err := f.run(context.Background(), spec, never)
	want := `bake check "missing": no values on the fleet before the change to compare with`
	if err == nil || err.Error() != want || rep.Outcome != Failed || rep.Reason != want || len(rep.Phases) != 0 {
		t.Errorf("%v; outcome %q (%s), %d phases; want failed (%s) before any phase", err, rep.Outcome, rep.Reason, len(rep.Phases), want)
	}
	f.checkServing(t, rep)
	for _, h := range f.hosts {
		if len(h.history) != 1 {
			t.Errorf("%s served %+v", h.name, h.history)
		}
	}
}

// A run that loses its lease fails, and what it pushed is removed: when
// the daemon says the lease ran out, and when it does not answer for as
// long as the lease.
func TestRunLeaseLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(f *simFleet)
		want string
	}{
		{"lease ran out", func(f *simFleet) { f.renewLost = true }, "the override's lease ran out on the daemon: not found"},
		{"daemon silent", func(f *simFleet) { f.renewStuck = func(n int) bool { return n > 2 } }, "could not renew the override's lease in 3s: the daemon did not answer in 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSim(t, 4)
			tc.set(f)
			rep, err := f.run(context.Background(), simSpec(1, 3, phase("two", Targets{Count: ptr(2)}, 30, absCheck("c", "errors", 0.5, 0, "WAIT"))), never)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || rep.Outcome != Failed {
				t.Errorf("%v; outcome %q (%s), want failed: %s", err, rep.Outcome, rep.Reason, tc.want)
			}
			f.checkServing(t, rep)
		})
	}
}

// The report's evaluations are bounded: the oldest of the longest phases
// are left out.
func TestReportFit(t *testing.T) {
	rep := &Report{Phases: []PhaseReport{{Name: "long"}, {Name: "short"}}}
	for i := range 5000 {
		v := float64(i)
		ev := Evaluation{Seconds: v, Canary: []string{"web-1"}, Control: []string{"web-2"},
			Checks: []CheckValue{{Name: "error ratio", Canary: &v, Control: &v, Verdict: judge.Pass, Reason: strings.Repeat("x", 100)}}}
		rep.Phases[0].addEvaluation(ev)
		if i < 10 {
			rep.Phases[1].addEvaluation(ev)
		}
	}
	rep.fit(100 << 10)
	long, short := rep.Phases[0], rep.Phases[1]
	if n := len(long.Evaluations); n == 0 || n+long.EvaluationsOmitted != 5000 || long.Evaluations[n-1].Seconds != 4999 || len(short.Evaluations) != 10 {
		t.Errorf("after fit: %d evaluations (%d omitted, last at %v) and %d", n, long.EvaluationsOmitted, long.Evaluations[n-1].Seconds, len(short.Evaluations))
	}
}

// unreadable is a provider whose metrics cannot be read from down for
// downFor, as when the prometheus provider's server is down.
type unreadable struct {
	metrics.Provider
	down    time.Time
	downFor time.Duration
}

func (p unreadable) Values(ctx context.Context, q metrics.Query, hosts []metrics.Host, now time.Time) ([]metrics.Sample, error) {
	if !now.Before(p.down) && now.Before(p.down.Add(p.downFor)) {
		return nil, fmt.Errorf("prometheus http://sim: query %s: %w", q.Metric, metrics.ErrUnavailable)
	}
	return p.Provider.Values(ctx, q, hosts, now)
}

// While the hosts' reports or their metrics cannot be read (the daemon,
// or the prometheus provider's server, is down), nothing is judged: a
// short outage leaves the phase to go on, a long one ends the run with an
// error (exit 3), rolled back. An outage is not a lack of data about the
// candidate, even for a check that fails at once without data.
//
// An outage lasts, as the run sees it, from the first evaluation it left
// unjudged; it fails the run at the first evaluation more than an
// interval plus ApplyGrace (11 s here) after that one. With an evaluation
// a second, an outage of 12 s leaves 12 evaluations unjudged, 11 s from
// the first to the last, and the phase goes on; one of 13 s fails the run
// at its 13th evaluation, 12 s after the first.
func TestRunOutages(t *testing.T) {
	spec := simSpec(1, 5, phase("two", Targets{Count: ptr(2)}, 20, absCheck("c", "errors", 0.5, 0, "FAIL")))
	down := simStart.Add(5 * time.Second)
	const (
		reportsDown = `phase "two": reading the hosts' reports: daemon http://sim: connection refused`
		metricsDown = `phase "two": reading the metrics: prometheus http://sim: query errors: metrics unavailable`
	)
	for _, tc := range []struct {
		name      string
		metrics   bool // the metrics are down, not the reports
		down      time.Duration
		outcome   Outcome
		reason    string
		notJudged int // evaluations
	}{
		{"reports, short", false, 5 * time.Second, Landed, "", 5},
		{"reports, 12 s", false, 12 * time.Second, Landed, "", 12},
		{"reports, 13 s", false, 13 * time.Second, Failed, reportsDown, 13},
		{"reports, long", false, time.Minute, Failed, reportsDown, 13},
		{"metrics, short", true, 5 * time.Second, Landed, "", 5},
		{"metrics, 12 s", true, 12 * time.Second, Landed, "", 12},
		{"metrics, 13 s", true, 13 * time.Second, Failed, metricsDown, 13},
		{"metrics, long", true, time.Minute, Failed, metricsDown, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 4)
			tune := func(o *Options) {}
			if tc.metrics {
				tune = func(o *Options) { o.Provider = unreadable{o.Provider, down, tc.down} }
			} else {
				f.hostsDown, f.hostsDownFor = down, tc.down
			}
			rep, err := f.run(context.Background(), spec, never, tune)
			if rep.Outcome != tc.outcome || rep.Reason != tc.reason || (err != nil) != (tc.outcome == Failed) {
				t.Errorf("outcome %q (%s), %v; want %q (%s)", rep.Outcome, rep.Reason, err, tc.outcome, tc.reason)
			}
			evs := rep.Phases[0].Evaluations
			first := slices.IndexFunc(evs, func(ev Evaluation) bool { return len(ev.Checks) == 0 })
			if first < 0 {
				t.Fatalf("no evaluation left unjudged")
			}
			n := slices.IndexFunc(evs[first:], func(ev Evaluation) bool { return len(ev.Checks) > 0 })
			if n < 0 {
				n = len(evs) - first
			}
			if n != tc.notJudged || slices.ContainsFunc(evs[first+n:], func(ev Evaluation) bool { return len(ev.Checks) == 0 }) {
				t.Errorf("%d evaluations in a row not judged, from %vs; want %d, and no other", n, evs[first].Seconds, tc.notJudged)
			}
			if last := evs[len(evs)-1]; rep.Outcome == Failed && tc.outcome == Failed && last.At.Sub(evs[first].At) != 12*time.Second {
				t.Errorf("the run failed at %vs, %v after the first evaluation the outage left unjudged; want 12s",
					last.Seconds, last.At.Sub(evs[first].At))
			}
			f.checkServing(t, rep)
		})
	}
}

// Ctrl-C during the bake stops it and leaves the change landed: nothing
// is reverted, even though the bake would have failed had it gone on,
// and every host runs the landed revision without an override.
func TestRunInterruptedDuringBake(t *testing.T) {
	f := newSim(t, 6)
	// Bad only once the whole fleet runs the candidate: the phases pass,
	// and the bake fails 4 s after it starts unless it is stopped.
	overload := bad(func(v hostView) bool { return v.share > 0.6 })
	check := relCheck("error ratio", "errors", 2, 0.02, 4)
	spec := simSpec(1, 6, phase("two", Targets{Count: ptr(2)}, 4, check), phase("half", Targets{Percent: ptr(50.0)}, 4, check))
	spec.Bake = &Bake{DurationSeconds: 20, Checks: []Check{check}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reverts := 0
	rep, err := f.run(ctx, spec, overload, func(o *Options) {
		revert := o.Revert
		o.Revert = func(ctx context.Context) (string, error) { reverts++; return revert(ctx) }
		progress := o.Progress
		o.Progress = func(line string) {
			progress(line)
			if strings.HasPrefix(line, "bake 2s/") {
				cancel()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "interrupted during the bake; the change stays landed"; rep.Outcome != Landed || rep.Reason != want || rep.Commit == "" {
		t.Fatalf("outcome %q (%s), commit %q; want %q (%s) with the landing commit", rep.Outcome, rep.Reason, rep.Commit, Landed, want)
	}
	if reverts != 0 || rep.RevertCommit != "" {
		t.Errorf("%d reverts, revert commit %q after an interrupted bake", reverts, rep.RevertCommit)
	}
	if rep.Bake == nil || rep.Bake.Verdict != "" || len(rep.Bake.Evaluations) != 2 {
		t.Errorf("bake %+v; want it stopped without a verdict after its 2 s evaluation", rep.Bake)
	}
	for _, p := range rep.Phases {
		if p.Verdict != Pass {
			t.Errorf("phase %q: %q, want pass", p.Name, p.Verdict)
		}
	}
	f.checkServing(t, rep)
	f.checkContinuous(t, rep)
	runs, _ := f.Runs(context.Background())
	if len(runs) != 1 || runs[0].Status != wire.RunLanded || runs[0].Commit != rep.Commit || runs[0].RevertCommit != "" {
		t.Errorf("recorded runs %+v; want one landed with commit %s", runs, rep.Commit)
	}
}

// A rollback is verified: Run returns only once every host it pushed the
// candidate to reports serving the committed config again, however long
// the hosts take to hear of the removal. A canary host that goes on
// serving the candidate (cut off from the daemon, under a long lease)
// makes the run end with an error that names it.
func TestRunRollbackVerified(t *testing.T) {
	spec := simSpec(1, 60, phase("two", Targets{Count: ptr(2)}, 20, absCheck("c", "errors", 0.5, 2, "WAIT")))
	plan, err := Plan(spec, hostsN(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	canary := plan[0].Canary

	// overridden returns the hosts that serve an override now, on the
	// simulated clock as Run left it.
	overridden := func(f *simFleet) []string {
		f.lock()
		defer f.mu.Unlock()
		var out []string
		for _, h := range f.hosts {
			if h.ov != nil {
				out = append(out, h.name)
			}
		}
		return out
	}

	t.Run("slow hosts", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		f.delay = 3 * time.Second
		rep, err := f.run(context.Background(), spec, always)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outcome != RolledBack || !strings.HasPrefix(rep.Reason, `phase "two": check "c" failed`) {
			t.Fatalf("outcome %q (%s), want rolled_back by the check", rep.Outcome, rep.Reason)
		}
		if got := overridden(f); len(got) > 0 {
			t.Errorf("%v still serve the candidate when Run returns", got)
		}
		if f.deleted.IsZero() || f.clock.Now().Before(f.deleted.Add(f.delay)) {
			t.Errorf("Run returned %v after removing the override; the hosts hear of it %v later",
				f.clock.Now().Sub(f.deleted), f.delay)
		}
		f.checkContinuous(t, rep)
	})

	t.Run("a host that does not revert", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		f.host(canary[0]).cutOff = simStart.Add(time.Second)
		rep, err := f.run(context.Background(), spec, always, func(o *Options) { o.ApplyTimeout = 5 * time.Second })
		want := fmt.Sprintf("rolling back: %s did not revert within 5s", canary[0])
		if err == nil || err.Error() != want {
			t.Fatalf("error %v, want %s", err, want)
		}
		if rep.Outcome != RolledBack || !strings.HasPrefix(rep.Reason, `phase "two": check "c" failed`) {
			t.Errorf("outcome %q (%s), want rolled_back by the check", rep.Outcome, rep.Reason)
		}
		if got := overridden(f); !slices.Equal(got, canary[:1]) {
			t.Errorf("%v serve the candidate when Run returns, want %v", got, canary[:1])
		}
	})
}

// A bake that fails when the revert cannot be committed (the branch
// moved after the landing) fails the run with the reason: the change
// stays landed and every host goes on running it.
func TestRunRevertRefused(t *testing.T) {
	f := newSim(t, 6)
	overload := bad(func(v hostView) bool { return v.share > 0.6 })
	check := relCheck("error ratio", "errors", 2, 0.02, 2)
	spec := simSpec(1, 6, phase("two", Targets{Count: ptr(2)}, 3, check), phase("half", Targets{Percent: ptr(50.0)}, 3, check))
	spec.Bake = &Bake{DurationSeconds: 10, Checks: []Check{check}}
	refused := errors.New("nothing committed: the branch moved after commit c2 landed: revert it with git revert c2")
	rep, err := f.run(context.Background(), spec, overload, func(o *Options) {
		o.Revert = func(context.Context) (string, error) { return "", refused }
	})
	want := `bake: check "error ratio" failed: canary 1 > control 0 × 2 + 0.02 for 2s (limit 2s); reverting: ` + refused.Error()
	if err == nil || !errors.Is(err, refused) || rep.Outcome != Failed || rep.Reason != want {
		t.Fatalf("outcome %q (%s), error %v; want failed (%s)", rep.Outcome, rep.Reason, err, want)
	}
	if rep.Commit == "" || rep.RevertCommit != "" || rep.Bake.Verdict != Fail {
		t.Errorf("commit %q, revert commit %q, bake %q; want the landing commit, no revert, a failed bake", rep.Commit, rep.RevertCommit, rep.Bake.Verdict)
	}
	f.clock.Advance(time.Second)
	f.lock()
	for _, h := range f.hosts {
		if h.ov != nil || h.data != "new" || h.applied != rep.Revision {
			t.Errorf("%s serves %+v (data %q, revision %d), want the landed revision %d", h.name, h.ov, h.data, h.applied, rep.Revision)
		}
	}
	f.mu.Unlock()
	f.checkContinuous(t, rep)
	runs, _ := f.Runs(context.Background())
	if len(runs) != 1 || runs[0].Status != wire.RunFailed || runs[0].Commit != rep.Commit {
		t.Errorf("recorded runs %+v; want one failed with commit %s", runs, rep.Commit)
	}
}

// The daemon's record of a run keeps at most maxReportBytes of report: a
// run with more evaluations than that holds is recorded with the oldest
// evaluations of its longest phase left out and counted, its last ones
// and its outcome kept.
func TestRunRecordFits(t *testing.T) {
	t.Parallel()
	f := newSim(t, 4)
	const seconds = 3000 // an evaluation a second: 1.2 MB of report
	spec := simSpec(1, 60, phase("long", Targets{Count: ptr(2)}, seconds, relCheck("error ratio", "errors", 2, 0.02, 2), absCheck("errors", "errors", 0.5, 2, "WAIT")))
	rep, err := f.run(context.Background(), spec, never)
	if err != nil || rep.Outcome != Landed {
		t.Fatalf("outcome %q (%s), %v; want landed", rep.Outcome, rep.Reason, err)
	}
	runs, err := f.Runs(context.Background())
	if err != nil || len(runs) != 1 {
		t.Fatalf("recorded runs %+v, %v", runs, err)
	}
	if n := len(runs[0].Report); n > maxReportBytes {
		t.Errorf("the recorded report takes %d bytes, more than %d", n, maxReportBytes)
	}
	var recorded Report
	if err := json.Unmarshal(runs[0].Report, &recorded); err != nil {
		t.Fatal(err)
	}
	p := recorded.Phases[0]
	n := len(p.Evaluations)
	if p.EvaluationsOmitted == 0 || n+p.EvaluationsOmitted != seconds || p.Evaluations[n-1].Seconds != seconds {
		t.Errorf("recorded: %d evaluations, %d left out, the last at %vs; want %d in all, the last at %ds",
			n, p.EvaluationsOmitted, p.Evaluations[n-1].Seconds, seconds, seconds)
	}
	if recorded.Outcome != Landed || recorded.Commit != rep.Commit || p.Verdict != Pass {
		t.Errorf("recorded outcome %q, commit %q, verdict %q; want landed with %s, pass", recorded.Outcome, recorded.Commit, p.Verdict, rep.Commit)
	}
}

// A bake's revert is verified: Run returns only once the daemon has
// published the revert and every host of the fleet reports running it,
// however long the daemon takes to publish it and the hosts to hear of
// it. A host that does not run it makes the run end with an error that
// names it; the run is still recorded as reverted (the revert is
// committed and published), so that the candidate is not tried again.
func TestRunRevertVerified(t *testing.T) {
	overload := bad(func(v hostView) bool { return v.share > 0.6 })
	check := relCheck("error ratio", "errors", 2, 0.02, 2)
	spec := simSpec(1, 20, phase("two", Targets{Count: ptr(2)}, 3, check), phase("half", Targets{Percent: ptr(50.0)}, 3, check))
	spec.Bake = &Bake{DurationSeconds: 10, Checks: []Check{check}}
	const bakeFailed = `bake: check "error ratio" failed: canary 1 > control 0 × 2 + 0.02 for 2s (limit 2s)`

	t.Run("slow hosts", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 6)
		f.delay, f.publishLag = 3*time.Second, 2*time.Second
		rep, err := f.run(context.Background(), spec, overload)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outcome != Reverted || rep.Reason != bakeFailed || rep.RevertRevision != rep.Revision+1 {
			t.Fatalf("outcome %q (%s), revert revision %d after %d; want reverted (%s)", rep.Outcome, rep.Reason, rep.RevertRevision, rep.Revision, bakeFailed)
		}
		// What the hosts serve when Run returns, without letting the
		// clock go on.
		f.lock()
		published := f.revs[len(f.revs)-1].at
		for _, h := range f.hosts {
			if h.ov != nil || h.data != "old" || h.applied != rep.RevertRevision {
				t.Errorf("%s serves %+v (data %q, revision %d) when Run returns, want the revert, revision %d",
					h.name, h.ov, h.data, h.applied, rep.RevertRevision)
			}
		}
		now := f.clock.Now()
		f.mu.Unlock()
		if now.Before(published.Add(f.delay)) {
			t.Errorf("Run returned %v after the daemon published the revert; the hosts hear of it %v later", now.Sub(published), f.delay)
		}
		f.checkContinuous(t, rep)
	})

	t.Run("a host that does not run the revert", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 6)
		rep, err := f.run(context.Background(), spec, overload, func(o *Options) {
			o.ApplyTimeout = 5 * time.Second
			revert := o.Revert
			o.Revert = func(ctx context.Context) (string, error) {
				// web-3 hears nothing from the daemon from now on.
				f.mu.Lock()
				f.host("web-3").cutOff = f.clock.Now()
				f.mu.Unlock()
				return revert(ctx)
			}
		})
		wantErr := fmt.Sprintf("reverting: web-3 did not apply revision %d within 5s", rep.RevertRevision)
		if err == nil || err.Error() != wantErr || rep.RevertRevision != rep.Revision+1 {
			t.Fatalf("error %v, revert revision %d after %d; want %s", err, rep.RevertRevision, rep.Revision, wantErr)
		}
		if want := bakeFailed + "; " + wantErr; rep.Outcome != Reverted || rep.Reason != want || rep.RevertCommit == "" {
			t.Errorf("outcome %q (%s), revert commit %q; want reverted (%s) with the revert commit", rep.Outcome, rep.Reason, rep.RevertCommit, want)
		}
		f.lock()
		for _, h := range f.hosts {
			want := rep.RevertRevision
			if h.name == "web-3" {
				want = rep.Revision
			}
			if h.ov != nil || h.applied != want {
				t.Errorf("%s serves %+v (revision %d) when Run returns, want revision %d", h.name, h.ov, h.applied, want)
			}
		}
		f.mu.Unlock()
		runs, _ := f.Runs(context.Background())
		if len(runs) != 1 || runs[0].Status != wire.RunReverted || runs[0].RevertCommit != rep.RevertCommit {
			t.Fatalf("%d recorded runs (the first %s, revert commit %q); want one reverted with revert commit %s",
				len(runs), runs[0].Status, runs[0].RevertCommit, rep.RevertCommit)
		}
		// The candidate is not canaried again.
		rep2, err := f.run(context.Background(), spec, overload, func(o *Options) { o.ID = "run-2" })
		var re *RevertedError
		if rep2 != nil || !errors.As(err, &re) || re.Run.ID != "run-1" {
			t.Errorf("second run of the reverted candidate: %+v, %v; want it refused", rep2, err)
		}
	})
}

// Only hosts that reported in the last minute are judged: a canary or a
// control whose reports stop (the daemon goes on giving its last one,
// which says it serves what it should) is left out of every evaluation
// from when that report is more than MaxHostAge old until it reports
// again, and named with the report's age. A canary left out fails the
// phase once that has lasted longer than an interval plus ApplyGrace; a
// control left out leaves the phase to go on with the other controls.
func TestRunStaleReports(t *testing.T) {
	spec := simSpec(2, 5, phase("two", Targets{Count: ptr(2)}, 100, relCheck("c", "errors", 1.5, 0.01, 4)))
	plan, err := Plan(spec, hostsN(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	canary, control := plan[0].Canary, plan[0].Control
	quiet := simStart.Add(5 * time.Second)

	// leftOut checks that the evaluations judge side's hosts (all, or
	// all but host) as host's last report is fresh or stale, and name
	// host when they leave it out; it returns those at which the report
	// is stale.
	leftOut := func(t *testing.T, f *simFleet, rep *Report, host string, all []string, side func(Evaluation) []string) []Evaluation {
		t.Helper()
		var out []Evaluation
		for _, ev := range rep.Phases[0].Evaluations {
			age := ev.At.Sub(quiet)
			wantJudged, wantOut := all, []Exclusion(nil)
			if age > MaxHostAge && ev.At.Before(quiet.Add(f.host(host).quietFor)) {
				wantJudged = slices.DeleteFunc(slices.Clone(all), func(h string) bool { return h == host })
				wantOut = []Exclusion{{Host: host, Reason: fmt.Sprintf("last reported %v ago", age.Round(time.Second))}}
				out = append(out, ev)
			}
			if !slices.Equal(side(ev), wantJudged) || !slices.Equal(ev.Excluded, wantOut) {
				t.Errorf("evaluation at %vs, %v after %s last reported: judged %v, left out %+v; want %v judged, %+v left out",
					ev.Seconds, age, host, side(ev), ev.Excluded, wantJudged, wantOut)
			}
			if len(ev.Checks) > 0 && ev.Checks[0].CanaryN+ev.Checks[0].ControlN != len(ev.Canary)+len(ev.Control) {
				t.Errorf("evaluation at %vs: %d canary and %d control values from %v and %v",
					ev.Seconds, ev.Checks[0].CanaryN, ev.Checks[0].ControlN, ev.Canary, ev.Control)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no evaluation left %s out", host)
		}
		if !slices.ContainsFunc(f.lines, func(l string) bool { return strings.Contains(l, "; left out: "+host+" last reported 1m") }) {
			t.Errorf("no progress line names %s as left out", host)
		}
		return out
	}

	t.Run("a canary", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		// Its reports stop 5 s in and come back after 90 s, at 95 s.
		f.host(canary[0]).quietFrom, f.host(canary[0]).quietFor = quiet, 90*time.Second
		rep, err := f.run(context.Background(), spec, never)
		if err != nil {
			t.Fatal(err)
		}
		out := leftOut(t, f, rep, canary[0], canary, func(ev Evaluation) []string { return ev.Canary })
		first, last := out[0], out[len(out)-1]
		evs := rep.Phases[0].Evaluations
		patience := spec.Interval() + ApplyGrace
		if ran := last.At.Sub(first.At); !last.At.Equal(evs[len(evs)-1].At) || ran <= patience || ran > patience+spec.Interval() {
			t.Errorf("the phase ended at %vs, %v after the first evaluation at which %s's report was stale; want it to fail at the first more than %v after",
				evs[len(evs)-1].Seconds, ran, canary[0], patience)
		}
		want := fmt.Sprintf(`phase "two": 1 of 2 canary hosts ran the candidate for %v (%s last reported %v ago): no data about the candidate is not a pass`,
			last.At.Sub(first.At), canary[0], last.At.Sub(quiet).Round(time.Second))
		if rep.Outcome != RolledBack || rep.Reason != want {
			t.Errorf("outcome %q (%s), want rolled_back (%s)", rep.Outcome, rep.Reason, want)
		}
		f.checkServing(t, rep)
	})

	t.Run("a control", func(t *testing.T) {
		t.Parallel()
		f := newSim(t, 4)
		// Its reports stop 5 s in and come back after 80 s, at 85 s.
		f.host(control[0]).quietFrom, f.host(control[0]).quietFor = quiet, 80*time.Second
		rep, err := f.run(context.Background(), spec, never)
		if err != nil {
			t.Fatal(err)
		}
		leftOut(t, f, rep, control[0], control, func(ev Evaluation) []string { return ev.Control })
		if rep.Outcome != Landed || rep.Phases[0].Verdict != Pass {
			t.Errorf("outcome %q (%s), want landed", rep.Outcome, rep.Reason)
		}
		f.checkServing(t, rep)
	})
}

// The bake judges the hosts of step 1 that report the landed revision: a
// host that applies it late is left out, named, until it reports it, and
// one that never applies it is never judged; the bake goes on with the
// others.
func TestRunBakeJudgesLanded(t *testing.T) {
	t.Parallel()
	f := newSim(t, 6)
	check := relCheck("error ratio", "errors", 2, 0.02, 2)
	spec := simSpec(1, 6, phase("two", Targets{Count: ptr(2)}, 3, check), phase("half", Targets{Percent: ptr(50.0)}, 3, check))
	spec.Bake = &Bake{DurationSeconds: 20, Checks: []Check{check}}
	plan, err := Plan(spec, hostsN(6), 1)
	if err != nil {
		t.Fatal(err)
	}
	// Two hosts that were never canaries: from the landing on, one hears
	// from the daemon 20 s late (longer than the bake waits for the
	// fleet), the other not at all.
	late, lost := plan[1].Control[0], plan[1].Control[1]
	rep, err := f.run(context.Background(), spec, never, func(o *Options) {
		land := o.Land
		o.Land = func(ctx context.Context) (string, error) {
			f.mu.Lock()
			f.host(late).lag = 20 * time.Second
			f.host(lost).cutOff = f.clock.Now()
			f.mu.Unlock()
			return land(ctx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != Landed || rep.Bake == nil || rep.Bake.Verdict != Pass {
		t.Fatalf("outcome %q (%s), bake %+v; want landed, the bake passed", rep.Outcome, rep.Reason, rep.Bake)
	}
	hist := f.history()[late]
	i := slices.IndexFunc(hist, func(s served) bool { return s.data == "new" })
	if i < 0 {
		t.Fatalf("%s never ran the landed revision: %+v", late, hist)
	}
	applied := hist[i].at
	notLanded := fmt.Sprintf("serves revision 1, not the landed revision %d", rep.Revision)
	fleet := []string{"web-1", "web-2", "web-3", "web-4", "web-5", "web-6"}
	var before, after int
	for _, ev := range rep.Bake.Evaluations {
		want := []Exclusion{{Host: lost, Reason: notLanded}}
		if ev.At.Before(applied) {
			want = append(want, Exclusion{Host: late, Reason: notLanded})
			before++
		} else {
			after++
		}
		slices.SortFunc(want, func(a, b Exclusion) int { return strings.Compare(a.Host, b.Host) })
		judged := slices.DeleteFunc(slices.Clone(fleet), func(h string) bool {
			return slices.ContainsFunc(want, func(e Exclusion) bool { return e.Host == h })
		})
		if !slices.Equal(ev.Excluded, want) || !slices.Equal(ev.Canary, judged) || len(ev.Checks) != 1 || ev.Checks[0].CanaryN != len(judged) {
			t.Errorf("bake evaluation at %vs (%s runs revision %d from %vs): judged %v, left out %+v; want %v judged, %+v left out",
				ev.Seconds, late, rep.Revision, applied.Sub(simStart).Seconds(), ev.Canary, ev.Excluded, judged, want)
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d bake evaluations before %s ran the landed revision and %d after; want some of each", before, late, after)
	}
}

// A bake ends in breach as a phase does: one whose check is in breach at
// its last evaluation goes on, one evaluation per interval, until the
// breach ends (the bake passes and the change stays landed) or lasts its
// breach_seconds (the bake fails and the change is reverted).
func TestRunBakeBreachAtEnd(t *testing.T) {
	// Once the whole fleet runs "new", a host is bad from tc.from until
	// tc.to after it began running it: the fleet's mean is over the
	// limit while the five hosts that were never canaries are, which
	// began when the bake did (the canary, earlier, is 1/6 of it).
	check := relCheck("c", "errors", 2, 0.5, 4)
	for _, tc := range []struct {
		name     string
		from, to time.Duration
		outcome  Outcome
		reason   string
		verdicts string // of the bake's evaluations from 8 s on
		extended float64
	}{
		// Bad from the evaluation at 9 s: in breach at 10 s, the end;
		// the breach reaches 4 s at 13 s.
		{"breach that lasts", 8500 * time.Millisecond, time.Hour, Reverted,
			`bake: check "c" failed: canary 1 > control 0 × 2 + 0.5 for 4s (limit 4s)`,
			"8s:pass 9s:breach 10s:breach 11s:breach 12s:breach 13s:fail", 3},
		// Bad at 9, 10 and 11 s, cleared at 12 s: the bake passes then.
		{"breach that ends", 8500 * time.Millisecond, 11500 * time.Millisecond, Landed, "",
			"8s:pass 9s:breach 10s:breach 11s:breach 12s:pass", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSim(t, 6)
			f.delay = 0
			health := bad(func(v hostView) bool { return v.share > 0.6 && v.running > tc.from && v.running <= tc.to })
			spec := simSpec(1, 10, phase("one", Targets{Count: ptr(1)}, 2, check))
			spec.Bake = &Bake{DurationSeconds: 10, Checks: []Check{check}}
			rep, err := f.run(context.Background(), spec, health)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome || rep.Reason != tc.reason || rep.Bake.ExtendedSeconds != tc.extended {
				t.Errorf("outcome %q (%s), bake extended %v s; want %q (%s), extended %v s",
					rep.Outcome, rep.Reason, rep.Bake.ExtendedSeconds, tc.outcome, tc.reason, tc.extended)
			}
			var verdicts []string
			for _, ev := range rep.Bake.Evaluations {
				if ev.Seconds >= 8 {
					verdicts = append(verdicts, fmt.Sprintf("%vs:%v", ev.Seconds, ev.Checks[0].Verdict))
				}
			}
			if got := strings.Join(verdicts, " "); got != tc.verdicts {
				t.Errorf("the bake's evaluations from 8 s on: %s; want %s", got, tc.verdicts)
			}
			f.checkServing(t, rep)
			f.checkContinuous(t, rep)
		})
	}
}
