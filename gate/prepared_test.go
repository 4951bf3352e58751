package gate_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cfg-dev/cfg/gate"
)

// tierSource is a gate config whose ramp reads the unit's country and the
// attribute prepared-test-tierN (N: run and rev), a key that no gate read
// before.
func tierSource(run, rev int64) string {
	return fmt.Sprintf(`load("@cfg//gate.cinc", "attr_in", "ramp")

export(ramp(
    salt = "tier-salt-%d",
    percent = %d,
    where = [attr_in("country", ["US", "CA"]), attr_in("prepared-test-tier%d-%d", ["gold"])],
))
`, rev, 40+rev*10, run, rev)
}

var tierRuns atomic.Int64

// TestFollowPreparedWhileSwapping: while a followed gate is swapped for
// versions reading attribute keys no gate read before (compiled, and
// their keys numbered, while readers prepare units), readers check
// prepared units: one each Reset for every unit, and one prepared before
// any of those versions and checked by both readers at once. Every
// decision must be the decision of the version it reports, as Check
// decides it for the unit. Run it with -race -count=20.
func TestFollowPreparedWhileSwapping(t *testing.T) {
	run := tierRuns.Add(1) // keys new to each run of the test
	s := newSwapping(t, func(rev int64) string { return tierSource(run, rev) })
	const last = 6
	us := units(100)
	for i := range us {
		for rev := 1; rev <= last; rev++ {
			us[i].Attrs = append(us[i].Attrs, gate.StringAttr(fmt.Sprintf("prepared-test-tier%d-%d", run, rev), []string{"gold", "silver"}[(i+rev)%3/2]))
		}
	}
	early := gate.Prepare(us[0]) // before the keys of revisions 2 and later were numbered
	s.swap(t, last, us, func() turn {
		var p gate.Prepared
		return func(u gate.Unit, verify func(gate.Unit, gate.Decision) error) error {
			p.Reset(u)
			if err := verify(u, s.l.CheckPrepared(&p)); err != nil {
				return err
			}
			return verify(us[0], s.l.CheckPrepared(early))
		}
	})
}
