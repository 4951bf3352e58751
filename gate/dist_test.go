package gate_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/gate/internal/disttest"
)

// The gate the tests follow: its source and its compiled JSON.
const (
	gatePath = "source/feed/new_ranker.cconf"
	gateJSON = "materialized_configs/feed/new_ranker.json"
)

// units returns n units, user-0 to user-n-1, from the US but every fifth
// one, from FR.
func units(n int) []gate.Unit {
	us := make([]gate.Unit, n)
	for i := range us {
		us[i] = gate.Unit{ID: fmt.Sprintf("user-%d", i), Attrs: []gate.Attr{gate.StringAttr("country", []string{"US", "FR"}[i%5/4])}}
	}
	return us
}

// follow follows the gate through d's agent, waits until it has a
// version, and sends every Status it reports on the channel.
func follow(t *testing.T, d *disttest.Dist, opts gate.FollowOptions) (*gate.Live, <-chan gate.Status) {
	t.Helper()
	ch := make(chan gate.Status, 100)
	opts.OnUpdate = func(s gate.Status) { ch <- s }
	l, err := followWait(t, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, ch
}

// followWait follows the gate through d's agent until the test ends, and
// returns it with what its Wait returned within 10 s.
func followWait(t *testing.T, d *disttest.Dist, opts gate.FollowOptions) (*gate.Live, error) {
	t.Helper()
	l, err := gate.Follow(context.Background(), d.Client(), "feed/new_ranker", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l, l.Wait(ctx)
}

// until waits for a Status for which ok holds.
func until(t *testing.T, ch <-chan gate.Status, ok func(gate.Status) bool) gate.Status {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-ch:
			if ok(s) {
				return s
			}
		case <-timeout:
			t.Fatal("timed out waiting for an update")
		}
	}
}

// compiled compiles the gate as committed now.
func compiled(t *testing.T, d *disttest.Dist) *gate.Gate {
	t.Helper()
	g, err := gate.Compile(d.Read(gateJSON), gate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// sameDecisions checks that l decides like g for every unit.
func sameDecisions(t *testing.T, l *gate.Live, g *gate.Gate, us []gate.Unit) {
	t.Helper()
	passed := 0
	for _, u := range us {
		got, want := l.Check(u), g.Check(u)
		if got.Pass != want.Pass || got.Rule != want.Rule || got.Err != nil {
			t.Fatalf("unit %s: %+v, want %+v", u.ID, got, want)
		}
		if got.Pass {
			passed++
		}
	}
	t.Logf("%d of %d units pass", passed, len(us))
}

// swapping is the gate, followed, whose versions commits swap while
// readers check units: the harness of the tests of atomic swaps.
type swapping struct {
	d      *disttest.Dist
	l      *gate.Live
	ch     <-chan gate.Status
	source func(rev int64) string
	// versions holds the JSON of each version, recorded before it is
	// committed: a reader may see it as soon as the commit lands.
	mu       sync.Mutex // guards versions
	versions map[int64][]byte
}

// newSwapping commits source(1) as the gate's first version and follows
// the gate.
func newSwapping(t *testing.T, source func(rev int64) string) *swapping {
	d := disttest.New(t, map[string]string{gatePath: source(1)})
	l, ch := follow(t, d, gate.FollowOptions{})
	return &swapping{d: d, l: l, ch: ch, source: source, versions: map[int64][]byte{1: d.Read(gateJSON)}}
}

// A turn is a reader's turn with unit u: it checks units with the
// followed gate and passes each decision, with the unit decided, to
// verify, returning verify's first error.
type turn func(u gate.Unit, verify func(gate.Unit, gate.Decision) error) error

// swap commits versions 2 to last of the gate (source(rev)), each once
// the followed gate has the one before, while two readers take turns
// (newTurn makes each reader's) with the units us, reader r from unit
// 50r on, until each has seen version last. Every decision a reader
// verifies must be of a version committed, no older than one the reader
// saw before, and that version's decision as Check decides it for the
// unit; the readers compile the versions they see, numbering their keys
// while the followed gate does.
func (s *swapping) swap(t *testing.T, last int64, us []gate.Unit, newTurn func() turn) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for r := range 2 {
		take := newTurn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen int64
			compiled := map[int64]*gate.Gate{}
			verify := func(u gate.Unit, dec gate.Decision) error {
				if dec.Err != nil || dec.Version == nil {
					return fmt.Errorf("%+v", dec)
				}
				rev := dec.Version.Revision
				if rev < seen {
					return fmt.Errorf("revision %d after %d", rev, seen)
				}
				seen = rev
				g := compiled[rev]
				if g == nil {
					s.mu.Lock()
					src := s.versions[rev]
					s.mu.Unlock()
					if src == nil {
						return fmt.Errorf("a decision of revision %d, which was not committed yet", rev)
					}
					var err error
					if g, err = gate.Compile(src, gate.Options{}); err != nil {
						return fmt.Errorf("compiling revision %d: %w", rev, err)
					}
					compiled[rev] = g
				}
				if want := g.Check(u); dec.Pass != want.Pass || dec.Rule != want.Rule {
					return fmt.Errorf("unit %s at revision %d: pass %v (rule %d), Check decides %v (rule %d)",
						u.ID, rev, dec.Pass, dec.Rule, want.Pass, want.Rule)
				}
				return nil
			}
			for i := 0; ; i++ {
				if err := take(us[(i+r*50)%len(us)], verify); err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
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
		s.d.Write(gatePath, s.source(rev))
		src := s.d.Compiled("feed/new_ranker")
		s.mu.Lock()
		s.versions[rev] = src
		s.mu.Unlock()
		s.d.Commit(fmt.Sprintf("revision %d", rev))
		until(t, s.ch, func(st gate.Status) bool { return st.Version.Revision == rev })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
