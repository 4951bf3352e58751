package gate

import (
	"math"
	"strconv"
)

// SampleReport is how a gate decided for synthetic units.
type SampleReport struct {
	Units  int          // units checked
	Passed int          // units that passed
	Rules  []RuleSample // per rule, in order
	NoRule int          // units for which no rule held
	// Failed counts the checks that failed closed; Err is the first
	// one's reason.
	Failed int
	Err    error
}

// RuleSample is how one rule decided.
type RuleSample struct {
	RuleInfo
	Decided int // units it decided for
	Passed  int // of those, the units that passed
}

// Rate returns the share of the units the rule decided for that passed, in
// percent (0 if it decided for none).
func (r RuleSample) Rate() float64 {
	if r.Decided == 0 {
		return 0
	}
	return 100 * float64(r.Passed) / float64(r.Decided)
}

// Margin returns how far, in percentage points, Rate may stray from the
// rule's percentage by chance alone over Decided units: three standard
// deviations of the binomial proportion (99.7 % of samples fall within).
// It is 0 for a rule that passes everyone or no one.
func (r RuleSample) Margin() float64 {
	if r.Decided == 0 {
		return 0
	}
	q := r.Percent / 100
	return 300 * math.Sqrt(q*(1-q)/float64(r.Decided))
}

// Sample checks n synthetic units, with IDs prefix0 to prefix(n-1) and the
// attributes attrs, and counts the decisions per rule.
func Sample(g *Gate, n int, prefix string, attrs []Attr) SampleReport {
	rep := SampleReport{Units: n, Rules: make([]RuleSample, len(g.rules))}
	for i, info := range g.Rules() {
		rep.Rules[i].RuleInfo = info
	}
	buf := []byte(prefix)
	for i := range n {
		buf = strconv.AppendInt(buf[:len(prefix)], int64(i), 10)
		d := g.Check(Unit{ID: string(buf), Attrs: attrs})
		switch {
		case d.Err != nil:
			rep.Failed++
			if rep.Err == nil {
				rep.Err = d.Err
			}
		case d.Rule < 0:
			rep.NoRule++
		default:
			rep.Rules[d.Rule].Decided++
			if d.Pass {
				rep.Rules[d.Rule].Passed++
				rep.Passed++
			}
		}
	}
	return rep
}
