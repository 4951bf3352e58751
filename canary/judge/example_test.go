package judge_test

import (
	"fmt"
	"time"

	"github.com/cfg-dev/cfg/canary/judge"
)

func Example() {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := judge.Check{
		Name:      "error_ratio",
		Predicate: judge.Predicate{Kind: judge.Relative, MaxRatio: 1.5, Slack: 0.01},
		Breach:    4 * time.Second,
		NoData:    judge.NoDataWait,
	}
	fmt.Println(c.Predicate.String(c.Worse))
	tr := judge.NewTracker(c, start)
	for i, canary := range []float64{0.02, 0.31, 0.31, 0.31} {
		at := start.Add(time.Duration(2*i+2) * time.Second)
		ev := tr.Observe(at, []float64{canary}, []float64{0.01, 0.01})
		fmt.Printf("%v: %v: %s\n", at.Sub(start), ev.Verdict, ev.Reason)
	}
	// Output:
	// canary <= control × 1.5 + 0.01
	// 2s: pass: canary 0.02 <= control 0.01 × 1.5 + 0.01
	// 4s: breach: canary 0.31 > control 0.01 × 1.5 + 0.01 for 0s (limit 4s)
	// 6s: breach: canary 0.31 > control 0.01 × 1.5 + 0.01 for 2s (limit 4s)
	// 8s: fail: canary 0.31 > control 0.01 × 1.5 + 0.01 for 4s (limit 4s)
}
