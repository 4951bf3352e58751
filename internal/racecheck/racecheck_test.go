package racecheck

import "testing"

// TestSkipUnder checks that SkipUnder skips a test under the race
// detector only.
func TestSkipUnder(t *testing.T) {
	var sub *testing.T
	ran := false
	t.Run("sub", func(t *testing.T) {
		sub = t
		SkipUnder(t, "why")
		ran = true
	})
	if sub.Skipped() != Enabled || ran == Enabled {
		t.Errorf("with the race detector %v: the test skipped %v, ran on %v", Enabled, sub.Skipped(), ran)
	}
}
