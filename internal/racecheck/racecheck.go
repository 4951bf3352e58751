// Package racecheck tells tests whether they run under the race detector,
// and lets a test that must run without it say so.
//
// The race detector makes programs slower and their goroutines' stacks and
// many allocations bigger: a test that measures memory, or whose length is
// set by the wall clock rather than by the code it runs, may not be worth
// running under it, or may not hold there. Such a test calls SkipUnder,
// which skips it under the race detector with a reason that starts with
// SkipPrefix. scripts/test.sh runs the packages that run work concurrently
// under the race detector only; internal/testreport writes down the tests
// that skipped themselves so, and the script then runs exactly those
// without the race detector.
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
