package gcpolicy

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestCompile checks that the soft limit is the lower of SoftLimit and the
// compile's memory bound, and that GOMEMLIMIT and GOGC win when set.
func TestCompile(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skip("GOMEMLIMIT is set")
	}
	for _, tt := range []struct{ max, want uint64 }{{0, SoftLimit}, {2 << 30, SoftLimit}, {64 << 20, 64 << 20}} {
		Compile(tt.max)
		if got := debug.SetMemoryLimit(-1); got != int64(tt.want) {
			t.Errorf("Compile(%d): limit %d, want %d", tt.max, got, tt.want)
		}
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv("GOGC", "100")
	debug.SetMemoryLimit(math.MaxInt64)
	debug.SetGCPercent(100)
	Compile(64 << 20)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: limit %d, want it left alone", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set: GOGC %d, want it left alone", got)
	}
}
