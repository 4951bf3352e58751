// Package cputime measures the CPU time of benchmarks on shared machines:
// unlike wall time, it leaves out the time the process waited for a CPU
// while other work ran.
package cputime

import (
	"testing"
	"time"
)

// Process returns the user and system CPU time the process has used so
// far, and false where it cannot be read.
func Process() (time.Duration, bool) { return process() }

// Start starts measuring the CPU time of a benchmark's loop; the function
// it returns, called after the loop, reports it per iteration as the
// metric cpu-ns/op (where it can be read):
//
//	stop := cputime.Start(b)
//	for b.Loop() { ... }
//	stop()
func Start(b *testing.B) func() {
	t0, ok := Process()
	return func() {
		if t1, ok1 := Process(); ok && ok1 && b.N > 0 {
			b.ReportMetric(float64(t1-t0)/float64(b.N), "cpu-ns/op")
		}
	}
}
