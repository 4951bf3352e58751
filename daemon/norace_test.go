//go:build !race

package daemon

// raceEnabled says that the tests run with the race detector.
const raceEnabled = false
