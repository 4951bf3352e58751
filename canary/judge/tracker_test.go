package judge

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aclements/go-moremath/stats"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

const s = time.Second

// step is one Observe and what it must return.
type step struct {
	at              int // seconds after the start of the phase
	canary, control []float64
	want            Verdict
	breachFor       time.Duration
	reason          string // a substring of the reason, if set
}

// scenario drives one tracker through steps, then calls Final one interval
// after the last step.
type scenario struct {
	name        string
	check       Check
	steps       []step
	final       Verdict
	finalReason string // a substring of Final's reason, if set
}

func (sc scenario) run(t *testing.T) {
	t.Helper()
	tr := NewTracker(sc.check, t0)
	end := 0
	for i, st := range sc.steps {
		ev := tr.Observe(at(st.at), st.canary, st.control)
		if ev.Verdict != st.want || ev.BreachFor != st.breachFor || !strings.Contains(ev.Reason, st.reason) || !ev.At.Equal(at(st.at)) {
			t.Errorf("step %d (t=%ds, canary %v, control %v): got %v, breach for %v, %q; want %v, breach for %v, reason containing %q",
				i, st.at, st.canary, st.control, ev.Verdict, ev.BreachFor, ev.Reason, st.want, st.breachFor, st.reason)
		}
		if tr.Failed() != (ev.Verdict == Fail) {
			t.Errorf("step %d: Failed() = %v with verdict %v", i, tr.Failed(), ev.Verdict)
		}
		end = st.at + 2
	}
	fin := tr.Final(at(end))
	if fin.Verdict != sc.final || !strings.Contains(fin.Reason, sc.finalReason) {
		t.Errorf("Final: got %v, %q; want %v, reason containing %q", fin.Verdict, fin.Reason, sc.final, sc.finalReason)
	}
	if tr.Failed() != (fin.Verdict == Fail) {
		t.Errorf("after Final: Failed() = %v with verdict %v", tr.Failed(), fin.Verdict)
	}
}

func runScenarios(t *testing.T, scs []scenario) {
	for _, sc := range scs {
		t.Run(sc.name, sc.run)
	}
}

func v(xs ...float64) []float64 { return xs }

func relative(ratio, slack float64) Predicate {
	return Predicate{Kind: Relative, MaxRatio: ratio, Slack: slack}
}

func absolute(limit float64) Predicate { return Predicate{Kind: Absolute, Limit: limit} }

func mannWhitney(alpha float64) Predicate { return Predicate{Kind: MannWhitney, Alpha: alpha} }

