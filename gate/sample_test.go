package gate

import (
	"fmt"
	"math"
	"testing"
)

// TestSampleWithinMargin: for several percentages and numbers of units, the
// pass rate Sample measures is within the margin it states.
func TestSampleWithinMargin(t *testing.T) {
	for _, p := range []float64{0.1, 1, 10, 33.33, 50, 99} {
		g := mustCompile(t, fmt.Sprintf(`{"salt": "feed/x", "rules": [
		  {"name": "allow", "restraints": [{"condition": {"unit_ids": ["unit-3"]}}], "percent": 100},
		  {"name": "ramp", "restraints": [{"condition": {"attr_in": {"attr": "country", "values": ["US"]}}}], "percent": %v}]}`, p), Options{})
		for _, n := range []int{1000, 10000, 100000} {
			rep := Sample(g, n, "unit-", []Attr{StringAttr("country", "US")})
			r := rep.Rules[1]
			if rep.Rules[0].Decided != 1 || r.Decided != n-1 || rep.NoRule != 0 || rep.Failed != 0 {
				t.Fatalf("%v %% of %d: %+v", p, n, rep)
			}
			want := 300 * math.Sqrt(p/100*(1-p/100)/float64(n-1))
			if math.Abs(r.Margin()-want) > 1e-9 {
				t.Errorf("margin %v, want %v", r.Margin(), want)
			}
			if math.Abs(r.Rate()-p) > r.Margin() {
				t.Errorf("%v %% of %d units: rate %.3f %%, outside ± %.3f", p, n, r.Rate(), r.Margin())
			}
		}
	}
	g := mustCompile(t, `{"salt": "feed/x", "rules": [{"name": "r", "restraints": [{"condition": {"attr_is": {"attr": "e"}}}], "percent": 50}]}`, Options{})
	rep := Sample(g, 5, "u", []Attr{StringAttr("e", "x")})
	if rep.Failed != 5 || rep.Err == nil || rep.Err.Error() != `rule "r": attribute "e": got string "x", want a bool` {
		t.Errorf("failed closed: %+v", rep)
	}
}
