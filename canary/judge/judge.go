package judge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aclements/go-moremath/stats"
)

// Aggregation combines the per-host values of one side into one number.
// The zero value is Mean, the schema's default.
type Aggregation int

// Aggregations.
const (
	Mean Aggregation = iota
	Median
	P90
	P99
	Sum
	Max
)

var aggregationNames = [...]string{Mean: "mean", Median: "median", P90: "p90", P99: "p99", Sum: "sum", Max: "max"}

func (a Aggregation) String() string {
	if a < 0 || int(a) >= len(aggregationNames) {
		return "Aggregation(" + strconv.Itoa(int(a)) + ")"
	}
	return aggregationNames[a]
}

// Direction says which way a metric gets worse. The zero value is
// HigherIsWorse, the schema's default.
type Direction int

// Directions.
const (
	HigherIsWorse Direction = iota
	LowerIsWorse
)

func (d Direction) String() string {
	switch d {
	case HigherIsWorse:
		return "higher is worse"
	case LowerIsWorse:
		return "lower is worse"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// NoData is what a check does with an evaluation that lacks data on a side
// its predicate needs. The zero value is NoDataWait, the schema's default.
type NoData int

// NoData policies.
const (
	// NoDataWait keeps waiting; a check that could never judge by the
	// end of the phase fails then.
	NoDataWait NoData = iota
	// NoDataFail fails the check at once.
	NoDataFail
	// NoDataPass counts the evaluation as passing.
	NoDataPass
)

func (n NoData) String() string {
	switch n {
	case NoDataWait:
		return "wait"
	case NoDataFail:
		return "fail"
	case NoDataPass:
		return "pass"
	}
	return "NoData(" + strconv.Itoa(int(n)) + ")"
}

// PredicateKind is the kind of a Predicate.
type PredicateKind int

// Predicate kinds.
const (
	// Relative compares the canary value with the control value:
	// canary <= control × MaxRatio + Slack (HigherIsWorse) or
	// canary >= control / MaxRatio − Slack (LowerIsWorse).
	Relative PredicateKind = iota
	// Absolute compares the canary value with Limit: canary <= Limit
	// (HigherIsWorse) or canary >= Limit (LowerIsWorse).
	Absolute
	// MannWhitney fails when a one-sided Mann-Whitney U test finds the
	// canary samples worse than the control samples with p < Alpha.
	MannWhitney
)

func (k PredicateKind) String() string {
	switch k {
	case Relative:
		return "relative"
	case Absolute:
		return "absolute"
	case MannWhitney:
		return "mann-whitney"
	}
	return "PredicateKind(" + strconv.Itoa(int(k)) + ")"
}

// Predicate says when a canary is healthy. Kind selects which of the other
// fields are used: MaxRatio and Slack for Relative, Limit for Absolute,
// Alpha for MannWhitney.
type Predicate struct {
	Kind     PredicateKind
	MaxRatio float64
	Slack    float64
	Limit    float64
	Alpha    float64
}

// String returns the condition under which p passes, for a metric that
// gets worse in direction worse, e.g. "canary <= control × 1.1 + 0.001",
// "canary >= 0.05" or "Mann-Whitney p >= 0.05 (canary not higher)".
func (p Predicate) String(worse Direction) string {
	switch p.Kind {
	case Relative:
		return "canary " + cmpGood(worse) + " " + relativeBound("control", p, worse)
	case Absolute:
		return "canary " + cmpGood(worse) + " " + param(p.Limit)
	case MannWhitney:
		return "Mann-Whitney p >= " + param(p.Alpha) + " (canary not " + worseWord(worse) + ")"
	}
	return p.Kind.String() + " predicate"
}

// cmpGood is the comparison a passing canary value satisfies.
func cmpGood(worse Direction) string {
	if worse == LowerIsWorse {
		return ">="
	}
	return "<="
}

// cmpBad is the comparison a failing canary value satisfies.
func cmpBad(worse Direction) string {
	if worse == LowerIsWorse {
		return "<"
	}
	return ">"
}

func worseWord(worse Direction) string {
	if worse == LowerIsWorse {
		return "lower"
	}
	return "higher"
}

// relativeBound renders the bound of a Relative predicate with control
// standing for the control value, e.g. "control 0.01 × 1.5 + 0.01".
func relativeBound(control string, p Predicate, worse Direction) string {
	op, slackOp, slack := " × ", " + ", p.Slack
	if worse == LowerIsWorse {
		op, slackOp = " / ", " - "
	}
	if slack < 0 {
		slack = -slack
		if slackOp == " + " {
			slackOp = " - "
		} else {
			slackOp = " + "
		}
	}
	s := control + op + param(p.MaxRatio)
	if slack != 0 {
		s += slackOp + param(slack)
	}
	return s
}

// relativeLimit is the bound a Relative predicate puts on the canary value
// given the control value.
func relativeLimit(p Predicate, worse Direction, control float64) float64 {
	if worse == LowerIsWorse {
		return control/p.MaxRatio - p.Slack
	}
	return control*p.MaxRatio + p.Slack
}

// passes reports whether canary is on the good side of limit (equality
// passes). A NaN on either side does not pass.
func passes(worse Direction, canary, limit float64) bool {
	if worse == LowerIsWorse {
		return canary >= limit
	}
	return canary <= limit
}

// param formats a parameter of a predicate exactly.
func param(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// num formats a measured value for a reason.
func num(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) }

// MinSamples is the number of samples each side needs in the window before
// the Mann-Whitney test judges.
const MinSamples = 3

// Check is one health check of a phase (stdlib/canary.thrift Check).
type Check struct {
	Name string
	// CanaryAgg and ControlAgg combine the per-host values of each side
	// into the values Relative and Absolute compare.
	CanaryAgg, ControlAgg Aggregation
	Predicate             Predicate
	Worse                 Direction
	// Breach is how long a breach must last before the check fails.
	Breach time.Duration
	NoData NoData
	// Window is the trailing window whose samples the Mann-Whitney test
	// pools.
	Window time.Duration
}

// Validate reports why c cannot be judged, or nil.
func (c Check) Validate() error {
	var errs []error
	for _, a := range []Aggregation{c.CanaryAgg, c.ControlAgg} {
		if a < Mean || a > Max {
			errs = append(errs, fmt.Errorf("unknown aggregation %v", a))
		}
	}
	if c.Worse != HigherIsWorse && c.Worse != LowerIsWorse {
		errs = append(errs, fmt.Errorf("unknown direction %v", c.Worse))
	}
	if c.NoData < NoDataWait || c.NoData > NoDataPass {
		errs = append(errs, fmt.Errorf("unknown no-data policy %v", c.NoData))
	}
	p := c.Predicate
	switch p.Kind {
	case Relative:
		if !(p.MaxRatio > 0) || math.IsInf(p.MaxRatio, 0) {
			errs = append(errs, fmt.Errorf("max_ratio %v: must be positive and finite", p.MaxRatio))
		}
		if !finite(p.Slack) {
			errs = append(errs, fmt.Errorf("slack %v: must be finite", p.Slack))
		}
	case Absolute:
		if !finite(p.Limit) {
			errs = append(errs, fmt.Errorf("limit %v: must be finite", p.Limit))
		}
	case MannWhitney:
		if !(p.Alpha > 0 && p.Alpha < 1) {
			errs = append(errs, fmt.Errorf("alpha %v: must be between 0 and 1", p.Alpha))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown predicate kind %v", p.Kind))
	}
	if c.Breach < 0 {
		errs = append(errs, fmt.Errorf("breach %v: must not be negative", c.Breach))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("window %v: must not be negative", c.Window))
	}
	return errors.Join(errs...)
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// finiteValues returns the finite values of xs, without modifying xs.
func finiteValues(xs []float64) []float64 {
	n := 0
	for _, x := range xs {
		if finite(x) {
			n++
		}
	}
	if n == len(xs) {
		return xs
	}
	out := make([]float64, 0, n)
	for _, x := range xs {
		if finite(x) {
			out = append(out, x)
		}
	}
	return out
}

// Aggregate combines xs with a. Non-finite values (NaN, ±Inf) are ignored;
// it returns NaN and false when no finite value is left, or when a is not
// a known Aggregation. See the package documentation for the quantile
// definition.
func Aggregate(a Aggregation, xs []float64) (float64, bool) {
	xs = finiteValues(xs)
	if len(xs) == 0 {
		return math.NaN(), false
	}
	s := stats.Sample{Xs: xs}
	switch a {
	case Mean:
		return s.Mean(), true
	case Median:
		return s.Quantile(0.5), true
	case P90:
		return s.Quantile(0.9), true
	case P99:
		return s.Quantile(0.99), true
	case Sum:
		return s.Sum(), true
	case Max:
		_, hi := s.Bounds()
		return hi, true
	}
	return math.NaN(), false
}