// TestPredicates evaluates each predicate once, in both directions, with
// Breach 0 so that a failing evaluation fails the check.
func TestPredicates(t *testing.T) {
	type tc struct {
		name            string
		pred            Predicate
		worse           Direction
		canaryAgg       Aggregation
		controlAgg      Aggregation
		canary, control []float64
		want            Verdict
		reason          string
	}
	tests := []tc{
		// HigherIsWorse: canary <= control × 1.25 + 5 = 130.
		{name: "relative higher: below", pred: relative(1.25, 5), canary: v(50), control: v(100), want: Pass},
		{name: "relative higher: on the bound", pred: relative(1.25, 5), canary: v(130), control: v(100), want: Pass, reason: "canary 130 <= control 100 × 1.25 + 5"},
		{name: "relative higher: above", pred: relative(1.25, 5), canary: v(130.1), control: v(100), want: Fail, reason: "canary 130.1 > control 100 × 1.25 + 5"},
		{name: "relative higher: better canary", pred: relative(1.25, 5), canary: v(0), control: v(100), want: Pass},
		// LowerIsWorse: canary >= control / 1.25 - 5 = 75.
		{name: "relative lower: above", pred: relative(1.25, 5), worse: LowerIsWorse, canary: v(200), control: v(100), want: Pass},
		{name: "relative lower: on the bound", pred: relative(1.25, 5), worse: LowerIsWorse, canary: v(75), control: v(100), want: Pass, reason: "canary 75 >= control 100 / 1.25 - 5"},
		{name: "relative lower: below", pred: relative(1.25, 5), worse: LowerIsWorse, canary: v(74.9), control: v(100), want: Fail, reason: "canary 74.9 < control 100 / 1.25 - 5"},
		{name: "relative lower: ratio only", pred: relative(2, 0), worse: LowerIsWorse, canary: v(49), control: v(100), want: Fail, reason: "canary 49 < control 100 / 2"},
		{name: "relative lower: ratio only, on the bound", pred: relative(2, 0), worse: LowerIsWorse, canary: v(50), control: v(100), want: Pass},
		// Slack keeps a zero control from failing every nonzero canary.
		{name: "relative zero control without slack", pred: relative(1.5, 0), canary: v(0.001), control: v(0), want: Fail},
		{name: "relative zero control with slack", pred: relative(1.5, 0.01), canary: v(0.001), control: v(0), want: Pass},
		{name: "relative equal zero", pred: relative(1.5, 0), canary: v(0), control: v(0), want: Pass},
		{name: "relative aggregates each side", pred: relative(1, 0), canaryAgg: Max, controlAgg: Median, canary: v(1, 1, 10), control: v(5, 6, 100), want: Fail, reason: "canary 10 > control 6"},
		{name: "relative aggregates each side, mean", pred: relative(1, 0), canaryAgg: Mean, controlAgg: Median, canary: v(1, 1, 10), control: v(5, 6, 100), want: Pass, reason: "canary 4 <= control 6"},

		{name: "absolute higher: below", pred: absolute(0.05), canary: v(0.01, 0.02), want: Pass},
		{name: "absolute higher: on the limit", pred: absolute(0.05), canary: v(0.05), want: Pass, reason: "canary 0.05 <= 0.05"},
		{name: "absolute higher: above", pred: absolute(0.05), canary: v(0.0501), want: Fail, reason: "canary 0.0501 > 0.05"},
		{name: "absolute higher: control ignored", pred: absolute(0.05), canary: v(0.01), control: v(100), want: Pass},
		{name: "absolute lower: above", pred: absolute(100), worse: LowerIsWorse, canary: v(150), want: Pass},
		{name: "absolute lower: on the limit", pred: absolute(100), worse: LowerIsWorse, canary: v(100), want: Pass, reason: "canary 100 >= 100"},
		{name: "absolute lower: below", pred: absolute(100), worse: LowerIsWorse, canary: v(99), want: Fail, reason: "canary 99 < 100"},
		{name: "absolute ignores non-finite values", pred: absolute(10), canary: v(nan, 5, inf), want: Pass, reason: "canary 5 <= 10"},

		// 5 against 5, fully separated: one-sided p = 1/C(10,5) = 1/252.
		{name: "mann-whitney higher: canary higher", pred: mannWhitney(0.05), canary: v(10, 11, 12, 13, 14), control: v(1, 2, 3, 4, 5), want: Fail, reason: "canary higher than control"},
		{name: "mann-whitney higher: canary lower", pred: mannWhitney(0.05), canary: v(1, 2, 3, 4, 5), control: v(10, 11, 12, 13, 14), want: Pass, reason: "canary not higher"},
		{name: "mann-whitney lower: canary lower", pred: mannWhitney(0.05), worse: LowerIsWorse, canary: v(1, 2, 3, 4, 5), control: v(10, 11, 12, 13, 14), want: Fail, reason: "canary lower than control"},
		{name: "mann-whitney lower: canary higher", pred: mannWhitney(0.05), worse: LowerIsWorse, canary: v(10, 11, 12, 13, 14), control: v(1, 2, 3, 4, 5), want: Pass, reason: "canary not lower"},
		{name: "mann-whitney same distribution", pred: mannWhitney(0.05), canary: v(1, 3, 5, 7, 9), control: v(2, 4, 6, 8, 10), want: Pass},
		{name: "mann-whitney same distribution, lower", pred: mannWhitney(0.05), worse: LowerIsWorse, canary: v(2, 4, 6, 8, 10), control: v(1, 3, 5, 7, 9), want: Pass},
		{name: "mann-whitney ties", pred: mannWhitney(0.05), canary: v(1, 1, 2, 2, 3, 3), control: v(1, 2, 3, 1, 2, 3), want: Pass},
		{name: "mann-whitney all equal", pred: mannWhitney(0.05), canary: v(5, 5, 5, 5), control: v(5, 5, 5), want: Pass, reason: "all 4 canary, 3 control samples are equal"},
		{name: "mann-whitney all equal, lower", pred: mannWhitney(0.05), worse: LowerIsWorse, canary: v(5, 5, 5, 5), control: v(5, 5, 5), want: Pass},
		// 3 against 3 fully separated: p = 1/20 = 0.05, not < 0.05.
		{name: "mann-whitney 3 against 3 cannot reach 0.05", pred: mannWhitney(0.05), canary: v(10, 11, 12), control: v(1, 2, 3), want: Pass, reason: "p 0.05 >= 0.05"},
		{name: "mann-whitney 3 against 3 at alpha 0.1", pred: mannWhitney(0.1), canary: v(10, 11, 12), control: v(1, 2, 3), want: Fail, reason: "p 0.05 < 0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Check{Predicate: tt.pred, Worse: tt.worse, CanaryAgg: tt.canaryAgg, ControlAgg: tt.controlAgg, NoData: NoDataFail, Window: 10 * s}
			ev := NewTracker(c, t0).Observe(at(2), tt.canary, tt.control)
			if ev.Verdict != tt.want || !strings.Contains(ev.Reason, tt.reason) {
				t.Errorf("%s, %v: got %v %q; want %v, reason containing %q", tt.pred.String(tt.worse), tt.worse, ev.Verdict, ev.Reason, tt.want, tt.reason)
			}
			if gotP := !math.IsNaN(ev.P); gotP != (tt.pred.Kind == MannWhitney) {
				t.Errorf("P = %v for a %v predicate", ev.P, tt.pred.Kind)
			}
			if tt.want == Fail && ev.BreachFor != 0 {
				t.Errorf("BreachFor = %v; want 0 (Breach 0 fails on the first failing evaluation)", ev.BreachFor)
			}
		})
	}
}

