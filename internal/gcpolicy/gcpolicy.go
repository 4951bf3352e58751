// Package gcpolicy sets the garbage collector for a compile: the cfg
// commands that compile (cmd/cfg) and the compile benchmark (cmd/cfgbench)
// run with the same settings.
package gcpolicy

import (
	"os"
	"runtime/debug"
)

// Percent is the collector's target (GOGC) during a compile. A compile
// allocates many short-lived values around a small live heap (modules,
// schemas and the compile cache; a config's values and syntax tree are
// dropped once it is compiled), and collecting a quarter as often as Go's
// default makes it about a quarter faster.
const Percent = 400

// SoftLimit is the soft memory limit (GOMEMLIMIT) during a compile: the
// heap grows to Percent only while it stays under it, and the collector
// runs more often when it would not. It keeps a compile of 20,000 configs
// near 210 MB of resident memory at no measurable cost in CPU. It is a
// target of the collector, not a bound: a compile whose live heap is larger
// goes on, collecting more often (Go gives the collector at most half the
// CPU then). The bound is the compile's own limit on its live heap
// (compiler.Options.MaxMemory, cfg's --max-memory).
const SoftLimit = 192 << 20

// Compile sets the collector for a compile bounded by maxMemory
// (compiler.Options.MaxMemory; 0 for none), leaving each setting the
// environment gives (GOGC, GOMEMLIMIT) as it is. The soft limit is the
// lower of SoftLimit and maxMemory: under a smaller --max-memory the
// collector works to keep garbage from reaching it, and one setting, the
// compile's, governs both.
func Compile(maxMemory uint64) {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(Percent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		limit := uint64(SoftLimit)
		if maxMemory > 0 {
			limit = min(limit, maxMemory)
		}
		debug.SetMemoryLimit(int64(limit))
	}
}
