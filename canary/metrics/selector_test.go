package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// FuzzParseSelector checks that no selector makes the parser or the
// matching panic, and that every selector accepted names a metric.
func FuzzParseSelector(f *testing.F) {
	for _, tc := range selectorCases {
		f.Add(tc.selector)
	}
	for _, s := range []string{`demo{`, `rate(demo[5m])`, `deriv(demo[$window])`, `demo offset 1m`, `{a="b"}`, `demo{a=~"("}`} {
		f.Add(s)
	}
	name, value := "a", "x"
	m := &dto.Metric{Label: []*dto.LabelPair{{Name: &name, Value: &value}}}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		if sel.Name == "" {
			t.Fatalf("ParseSelector(%q) accepted a selector without a metric name", s)
		}
		sel.matches(m)
		sel.matches(&dto.Metric{})
	})
}