func TestEvaluationValues(t *testing.T) {
	c := Check{Predicate: relative(1.1, 0), CanaryAgg: Max, ControlAgg: Sum}
	canary, control := v(1, nan, 3, inf), v(2, 2, ninf)
	canaryCopy, controlCopy := slices.Clone(canary), slices.Clone(control)
	ev := NewTracker(c, t0).Observe(at(2), canary, control)
	if ev.Canary != 3 || ev.Control != 4 || ev.CanaryN != 2 || ev.ControlN != 2 || !math.IsNaN(ev.P) || !ev.At.Equal(at(2)) {
		t.Errorf("got %+v; want canary 3 of 2 values, control 4 of 2 values, P NaN", ev)
	}
	if !slices.EqualFunc(canary, canaryCopy, same) || !slices.EqualFunc(control, controlCopy, same) {
		t.Errorf("Observe modified its input")
	}

	// A side without data is reported as NaN with 0 values.
	ev = NewTracker(Check{Predicate: absolute(10)}, t0).Observe(at(2), v(1), nil)
	if ev.Verdict != Pass || ev.Canary != 1 || !math.IsNaN(ev.Control) || ev.ControlN != 0 {
		t.Errorf("absolute without control: got %+v", ev)
	}
}

func TestReasonFormat(t *testing.T) {
	c := Check{Predicate: relative(1.5, 0.01), Breach: 4 * s}
	tr := NewTracker(c, t0)
	tr.Observe(at(2), v(0.31), v(0.01))
	tr.Observe(at(4), v(0.31), v(0.01))
	ev := tr.Observe(at(6), v(0.31), v(0.01))
	if want := "canary 0.31 > control 0.01 × 1.5 + 0.01 for 4s (limit 4s)"; ev.Verdict != Fail || ev.Reason != want {
		t.Errorf("got %v %q; want fail %q", ev.Verdict, ev.Reason, want)
	}
}

