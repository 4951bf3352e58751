package gate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/gate/internal/disttest"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// rampSource is a gate config ramping to percent with salt.
func rampSource(salt string, percent float64) string {
	return fmt.Sprintf(`load("@cfg//gate.cinc", "attr_in", "ramp")

export(ramp(
    salt = %q,
    percent = %v,
    allow = ["alice"],
    where = [attr_in("country", ["US", "CA"])],
))
`, salt, percent)
}

// TestFollowCommitsAndOverrides: a gate compiled by the real compiler,
// committed, published by a real daemon and followed through a real agent
// changes with every commit, with a canary's override on this host, and
// back when the override goes.
func TestFollowCommitsAndOverrides(t *testing.T) {
	d := disttest.New(t, map[string]string{gatePath: rampSource("feed/new_ranker", 10)})
	l, ch := follow(t, d, gate.FollowOptions{})
	us := units(2000)
	v1 := compiled(t, d)
	sameDecisions(t, l, v1, us)
	if s := l.Status(); s.Version.Revision != 1 || s.Err != nil || s.Version.Override != "" {
		t.Fatalf("status %+v", s)
	}

	d.Write(gatePath, rampSource("feed/new_ranker", 50))
	d.Commit("ramp to 50 %")
	s := until(t, ch, func(s gate.Status) bool { return s.Version.Revision == 2 })
	v2 := compiled(t, d)
	sameDecisions(t, l, v2, us)
	if d := l.Check(us[0]); d.Version != s.Version {
		t.Errorf("decision's version %+v, want %+v", d.Version, s.Version)
	}
	if s.Version.Commit != d.Head() {
		t.Errorf("version's commit %q, want %q", s.Version.Commit, d.Head())
	}

	// A canary pushes 100 % to this host.
	d.Write(gatePath, rampSource("feed/new_ranker", 100))
	res := d.Compiled("feed/new_ranker")
	d.PutOverride("canary-1", "feed/new_ranker", gate.Type, res)
	s = until(t, ch, func(s gate.Status) bool { return s.Version.Override == "canary-1" })
	if s.Version.Revision != 2 || s.Version.OverrideVersion != 1 {
		t.Errorf("override version %+v", s.Version)
	}
	g100, err := gate.Compile(res, gate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameDecisions(t, l, g100, us)
	if dd := l.Check(us[0]); dd.Version.Override != "canary-1" {
		t.Errorf("decision's version %+v", dd.Version)
	}

	// The canary rolls back.
	d.DeleteOverride("canary-1")
	until(t, ch, func(s gate.Status) bool { return s.Version.Override == "" })
	sameDecisions(t, l, v2, us)
}

// TestFollowSwapsAtomically: while commits change the gate's salt and
// percentage, readers check units concurrently; every decision must be
// the decision of the version it reports, whole (a reader never sees the
// rules of one version with the salt of another), and each reader sees
// versions in order. Run it with -race -count=20.
func TestFollowSwapsAtomically(t *testing.T) {
	s := newSwapping(t, func(rev int64) string { return rampSource(fmt.Sprintf("salt-%d", rev), float64(rev*15)) })
	s.swap(t, 6, units(200), func() turn {
		return func(u gate.Unit, verify func(gate.Unit, gate.Decision) error) error {
			return verify(u, s.l.Check(u))
		}
	})
}

// TestFollowFromCache: with the agent and the daemon down, a followed gate
// keeps deciding, and an application started afterwards loads the gate
// from the agent's cache.
func TestFollowFromCache(t *testing.T) {
	d := disttest.New(t, map[string]string{gatePath: rampSource("feed/new_ranker", 10)})
	d.Write(gatePath, rampSource("feed/new_ranker", 30))
	d.Commit("ramp to 30 %")
	l, ch := follow(t, d, gate.FollowOptions{})
	until(t, ch, func(s gate.Status) bool { return s.Version != nil && s.Version.Revision == 2 })
	us := units(1000)
	v2 := compiled(t, d)
	sameDecisions(t, l, v2, us)

	d.StopAgent()
	d.StopDaemon()
	sameDecisions(t, l, v2, us)

	// A new application: nothing upstream answers.
	restarted, err := followWait(t, d, gate.FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameDecisions(t, restarted, v2, us)
	if dec := restarted.Check(us[0]); !dec.Version.FromCache || dec.Version.Revision != 2 {
		t.Errorf("version %+v, want revision 2 from the cache", dec.Version)
	}
}

// TestFollowRefusesWhatDoesNotCompile: a version naming a restraint this
// application does not register leaves the previous version in effect,
// with the reason in the status and the log; an application that never
// had a version that compiles fails closed with it.
func TestFollowRefusesWhatDoesNotCompile(t *testing.T) {
	d := disttest.New(t, map[string]string{gatePath: rampSource("feed/new_ranker", 10)})
	var logs syncbuf.Buffer
	l, ch := follow(t, d, gate.FollowOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	v1 := compiled(t, d)
	d.Write(gatePath, `load("@cfg//gate.cinc", "custom", "ramp")
export(ramp(salt = "feed/new_ranker", percent = 100, early = [custom("internal_network", cidr = "10.0.0.0/8")]))
`)
	d.Commit("an application's restraint")
	s := until(t, ch, func(s gate.Status) bool { return s.Latest.Revision == 2 })
	want := `gate "feed/new_ranker" revision 2: rules[0].restraints[0].condition.custom.name: restraint "internal_network" is not registered by this application (registered: none)`
	var ce *gate.CompileError
	if s.Err == nil || s.Err.Error() != want || !errors.As(s.Err, &ce) || s.Version.Revision != 1 {
		t.Errorf("status %+v, err %v\nwant err %s", s, s.Err, want)
	}
	// The version is logged before the status is reported.
	if line := `level=ERROR msg="gate version refused; the previous one stays in effect" gate=feed/new_ranker version="revision 2" err=`; !strings.Contains(logs.String(), line) {
		t.Errorf("log %q, want a line with %q", logs.String(), line)
	}
	sameDecisions(t, l, v1, units(500))

	fresh, err := followWait(t, d, gate.FollowOptions{})
	if err == nil || err.Error() != want {
		t.Errorf("Wait = %v, want %s", err, want)
	}
	if dec := fresh.Check(gate.Unit{ID: "alice"}); dec.Pass || dec.Err == nil || dec.Err.Error() != want {
		t.Errorf("Check = %+v, want fail closed: %s", dec, want)
	}
	// Registered, the same version compiles.
	ok, _ := follow(t, d, gate.FollowOptions{Options: gate.Options{Restraints: map[string]gate.NewRestraint{
		"internal_network": func(map[string]string) (gate.Restraint, error) {
			return func(u gate.Unit) (bool, error) { return strings.HasPrefix(u.ID, "10."), nil }, nil
		},
	}}})
	if dec := ok.Check(gate.Unit{ID: "10.1.1.1"}); !dec.Pass || dec.RuleName != "internal_network" {
		t.Errorf("Check = %+v", dec)
	}
}

// TestFollowDeleted: a gate whose config is deleted keeps deciding with its
// last version; created again, it is followed again.
func TestFollowDeleted(t *testing.T) {
	d := disttest.New(t, map[string]string{gatePath: rampSource("feed/new_ranker", 10)})
	l, ch := follow(t, d, gate.FollowOptions{})
	us := units(500)
	v1 := compiled(t, d)

	d.Remove(gatePath)
	d.Commit("no gate")
	c := d.Client()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(context.Background(), "feed/new_ranker")
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent still serves the deleted gate: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sameDecisions(t, l, v1, us)
	if s := l.Status(); s.Version.Revision != 1 || s.Err != nil {
		t.Errorf("status %+v after the deletion", s)
	}

	d.Write(gatePath, rampSource("feed/new_ranker", 60))
	d.Commit("the gate again")
	until(t, ch, func(s gate.Status) bool { return s.Version.Revision == 3 })
	sameDecisions(t, l, compiled(t, d), us)
}

func TestFollowNotLoaded(t *testing.T) {
	c := disttest.New(t, map[string]string{gatePath: rampSource("feed/new_ranker", 10)}).Client()
	l, err := gate.Follow(context.Background(), c, "feed/nope", gate.FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if dec := l.Check(gate.Unit{ID: "alice"}); dec.Pass || !errors.Is(dec.Err, gate.ErrNotLoaded) || dec.Err.Error() != `gate "feed/nope": not loaded yet` {
		t.Errorf("Check = %+v", dec)
	}
	if _, err := gate.Follow(context.Background(), c, "../x", gate.FollowOptions{}); err == nil {
		t.Error("Follow accepted a bad name")
	}
}
