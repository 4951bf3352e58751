package judge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aclements/go-moremath/stats"
)

// Verdict is the state of a check after an evaluation.
type Verdict int

// Verdicts.
const (
	// Pass: the predicate holds (or, with NoDataPass, there was no data).
	Pass Verdict = iota
	// Breach: the predicate fails, but not yet for Breach long.
	Breach
	// Fail: the check failed; it stays failed.
	Fail
	// Waiting: the evaluation could not judge (no data with NoDataWait,
	// too few Mann-Whitney samples); its String is "no data".
	Waiting
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Breach:
		return "breach"
	case Fail:
		return "fail"
	case Waiting:
		return "no data"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// MarshalText encodes v as its String.
func (v Verdict) MarshalText() ([]byte, error) {
	if v < Pass || v > Waiting {
		return nil, fmt.Errorf("unknown verdict %d", int(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText decodes what MarshalText encodes.
func (v *Verdict) UnmarshalText(b []byte) error {
	for w := Pass; w <= Waiting; w++ {
		if string(b) == w.String() {
			*v = w
			return nil
		}
	}
	return fmt.Errorf("verdict: got %q, want pass, breach, fail or no data", b)
}

// Evaluation is the outcome of one Observe (or of Final).
type Evaluation struct {
	At time.Time
	// Canary and Control are the aggregated values of this evaluation's
	// finite values (NaN when that side had none).
	Canary, Control float64
	// CanaryN and ControlN are how many finite values each side had.
	CanaryN, ControlN int
	// P is the Mann-Whitney p-value (NaN for other predicates and when
	// the test did not run).
	P       float64
	Verdict Verdict
	// BreachFor is how long the current breach has lasted (0 when no
	// breach is in progress).
	BreachFor time.Duration
	// Reason explains the verdict, e.g. "canary 0.31 > control 0.01 ×
	// 1.5 + 0.01 for 4s (limit 4s)" or "no canary data".
	Reason string
}

// Tracker judges one check during one phase. It is not safe for concurrent
// use.
type Tracker struct {
	c     Check
	start time.Time

	// invalid is why c cannot be judged; the tracker has failed.
	invalid error

	failed  bool
	failure Evaluation // the evaluation that failed the check

	judged bool // some evaluation had the data its predicate needs

	breaching   bool
	breachStart time.Time
	// breachWhy is the failing predicate of the latest evaluation of the
	// breach in progress ("canary 11 > 10").
	breachWhy string

	last     Evaluation // the latest evaluation, for Final
	observed bool

	// window holds, for MannWhitney, the finite values of the evaluations
	// in the trailing window, oldest first.
	window []sample

	// lastPooled is the pooled sample counts of the latest Mann-Whitney
	// evaluation, for Final's reason.
	lastPooledCanary, lastPooledControl int
}

type sample struct {
	at              time.Time
	canary, control []float64
}

// NewTracker returns a tracker of check c for a phase that starts at
// start. If c is invalid (Check.Validate), the tracker has already failed.
func NewTracker(c Check, start time.Time) *Tracker {
	t := &Tracker{c: c, start: start}
	if err := c.Validate(); err != nil {
		t.invalid = err
		t.failed = true
		t.failure = Evaluation{
			At: start, Canary: math.NaN(), Control: math.NaN(), P: math.NaN(),
			Verdict: Fail, Reason: "invalid check: " + err.Error(),
		}
	}
	t.last = Evaluation{At: start, Canary: math.NaN(), Control: math.NaN(), P: math.NaN(), Verdict: Waiting}
	return t
}

// Failed reports whether the check has failed.
func (t *Tracker) Failed() bool { return t.failed }

// Breaching reports whether a breach is in progress: the latest
// evaluation that judged failed its predicate, and the check has not
// failed (yet).
func (t *Tracker) Breaching() bool { return t.breaching && !t.failed }

// Observe evaluates the check at time at with the per-host values of the
// canary and control sides. Non-finite values are ignored; the slices are
// not modified nor retained.
func (t *Tracker) Observe(at time.Time, canary, control []float64) Evaluation {
	canary, control = finiteValues(canary), finiteValues(control)
	ev := Evaluation{At: at, CanaryN: len(canary), ControlN: len(control), P: math.NaN()}
	ev.Canary, _ = Aggregate(t.c.CanaryAgg, canary)
	ev.Control, _ = Aggregate(t.c.ControlAgg, control)
	t.observed = true

	if t.failed {
		ev.Verdict, ev.BreachFor, ev.Reason = Fail, t.failure.BreachFor, t.failure.Reason
		t.last = ev
		return ev
	}

	// ok reports whether the predicate passes; judge fills in
	// the evaluation's reason and P.
	var ok bool
	switch t.c.Predicate.Kind {
	case Absolute:
		if len(canary) == 0 {
			return t.noData(ev, "no canary data")
		}
		ok = passes(t.c.Worse, ev.Canary, t.c.Predicate.Limit)
		ev.Reason = "canary " + num(ev.Canary) + " " + cmp(ok, t.c.Worse) + " " + param(t.c.Predicate.Limit)
	case Relative:
		if missing := missingSides(len(canary), len(control)); missing != "" {
			return t.noData(ev, missing)
		}
		ok = passes(t.c.Worse, ev.Canary, relativeLimit(t.c.Predicate, t.c.Worse, ev.Control))
		ev.Reason = "canary " + num(ev.Canary) + " " + cmp(ok, t.c.Worse) + " " +
			relativeBound("control "+num(ev.Control), t.c.Predicate, t.c.Worse)
	case MannWhitney:
		pooledCanary, pooledControl := t.pool(at, canary, control)
		n1, n2 := len(pooledCanary), len(pooledControl)
		t.lastPooledCanary, t.lastPooledControl = n1, n2
		if missing := missingSides(n1, n2); missing != "" {
			if t.c.Window > 0 {
				missing += " in the last " + t.c.Window.String()
			}
			return t.noData(ev, missing)
		}
		if n1 < MinSamples || n2 < MinSamples {
			ev.Verdict = Waiting
			ev.BreachFor = t.breachFor(at)
			ev.Reason = fmt.Sprintf("too few samples for Mann-Whitney: %s (need %d a side)", counts(n1, n2), MinSamples)
			t.last = ev
			return ev
		}
		var msg string
		ev.P, msg = t.mannWhitney(pooledCanary, pooledControl)
		if math.IsNaN(ev.P) {
			// The test could not run: no judgment.
			ev.Verdict, ev.BreachFor, ev.Reason = Waiting, t.breachFor(at), msg
			t.last = ev
			return ev
		}
		ok = ev.P >= t.c.Predicate.Alpha
		ev.Reason = msg
	}
	t.judged = true

	if ok {
		if t.breaching {
			ev.Reason += " (breach of " + at.Sub(t.breachStart).String() + " ended)"
		}
		t.breaching = false
		ev.Verdict = Pass
		t.last = ev
		return ev
	}
	if !t.breaching {
		t.breaching, t.breachStart = true, at
	}
	t.breachWhy = ev.Reason
	ev.BreachFor = t.breachFor(at)
	ev.Reason += " for " + ev.BreachFor.String() + " (limit " + t.c.Breach.String() + ")"
	if ev.BreachFor >= t.c.Breach {
		return t.fail(ev)
	}
	ev.Verdict = Breach
	t.last = ev
	return ev
}

// Final judges the check at the end of the phase: Fail if it has failed,
// if a breach is in progress (a phase must not end in breach, however
// short the breach), or if it never had the data to judge and its policy
// is not NoDataPass; Pass otherwise. The evaluation carries the latest
// observed values.
func (t *Tracker) Final(at time.Time) Evaluation {
	ev := t.last
	ev.At = at
	if t.failed {
		ev.Verdict, ev.BreachFor, ev.Reason = Fail, t.failure.BreachFor, t.failure.Reason
		return ev
	}
	ev.BreachFor = t.breachFor(at)
	if t.breaching {
		ev.Reason = "phase over in breach: " + t.breachWhy + " for " + ev.BreachFor.String() + " (limit " + t.c.Breach.String() + ")"
		return t.fail(ev)
	}
	if !t.judged && t.c.NoData != NoDataPass {
		switch {
		case !t.observed:
			ev.Reason = "no evaluation during the phase"
		case t.c.Predicate.Kind == MannWhitney && t.lastPooledCanary > 0 && t.lastPooledControl > 0:
			ev.Reason = fmt.Sprintf("never had enough samples for Mann-Whitney during the phase (last %s, need %d a side)",
				counts(t.lastPooledCanary, t.lastPooledControl), MinSamples)
		case t.c.Predicate.Kind == Absolute:
			ev.Reason = "no canary data during the phase"
		default:
			ev.Reason = "never had both canary and control data during the phase"
		}
		return t.fail(ev)
	}
	ev.Verdict = Pass
	switch {
	case !t.judged:
		ev.Reason = "phase over without data (no-data policy pass)"
	default:
		ev.Reason = "phase over; passed"
	}
	t.last = ev
	return ev
}

// noData handles an evaluation that lacks data on a needed side.
func (t *Tracker) noData(ev Evaluation, reason string) Evaluation {
	ev.Reason = reason
	switch t.c.NoData {
	case NoDataFail:
		return t.fail(ev)
	case NoDataPass:
		ev.Verdict = Pass
		ev.Reason += " (counts as passing)"
	default:
		ev.Verdict = Waiting
	}
	// Neither starts nor ends a breach.
	if ev.BreachFor = t.breachFor(ev.At); ev.BreachFor > 0 {
		ev.Reason += "; breach of " + ev.BreachFor.String() + " still in progress"
	}
	t.last = ev
	return ev
}

func (t *Tracker) fail(ev Evaluation) Evaluation {
	ev.Verdict = Fail
	t.failed, t.failure, t.last = true, ev, ev
	return ev
}

func (t *Tracker) breachFor(at time.Time) time.Duration {
	if !t.breaching {
		return 0
	}
	return max(at.Sub(t.breachStart), 0)
}

// pool adds this evaluation's values to the window, drops the evaluations
// that left it, and returns the pooled values of each side.
func (t *Tracker) pool(at time.Time, canary, control []float64) (pooledCanary, pooledControl []float64) {
	t.window = append(t.window, sample{at: at, canary: clone(canary), control: clone(control)})
	keep := t.window[:0]
	for i, s := range t.window {
		if i == len(t.window)-1 || at.Sub(s.at) < t.c.Window {
			keep = append(keep, s)
		}
	}
	clear(t.window[len(keep):])
	t.window = keep
	for _, s := range t.window {
		pooledCanary = append(pooledCanary, s.canary...)
		pooledControl = append(pooledControl, s.control...)
	}
	return pooledCanary, pooledControl
}

func clone(xs []float64) []float64 {
	if len(xs) == 0 {
		return nil
	}
	return append([]float64(nil), xs...)
}

// mannWhitney returns the one-sided p-value that the canary is worse than
// the control, and a reason; p is NaN when the test could not run.
func (t *Tracker) mannWhitney(canary, control []float64) (float64, string) {
	worse := worseWord(t.c.Worse)
	n := counts(len(canary), len(control))
	// Always test "the first sample is lower" (see the package
	// documentation): control lower than canary when higher is worse,
	// canary lower than control when lower is worse.
	x1, x2 := control, canary
	if t.c.Worse == LowerIsWorse {
		x1, x2 = canary, control
	}
	res, err := stats.MannWhitneyUTest(x1, x2, stats.LocationLess)
	switch {
	case errors.Is(err, stats.ErrSamplesEqual):
		return 1, "Mann-Whitney: all " + n + " are equal, no evidence of a difference"
	case err != nil:
		return math.NaN(), "Mann-Whitney: " + err.Error() + " (" + n + ")"
	}
	alpha := t.c.Predicate.Alpha
	if res.P < alpha {
		return res.P, "Mann-Whitney p " + num(res.P) + " < " + param(alpha) + ": canary " + worse + " than control (" + n + ")"
	}
	return res.P, "Mann-Whitney p " + num(res.P) + " >= " + param(alpha) + ": canary not " + worse + " than control (" + n + ")"
}

func counts(canary, control int) string {
	return strconv.Itoa(canary) + " canary, " + strconv.Itoa(control) + " control samples"
}

// missingSides names the sides without data, or "".
func missingSides(canary, control int) string {
	var sides []string
	if canary == 0 {
		sides = append(sides, "canary")
	}
	if control == 0 {
		sides = append(sides, "control")
	}
	if len(sides) == 0 {
		return ""
	}
	return "no " + strings.Join(sides, " or ") + " data"
}

// cmp is the comparison between the canary value and its bound.
func cmp(ok bool, worse Direction) string {
	if ok {
		return cmpGood(worse)
	}
	return cmpBad(worse)
}
