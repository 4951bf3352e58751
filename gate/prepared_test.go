package gate_test

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/gate/internal/disttest"
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
	d := disttest.New(t, map[string]string{gatePath: tierSource(run, 1)})
	l, ch := follow(t, d, gate.FollowOptions{})
	const last = 6
	us := make([]gate.Unit, 100)
	for i := range us {
		u := gate.Unit{ID: fmt.Sprintf("user-%d", i), Attrs: []gate.Attr{gate.StringAttr("country", []string{"US", "FR"}[i%5/4])}}
		for rev := 1; rev <= last; rev++ {
			u.Attrs = append(u.Attrs, gate.StringAttr(fmt.Sprintf("prepared-test-tier%d-%d", run, rev), []string{"gold", "silver"}[(i+rev)%3/2]))
		}
		us[i] = u
	}
	early := gate.Prepare(us[0]) // before the keys of revisions 2 and later were numbered
	// The JSON of each version, recorded before it is committed: a reader
	// may see it as soon as the commit lands. Readers compile the versions
	// they see (numbering their keys while the followed gate does).
	versions := map[int64][]byte{1: d.Read(gateJSON)}
	var mu sync.Mutex // guards versions

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p gate.Prepared
			var seen int64
			compiled := map[int64]*gate.Gate{}
			for i := 0; ; i++ {
				u := us[(i+r*50)%len(us)]
				p.Reset(u)
				for _, c := range []struct {
					u gate.Unit
					p *gate.Prepared
				}{{u, &p}, {us[0], early}} {
					dec := l.CheckPrepared(c.p)
					if dec.Err != nil || dec.Version == nil {
						errs <- fmt.Errorf("reader %d: %+v", r, dec)
						return
					}
					rev := dec.Version.Revision
					if rev < seen {
						errs <- fmt.Errorf("reader %d: revision %d after %d", r, rev, seen)
						return
					}
					seen = rev
					g := compiled[rev]
					if g == nil {
						mu.Lock()
						src := versions[rev]
						mu.Unlock()
						if src == nil {
							errs <- fmt.Errorf("reader %d: a decision of revision %d, which was not committed yet", r, rev)
							return
						}
						var err error
						if g, err = gate.Compile(src, gate.Options{}); err != nil {
							errs <- err
							return
						}
						compiled[rev] = g
					}
					if want := g.Check(c.u); dec.Pass != want.Pass || dec.Rule != want.Rule {
						errs <- fmt.Errorf("reader %d: unit %s at revision %d: pass %v (rule %d), Check decides %v (rule %d)",
							r, c.u.ID, rev, dec.Pass, dec.Rule, want.Pass, want.Rule)
						return
					}
				}
				if seen == last {
					return
				}
				if i%64 == 0 {
					runtime.Gosched() // leave the distribution some of the 2 cores
				}
			}
		}()
	}
	for rev := int64(2); rev <= last; rev++ {
		d.Write(gatePath, tierSource(run, rev))
		src := d.Compiled("feed/new_ranker")
		mu.Lock()
		versions[rev] = src
		mu.Unlock()
		d.Commit(fmt.Sprintf("revision %d", rev))
		until(t, ch, func(s gate.Status) bool { return s.Version.Revision == rev })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