func TestBreaches(t *testing.T) {
	higher := Check{Predicate: absolute(10), Breach: 4 * s}
	bad, good := v(11), v(9)
	runScenarios(t, []scenario{
		{
			name:  "brief breaches shorter than Breach pass",
			check: higher,
			steps: []step{
				{at: 2, canary: bad, want: Breach, breachFor: 0, reason: "canary 11 > 10 for 0s (limit 4s)"},
				{at: 4, canary: bad, want: Breach, breachFor: 2 * s},
				{at: 6, canary: good, want: Pass, reason: "breach of 4s ended"},
				{at: 8, canary: bad, want: Breach, breachFor: 0},
				{at: 10, canary: bad, want: Breach, breachFor: 2 * s},
				{at: 12, canary: good, want: Pass},
				{at: 14, canary: good, want: Pass},
			},
			final: Pass, finalReason: "passed",
		},
		{
			name:  "sustained breach fails exactly when it reaches Breach",
			check: higher,
			steps: []step{
				{at: 2, canary: good, want: Pass},
				{at: 4, canary: bad, want: Breach, breachFor: 0},
				{at: 6, canary: bad, want: Breach, breachFor: 2 * s},
				{at: 8, canary: bad, want: Fail, breachFor: 4 * s, reason: "canary 11 > 10 for 4s (limit 4s)"},
				// Failed stays failed, with the failure's reason.
				{at: 10, canary: good, want: Fail, breachFor: 4 * s, reason: "canary 11 > 10 for 4s"},
				{at: 12, canary: nil, want: Fail, breachFor: 4 * s},
			},
			final: Fail, finalReason: "canary 11 > 10 for 4s (limit 4s)",
		},
		{
			name:  "Breach not a multiple of the interval",
			check: Check{Predicate: absolute(10), Breach: 5 * s},
			steps: []step{
				{at: 2, canary: bad, want: Breach, breachFor: 0},
				{at: 4, canary: bad, want: Breach, breachFor: 2 * s},
				{at: 6, canary: bad, want: Breach, breachFor: 4 * s},
				{at: 8, canary: bad, want: Fail, breachFor: 6 * s},
			},
			final: Fail,
		},
		{
			name:  "Breach 0 fails on the first failing evaluation",
			check: Check{Predicate: absolute(10)},
			steps: []step{
				{at: 2, canary: good, want: Pass},
				{at: 4, canary: bad, want: Fail, breachFor: 0, reason: "for 0s (limit 0s)"},
			},
			final: Fail,
		},
		{
			name:  "breach in progress at the end of the phase fails",
			check: higher,
			steps: []step{
				{at: 2, canary: good, want: Pass},
				{at: 4, canary: bad, want: Breach, breachFor: 0},
			},
			final: Fail, finalReason: "phase over in breach: canary 11 > 10 for 2s (limit 4s)",
		},
		{
			// A change whose failures start late: the breach begins at the
			// last evaluations of the phase and must not count as a pass.
			name:  "late breach at the end of the phase fails",
			check: Check{Predicate: relative(1.5, 0.01), Breach: 4 * s},
			steps: []step{
				{at: 2, canary: v(0), control: v(0), want: Pass},
				{at: 4, canary: v(0), control: v(0), want: Pass},
				{at: 6, canary: v(0), control: v(0), want: Pass},
				{at: 8, canary: v(0), control: v(0), want: Pass},
				{at: 10, canary: v(0), control: v(0), want: Pass},
				{at: 12, canary: v(1), control: v(0), want: Breach, breachFor: 0},
				{at: 14, canary: v(1), control: v(0), want: Breach, breachFor: 2 * s},
			},
			final: Fail, finalReason: "phase over in breach: canary 1 > control 0 × 1.5 + 0.01 for 4s (limit 4s)",
		},
		{
			name:  "a breach that ended before the end of the phase passes",
			check: higher,
			steps: []step{
				{at: 2, canary: bad, want: Breach, breachFor: 0},
				{at: 4, canary: good, want: Pass},
			},
			final: Pass, finalReason: "phase over; passed",
		},
		{
			name:  "lower is worse",
			check: Check{Predicate: absolute(10), Worse: LowerIsWorse, Breach: 2 * s},
			steps: []step{
				{at: 2, canary: v(9), want: Breach, reason: "canary 9 < 10"},
				{at: 4, canary: v(10), want: Pass},
				{at: 6, canary: v(9), want: Breach},
				{at: 8, canary: v(9), want: Fail, breachFor: 2 * s},
			},
			final: Fail,
		},
		{
			name:  "no data with WAIT neither ends a breach",
			check: higher,
			steps: []step{
				{at: 2, canary: bad, want: Breach, breachFor: 0},
				{at: 4, canary: nil, want: Waiting, breachFor: 2 * s, reason: "no canary data; breach of 2s still in progress"},
				{at: 6, canary: v(nan), want: Waiting, breachFor: 4 * s},
				// The breach started at 2s: 6s >= 4s.
				{at: 8, canary: bad, want: Fail, breachFor: 6 * s},
			},
			final: Fail,
		},
		{
			name:  "no data with WAIT never fails the check by itself",
			check: higher,
			steps: []step{
				{at: 2, canary: bad, want: Breach, breachFor: 0},
				{at: 4, canary: nil, want: Waiting, breachFor: 2 * s},
				{at: 6, canary: nil, want: Waiting, breachFor: 4 * s},
				{at: 8, canary: good, want: Pass},
			},
			final: Pass,
		},
		{
			name:  "no data with PASS neither starts nor ends a breach",
			check: Check{Predicate: absolute(10), Breach: 4 * s, NoData: NoDataPass},
			steps: []step{
				{at: 2, canary: nil, want: Pass, breachFor: 0, reason: "no canary data (counts as passing)"},
				{at: 4, canary: bad, want: Breach, breachFor: 0},
				{at: 6, canary: nil, want: Pass, breachFor: 2 * s},
				{at: 8, canary: bad, want: Fail, breachFor: 4 * s},
			},
			final: Fail,
		},
	})
}

