package metrics

import (
	"errors"
	"fmt"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promql parses selectors as Prometheus parses queries, with its default
// options.
var promql = parser.NewParser(parser.Options{})

// Selector is a PromQL metric selector naming one metric, such as
// http_requests_failed_total{endpoint="checkout"}: the scrape provider's
// Query.Metric and Query.DivideBy.
type Selector struct {
	// Name is the metric family the selector names: the value of its
	// __name__="..." matcher, which name{...} is short for.
	Name     string
	matchers []*labels.Matcher
}

// ParseSelector parses a PromQL metric selector (name, name{matchers} or
// {__name__="name", matchers}) with Prometheus's own parser, which checks
// it as it checks a query. The selector must name its metric with an
// equality matcher on __name__, as the scrape provider reads one metric
// family, whose type says how its samples become a value; offset and @
// modifiers, range selectors and other PromQL are refused.
func ParseSelector(s string) (*Selector, error) {
	if s == "" {
		return nil, errors.New("no metric selector")
	}
	hint := ""
	if strings.HasPrefix(s, "deriv(") {
		hint = " (for a gauge's growth rate, set gauge = DERIV)"
	}
	expr, err := promql.ParseExpr(s)
	if err != nil {
		return nil, fmt.Errorf("metric selector %q: %w%s", s, err, hint)
	}
	vs, ok := expr.(*parser.VectorSelector)
	if !ok {
		what := "a PromQL expression"
		switch e := expr.(type) {
		case *parser.Call:
			what = fmt.Sprintf("a call of %s()", e.Func.Name)
		case *parser.MatrixSelector:
			what = "a range selector"
		}
		return nil, fmt.Errorf("metric selector %q: got %s, want name{label=\"value\", ...}%s", s, what, hint)
	}
	if vs.OriginalOffset != 0 || vs.OriginalOffsetExpr != nil || vs.Timestamp != nil || vs.StartOrEnd != 0 {
		return nil, fmt.Errorf("metric selector %q: got an offset or @ modifier, want name{label=\"value\", ...}", s)
	}
	sel := &Selector{matchers: vs.LabelMatchers}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			sel.Name = m.Value
		}
	}
	if sel.Name == "" {
		return nil, fmt.Errorf("metric selector %q: no metric name, want name{...} or {__name__=\"name\", ...}", s)
	}
	return sel, nil
}

// matches reports whether a series of the family sel.Name, with the labels
// of m, is selected: whether every matcher matches the value of its label,
// a missing label having the value "", as in PromQL.
func (sel *Selector) matches(m *dto.Metric) bool {
	for _, mt := range sel.matchers {
		v := sel.Name
		if mt.Name != model.MetricNameLabel {
			v = ""
			for _, l := range m.GetLabel() {
				if l.GetName() == mt.Name {
					v = l.GetValue()
					break
				}
			}
		}
		if !mt.Matches(v) {
			return false
		}
	}
	return true
}
