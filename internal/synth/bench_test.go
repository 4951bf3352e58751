package synth

import "testing"

// BenchmarkPlan plans a 10,000-config repository without writing it.
func BenchmarkPlan(b *testing.B) {
	for b.Loop() {
		Plan(Options{Configs: 10000, Seed: 1})
	}
}