func TestNoData(t *testing.T) {
	rel := func(nd NoData) Check { return Check{Predicate: relative(1.2, 0), NoData: nd, Breach: 10 * s} }
	runScenarios(t, []scenario{
		{
			name:  "FAIL fails at once whatever Breach",
			check: rel(NoDataFail),
			steps: []step{
				{at: 2, canary: v(1), control: v(1), want: Pass},
				{at: 4, canary: v(1), control: nil, want: Fail, reason: "no control data"},
				{at: 6, canary: v(1), control: v(1), want: Fail, reason: "no control data"},
			},
			final: Fail, finalReason: "no control data",
		},
		{
			name:  "FAIL with both sides missing",
			check: rel(NoDataFail),
			steps: []step{{at: 2, want: Fail, reason: "no canary or control data"}},
			final: Fail,
		},
		{
			name:  "FAIL counts non-finite values as missing",
			check: rel(NoDataFail),
			steps: []step{{at: 2, canary: v(nan, inf, ninf), control: v(1), want: Fail, reason: "no canary data"}},
			final: Fail,
		},
		{
			name:  "FAIL with absolute needs no control",
			check: Check{Predicate: absolute(5), NoData: NoDataFail},
			steps: []step{
				{at: 2, canary: v(1), want: Pass},
				{at: 4, control: v(1), want: Fail, reason: "no canary data"},
			},
			final: Fail,
		},
		{
			name:  "PASS counts missing data as passing",
			check: rel(NoDataPass),
			steps: []step{
				{at: 2, canary: nil, control: v(1), want: Pass, reason: "no canary data (counts as passing)"},
				{at: 4, canary: v(1), control: v(1), want: Pass},
				{at: 6, want: Pass},
			},
			final: Pass,
		},
		{
			name:  "PASS that never had data passes at Final",
			check: rel(NoDataPass),
			steps: []step{{at: 2, want: Pass}, {at: 4, want: Pass}},
			final: Pass, finalReason: "without data",
		},
		{
			name:  "WAIT that gets data and passes",
			check: rel(NoDataWait),
			steps: []step{
				{at: 2, want: Waiting, reason: "no canary or control data"},
				{at: 4, canary: v(1), want: Waiting, reason: "no control data"},
				{at: 6, canary: v(1), control: v(1), want: Pass},
				{at: 8, want: Waiting},
			},
			final: Pass,
		},
		{
			name:  "WAIT that never gets data fails at Final",
			check: rel(NoDataWait),
			steps: []step{
				{at: 2, want: Waiting},
				{at: 4, canary: v(1), want: Waiting},
				{at: 6, control: v(1), want: Waiting},
			},
			final: Fail, finalReason: "never had both canary and control data during the phase",
		},
		{
			name:  "WAIT absolute that never gets canary data fails at Final",
			check: Check{Predicate: absolute(1), NoData: NoDataWait},
			steps: []step{{at: 2, control: v(1), want: Waiting, reason: "no canary data"}},
			final: Fail, finalReason: "no canary data during the phase",
		},
	})
}

