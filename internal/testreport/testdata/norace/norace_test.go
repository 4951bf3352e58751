// Package norace is a fixture of testreport's tests: tests of which some
// skip themselves to run without the race detector, as
// racecheck.SkipUnder does under it, when TESTREPORT_RACE is set.
package norace

import (
	"os"
	"testing"

	"github.com/cfg-dev/cfg/internal/racecheck"
)

func skipUnderRace(t *testing.T) {
	t.Helper()
	if os.Getenv("TESTREPORT_RACE") != "" {
		t.Skip(racecheck.SkipPrefix + "a fixture")
	}
}

func TestPlain(t *testing.T) {}

func TestMemory(t *testing.T) { skipUnderRace(t) }

// TestMemoryMore starts with the name of TestMemory, which does not
// select it.
func TestMemoryMore(t *testing.T) {}

// TestReadme has subtests of names that a pattern must quote, one of
// which starts with another's.
func TestReadme(t *testing.T) {
	for _, name := range []string{"README.md:680", "README.md:6800", "x(y)|z [1]", "a/b"} {
		t.Run(name, func(t *testing.T) {
			if name != "README.md:6800" {
				skipUnderRace(t)
			}
		})
	}
}
