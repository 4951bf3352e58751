//go:build race

package daemon

// raceEnabled says that the tests run with the race detector, which
// makes goroutines' stacks and many allocations bigger: tests of the
// memory clients cost do not hold them to their bounds then.
const raceEnabled = true