func TestFinalWithoutEvaluations(t *testing.T) {
	for nd, want := range map[NoData]Verdict{NoDataWait: Fail, NoDataFail: Fail, NoDataPass: Pass} {
		tr := NewTracker(Check{Predicate: absolute(1), NoData: nd}, t0)
		ev := tr.Final(at(1))
		if ev.Verdict != want || tr.Failed() != (want == Fail) {
			t.Errorf("%v: Final without evaluations = %v %q; want %v", nd, ev.Verdict, ev.Reason, want)
		}
		if want == Fail && ev.Reason != "no evaluation during the phase" {
			t.Errorf("%v: reason %q", nd, ev.Reason)
		}
	}
}

func TestFinalCarriesLatestValues(t *testing.T) {
	tr := NewTracker(Check{Predicate: relative(2, 0)}, t0)
	tr.Observe(at(2), v(1, 3), v(2))
	ev := tr.Final(at(3))
	if ev.Verdict != Pass || ev.Canary != 2 || ev.Control != 2 || ev.CanaryN != 2 || ev.ControlN != 1 || !ev.At.Equal(at(3)) {
		t.Errorf("Final = %+v", ev)
	}
}

func TestInvalidCheckFails(t *testing.T) {
	tr := NewTracker(Check{Predicate: relative(0, 0)}, t0)
	if !tr.Failed() {
		t.Fatal("tracker of an invalid check has not failed")
	}
	ev := tr.Observe(at(2), v(1), v(1))
	if ev.Verdict != Fail || !strings.Contains(ev.Reason, "invalid check: max_ratio") {
		t.Errorf("Observe = %v %q", ev.Verdict, ev.Reason)
	}
	if ev := tr.Final(at(4)); ev.Verdict != Fail {
		t.Errorf("Final = %v", ev.Verdict)
	}
}

// mwP is the one-sided p-value that canary is higher than control, as
// the tracker must compute it.
func mwP(t *testing.T, canary, control []float64) float64 {
	t.Helper()
	r, err := stats.MannWhitneyUTest(control, canary, stats.LocationLess)
	if err != nil {
		t.Fatal(err)
	}
	return r.P
}

