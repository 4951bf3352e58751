//go:build !race

package racecheck

// Enabled is true when the program was built with the race detector.
const Enabled = false
