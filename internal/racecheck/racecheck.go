// Package racecheck tells tests whether they run under the race detector,
// and lets a test that must run without it say so.
//
// The race detector makes programs slower and their goroutines' stacks and
// many allocations bigger: a test that measures memory, or whose length is
// set by the wall clock rather than by the code it runs, may not be worth
// running under it, or may not hold there. Such a test calls SkipUnder,
// which skips it under the race detector with a reason that starts with
// SkipPrefix: a run under the race detector says which tests are left to
// a run without it.
package racecheck

import "testing"

// SkipPrefix starts the reason that SkipUnder gives.
const SkipPrefix = "runs without the race detector: "

// SkipUnder skips the test under the race detector, saying why it must run
// without it.
func SkipUnder(t testing.TB, why string) {
	t.Helper()
	if Enabled {
		t.Skip(SkipPrefix + why)
	}
}