func TestMannWhitney(t *testing.T) {
	mw := func(w time.Duration) Check {
		return Check{Predicate: mannWhitney(0.05), Window: w, Breach: 4 * s}
	}
	runScenarios(t, []scenario{
		{
			name:  "too few samples wait, then the window pools",
			check: mw(10 * s),
			steps: []step{
				{at: 2, canary: v(10), control: v(1), want: Waiting, reason: "too few samples for Mann-Whitney: 1 canary, 1 control samples (need 3 a side)"},
				{at: 4, canary: v(11), control: v(2), want: Waiting, reason: "2 canary, 2 control"},
				// 3 against 3: p = 0.05, not < 0.05.
				{at: 6, canary: v(12), control: v(3), want: Pass, reason: "(3 canary, 3 control samples)"},
				// 4 against 4: p = 1/70.
				{at: 8, canary: v(13), control: v(4), want: Breach, breachFor: 0, reason: "p 0.01429 < 0.05: canary higher than control (4 canary, 4 control samples)"},
				{at: 10, canary: v(14), control: v(5), want: Breach, breachFor: 2 * s},
				{at: 12, canary: v(15), control: v(6), want: Fail, breachFor: 4 * s},
			},
			final: Fail,
		},
		{
			name:  "too few samples all phase fails at Final with WAIT",
			check: mw(10 * s),
			steps: []step{
				{at: 2, canary: v(10), control: v(1), want: Waiting},
				{at: 4, canary: v(11), control: v(2), want: Waiting},
			},
			final: Fail, finalReason: "never had enough samples for Mann-Whitney during the phase (last 2 canary, 2 control samples, need 3 a side)",
		},
		{
			name:  "too few samples all phase passes at Final with PASS",
			check: Check{Predicate: mannWhitney(0.05), Window: 10 * s, NoData: NoDataPass},
			steps: []step{
				{at: 2, canary: v(10), control: v(1), want: Waiting},
			},
			final: Pass,
		},
		{
			name:  "too few samples is not no data for FAIL",
			check: Check{Predicate: mannWhitney(0.05), Window: 10 * s, NoData: NoDataFail},
			steps: []step{
				{at: 2, canary: v(10), control: v(1), want: Waiting},
				{at: 4, canary: v(10), control: nil, want: Waiting},
			},
			final: Fail,
		},
		{
			name:  "no data is judged on the window",
			check: Check{Predicate: mannWhitney(0.05), Window: 4 * s, NoData: NoDataFail},
			steps: []step{
				{at: 2, canary: v(1, 2, 3), control: v(1, 2, 3), want: Pass},
				// No control now, but the window still has 3.
				{at: 4, canary: v(1, 2, 3), control: nil, want: Pass, reason: "6 canary, 3 control"},
				// The evaluation at 2s has left the window.
				{at: 6, canary: v(1, 2, 3), control: nil, want: Fail, reason: "no control data in the last 4s"},
			},
			final: Fail,
		},
		{
			name:  "a window too short to gather enough samples keeps waiting",
			check: mw(4 * s),
			steps: []step{
				{at: 0, canary: v(10), control: v(1), want: Waiting},
				{at: 2, canary: v(11), control: v(2), want: Waiting, reason: "2 canary, 2 control"},
				{at: 4, canary: v(12), control: v(3), want: Waiting, reason: "2 canary, 2 control"},
				{at: 6, canary: v(13), control: v(4), want: Waiting, reason: "2 canary, 2 control"},
			},
			final: Fail,
		},
		{
			name:  "window 0 tests the current evaluation only",
			check: Check{Predicate: mannWhitney(0.1), Window: 0},
			steps: []step{
				{at: 2, canary: v(10, 11), control: v(1, 2), want: Waiting, reason: "2 canary, 2 control"},
				{at: 4, canary: v(10, 11, 12), control: v(1, 2, 3), want: Fail, reason: "3 canary, 3 control"},
			},
			final: Fail,
		},
	})
}

// TestMannWhitneyWindowPruning checks which evaluations the test pools by
// comparing the p-values with the test run directly on the expected pools.
func TestMannWhitneyWindowPruning(t *testing.T) {
	tr := NewTracker(Check{Predicate: mannWhitney(0.1), Window: 6 * s, Breach: time.Hour}, t0)
	bad, good, ctl := v(10, 11, 12), v(1, 2, 3.5), v(1.5, 2.5, 3)
	cat := func(xss ...[]float64) []float64 { return slices.Concat(xss...) }

	steps := []struct {
		at           int
		canary       []float64
		poolC, poolK []float64
		want         Verdict
		canaryAgg    float64
	}{
		{0, bad, bad, ctl, Breach, 11},
		{2, good, cat(bad, good), cat(ctl, ctl), Pass, 2.1666666666666665},
		{4, good, cat(bad, good, good), cat(ctl, ctl, ctl), Pass, 2.1666666666666665},
		// 6 - 0 >= 6: the bad samples at 0s have left the window.
		{6, good, cat(good, good, good), cat(ctl, ctl, ctl), Pass, 2.1666666666666665},
		{8, bad, cat(good, good, bad), cat(ctl, ctl, ctl), Pass, 11},
	}
	for _, st := range steps {
		ev := tr.Observe(at(st.at), st.canary, ctl)
		want := mwP(t, st.poolC, st.poolK)
		if !approx(ev.P, want) {
			t.Errorf("t=%ds: P = %v; want %v (the test on %v vs %v)", st.at, ev.P, want, st.poolC, st.poolK)
		}
		if ev.Verdict != st.want {
			t.Errorf("t=%ds: verdict %v (p %v); want %v", st.at, ev.Verdict, ev.P, st.want)
		}
		// Reported values are those of the current evaluation.
		if !approx(ev.Canary, st.canaryAgg) || ev.CanaryN != 3 || ev.ControlN != 3 {
			t.Errorf("t=%ds: canary %v of %d, control of %d; want the current evaluation's %v of 3, 3",
				st.at, ev.Canary, ev.CanaryN, ev.ControlN, st.canaryAgg)
		}
	}
	if len(tr.window) != 3 {
		t.Errorf("window holds %d evaluations; want 3", len(tr.window))
	}
}

