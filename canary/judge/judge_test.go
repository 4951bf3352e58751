package judge

import (
	"math"
	"strings"
	"testing"
	"time"
)

var (
	nan  = math.NaN()
	inf  = math.Inf(1)
	ninf = math.Inf(-1)
)

func TestAggregate(t *testing.T) {
	oneToTen := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5} // unsorted on purpose
	tests := []struct {
		name   string
		agg    Aggregation
		xs     []float64
		want   float64
		wantOK bool
	}{
		{"mean", Mean, []float64{1, 2, 3, 6}, 3, true},
		{"mean single", Mean, []float64{-2.5}, -2.5, true},
		{"mean ignores non-finite", Mean, []float64{1, nan, 3, inf, ninf}, 2, true},
		{"mean empty", Mean, nil, nan, false},
		{"mean all non-finite", Mean, []float64{nan, inf}, nan, false},

		{"median odd", Median, []float64{5, 1, 3}, 3, true},
		{"median even", Median, []float64{4, 1, 3, 2}, 2.5, true},
		{"median two", Median, []float64{1, 2}, 1.5, true},
		{"median single", Median, []float64{7}, 7, true},
		{"median ignores NaN", Median, []float64{nan, 1, 100, 2}, 2, true},
		{"median empty", Median, []float64{}, nan, false},

		// R8: h = 1/3 + q(n + 1/3); P90 of 1..10: h = 9.6333…
		{"p90 of 1..10", P90, oneToTen, 9 + 19.0/30, true},
		// P90 of up to 6 values is the maximum.
		{"p90 of 1..6", P90, []float64{6, 5, 4, 3, 2, 1}, 6, true},
		// P90 of 7 values: h = 1/3 + 0.9·22/3 = 6.9333…
		{"p90 of 1..7", P90, []float64{1, 2, 3, 4, 5, 6, 7}, 6 + 14.0/15, true},
		{"p90 single", P90, []float64{3}, 3, true},
		{"p90 two", P90, []float64{1, 2}, 2, true},
		{"p90 empty", P90, nil, nan, false},
		// P99 of up to 66 values is the maximum.
		{"p99 of 1..10", P99, oneToTen, 10, true},
		{"p99 of 1..66", P99, seq(66), 66, true},
		// P99 of 1..100: h = 1/3 + 0.99·100.333… = 99.6633…
		{"p99 of 1..100", P99, seq(100), 1.0/3 + 0.99*(100+1.0/3), true}, // x[k] = k, so the quantile is h
		{"p99 ignores Inf", P99, []float64{1, 2, inf}, 2, true},
		{"p99 empty", P99, nil, nan, false},

		{"sum", Sum, []float64{1, 2, 3.5}, 6.5, true},
		{"sum ignores non-finite", Sum, []float64{1, ninf, 2, nan}, 3, true},
		{"sum of zeros", Sum, []float64{0, 0}, 0, true},
		{"sum empty", Sum, nil, nan, false},

		{"max", Max, []float64{3, 9, -1}, 9, true},
		{"max negative", Max, []float64{-3, -9}, -3, true},
		{"max ignores +Inf", Max, []float64{3, inf}, 3, true},
		{"max empty", Max, nil, nan, false},

		{"unknown aggregation", Aggregation(42), []float64{1}, nan, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.xs...)
			got, ok := Aggregate(tt.agg, in)
			if ok != tt.wantOK || !approx(got, tt.want) {
				t.Errorf("Aggregate(%v, %v) = %v, %v; want %v, %v", tt.agg, tt.xs, got, ok, tt.want, tt.wantOK)
			}
			for i := range in {
				if !same(in[i], tt.xs[i]) {
					t.Errorf("Aggregate modified its input: %v, was %v", in, tt.xs)
					break
				}
			}
		})
	}
}

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(n - i)
	}
	return xs
}