// TestMannWhitneyExactWithTies checks the p-value against an exhaustive
// permutation test on a small sample with ties, in both directions.
func TestMannWhitneyExactWithTies(t *testing.T) {
	canary, control := v(2, 1, 3, 3), v(0, 2, 2, 0)
	// Exhaustive: P(U >= observed U) over the C(8,4) = 70 ways to split
	// the pooled values, U counting ties as 1/2.
	u := func(a, b []float64) float64 {
		n := 0.0
		for _, x := range a {
			for _, y := range b {
				switch {
				case x > y:
					n++
				case x == y:
					n += 0.5
				}
			}
		}
		return n
	}
	all := slices.Concat(canary, control)
	obs, ge, total := u(canary, control), 0, 0
	for m := range 1 << len(all) {
		var a, b []float64
		for i, x := range all {
			if m>>i&1 == 1 {
				a = append(a, x)
			} else {
				b = append(b, x)
			}
		}
		if len(a) != len(canary) {
			continue
		}
		total++
		if u(a, b) >= obs {
			ge++
		}
	}
	want := float64(ge) / float64(total) // 6/70

	higher := NewTracker(Check{Predicate: mannWhitney(0.05)}, t0).Observe(at(2), canary, control)
	// Mirrored: negated values with LowerIsWorse.
	neg := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = -x
		}
		return out
	}
	lower := NewTracker(Check{Predicate: mannWhitney(0.05), Worse: LowerIsWorse}, t0).Observe(at(2), neg(canary), neg(control))
	if !approx(higher.P, want) || !approx(lower.P, want) {
		t.Errorf("P = %v (higher is worse), %v (lower is worse, negated); want the exact %v", higher.P, lower.P, want)
	}
}

func TestMannWhitneyLargeSamples(t *testing.T) {
	// More than MannWhitneyExactLimit values a side: the normal
	// approximation.
	var canary, control, same []float64
	for i := range 60 {
		canary = append(canary, float64(i)+20)
		control = append(control, float64(i))
		same = append(same, float64(i)+0.5)
	}
	ev := NewTracker(Check{Predicate: mannWhitney(0.05)}, t0).Observe(at(2), canary, control)
	if ev.Verdict != Fail || !(ev.P < 0.05) {
		t.Errorf("shifted by 20: %v p=%v", ev.Verdict, ev.P)
	}
	ev = NewTracker(Check{Predicate: mannWhitney(0.05)}, t0).Observe(at(2), same, control)
	if ev.Verdict != Pass || !(ev.P > 0.05) {
		t.Errorf("shifted by 0.5: %v p=%v", ev.Verdict, ev.P)
	}
	equal := make([]float64, 60)
	ev = NewTracker(Check{Predicate: mannWhitney(0.05)}, t0).Observe(at(2), equal, equal)
	if ev.Verdict != Pass || ev.P != 1 {
		t.Errorf("all equal: %v p=%v", ev.Verdict, ev.P)
	}
}