// approx reports whether a and b are equal up to rounding (NaN equals NaN).
func approx(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestPredicateString(t *testing.T) {
	tests := []struct {
		p     Predicate
		worse Direction
		want  string
	}{
		{Predicate{Kind: Relative, MaxRatio: 1.1, Slack: 0.001}, HigherIsWorse, "canary <= control × 1.1 + 0.001"},
		{Predicate{Kind: Relative, MaxRatio: 1.1, Slack: 0.001}, LowerIsWorse, "canary >= control / 1.1 - 0.001"},
		{Predicate{Kind: Relative, MaxRatio: 2}, HigherIsWorse, "canary <= control × 2"},
		{Predicate{Kind: Relative, MaxRatio: 2}, LowerIsWorse, "canary >= control / 2"},
		{Predicate{Kind: Relative, MaxRatio: 1, Slack: -0.5}, HigherIsWorse, "canary <= control × 1 - 0.5"},
		{Predicate{Kind: Relative, MaxRatio: 1, Slack: -0.5}, LowerIsWorse, "canary >= control / 1 + 0.5"},
		{Predicate{Kind: Absolute, Limit: 0.05}, HigherIsWorse, "canary <= 0.05"},
		{Predicate{Kind: Absolute, Limit: 100}, LowerIsWorse, "canary >= 100"},
		{Predicate{Kind: MannWhitney, Alpha: 0.05}, HigherIsWorse, "Mann-Whitney p >= 0.05 (canary not higher)"},
		{Predicate{Kind: MannWhitney, Alpha: 0.01}, LowerIsWorse, "Mann-Whitney p >= 0.01 (canary not lower)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(tt.worse); got != tt.want {
			t.Errorf("%+v.String(%v) = %q; want %q", tt.p, tt.worse, got, tt.want)
		}
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[Verdict]string{Pass: "pass", Breach: "breach", Fail: "fail", Waiting: "no data"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q; want %q", int(v), got, want)
		}
	}
	for a, want := range map[Aggregation]string{Mean: "mean", Median: "median", P90: "p90", P99: "p99", Sum: "sum", Max: "max", -1: "Aggregation(-1)"} {
		if got := a.String(); got != want {
			t.Errorf("Aggregation(%d).String() = %q; want %q", int(a), got, want)
		}
	}
}

func TestZeroValuesAreSchemaDefaults(t *testing.T) {
	var c Check
	if c.CanaryAgg != Mean || c.ControlAgg != Mean || c.Worse != HigherIsWorse || c.NoData != NoDataWait {
		t.Errorf("zero Check = %+v; want the schema defaults MEAN, HIGHER_IS_WORSE, WAIT", c)
	}
}

func TestValidate(t *testing.T) {
	good := Check{Name: "c", Predicate: Predicate{Kind: Relative, MaxRatio: 1.2}, Breach: time.Second, Window: 10 * time.Second}
	tests := []struct {
		name    string
		edit    func(*Check)
		wantErr string
	}{
		{"valid relative", func(*Check) {}, ""},
		{"valid absolute", func(c *Check) { c.Predicate = Predicate{Kind: Absolute, Limit: -3} }, ""},
		{"valid mann-whitney", func(c *Check) { c.Predicate = Predicate{Kind: MannWhitney, Alpha: 0.05} }, ""},
		{"zero breach and window", func(c *Check) { c.Breach, c.Window = 0, 0 }, ""},
		{"zero max ratio", func(c *Check) { c.Predicate.MaxRatio = 0 }, "max_ratio"},
		{"negative max ratio", func(c *Check) { c.Predicate.MaxRatio = -1 }, "max_ratio"},
		{"NaN max ratio", func(c *Check) { c.Predicate.MaxRatio = nan }, "max_ratio"},
		{"Inf slack", func(c *Check) { c.Predicate.Slack = inf }, "slack"},
		{"NaN limit", func(c *Check) { c.Predicate = Predicate{Kind: Absolute, Limit: nan} }, "limit"},
		{"alpha 0", func(c *Check) { c.Predicate = Predicate{Kind: MannWhitney} }, "alpha"},
		{"alpha 1", func(c *Check) { c.Predicate = Predicate{Kind: MannWhitney, Alpha: 1} }, "alpha"},
		{"unknown kind", func(c *Check) { c.Predicate.Kind = 7 }, "predicate kind"},
		{"unknown aggregation", func(c *Check) { c.ControlAgg = 9 }, "aggregation"},
		{"unknown direction", func(c *Check) { c.Worse = 2 }, "direction"},
		{"unknown no data", func(c *Check) { c.NoData = -1 }, "no-data"},
		{"negative breach", func(c *Check) { c.Breach = -time.Second }, "breach"},
		{"negative window", func(c *Check) { c.Window = -time.Second }, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v; want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerdictText(t *testing.T) {
	for _, v := range []Verdict{Pass, Breach, Fail, Waiting} {
		b, err := v.MarshalText()
		var got Verdict
		if err != nil || got.UnmarshalText(b) != nil || got != v {
			t.Errorf("%v: marshaled %q (%v), back %v", v, b, err, got)
		}
	}
	var got Verdict
	if err := got.UnmarshalText([]byte("great")); err == nil || err.Error() != `verdict: got "great", want pass, breach, fail or no data` {
		t.Errorf("UnmarshalText(great): %v", err)
	}
	if _, err := Verdict(9).MarshalText(); err == nil || err.Error() != "unknown verdict 9" {
		t.Errorf("MarshalText(9): %v", err)
	}
}
