package gate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/gate/internal/cputime"
)

// BenchGate returns the JSON of a gate of n rules, each of three
// restraints (a string set, a number and a version comparison), built so
// that BenchUnit goes through all of them: the version restraint of every
// rule but the last does not hold, and the last rule samples at 10 %. It
// is the worst case for a gate of n rules: 3n restraints and the hash.
func BenchGate(n int) string {
	var rules []string
	for i := range n {
		v, percent := "9.0.0", 100
		if i == n-1 {
			v, percent = "2.3.0", 10
		}
		rules = append(rules, fmt.Sprintf(`{"name": "rule %d", "restraints": [
		  {"condition": {"attr_in": {"attr": "country", "values": ["US", "CA", "MX"]}}},
		  {"condition": {"number": {"attr": "friends", "op": "GE", "value": 100}}},
		  {"condition": {"version": {"attr": "app_version", "op": "GE", "value": %q}}}], "percent": %d}`, i, v, percent))
	}
	return `{"salt": "feed/new_ranker", "rules": [` + strings.Join(rules, ",") + `]}`
}

// benchGateSmall returns the JSON of a gate of 3 rules and 3 restraints in
// all, one a rule (a string set, a number, a version comparison): the
// first two do not hold for BenchUnit, the last rule samples at 10 %.
func benchGateSmall() string {
	return `{"salt": "feed/new_ranker", "rules": [
	  {"name": "rule 0", "restraints": [{"condition": {"attr_in": {"attr": "country", "values": ["FR", "DE", "IT"]}}}], "percent": 100},
	  {"name": "rule 1", "restraints": [{"condition": {"number": {"attr": "friends", "op": "GE", "value": 1000}}}], "percent": 100},
	  {"name": "rule 2", "restraints": [{"condition": {"version": {"attr": "app_version", "op": "GE", "value": "2.3.0"}}}], "percent": 10}]}`
}

// BenchUnit is the unit of the benchmarks: an ID and five attributes.
var BenchUnit = Unit{ID: "user-12345", Attrs: []Attr{
	StringAttr("country", "US"), BoolAttr("employee", false), NumberAttr("friends", 120),
	StringAttr("app_version", "2.4.1"), StringAttr("locale", "en_US"),
}}

// BenchmarkCheck checks gates of 1, 3 and 10 rules of 3 restraints each,
// every restraint reached (BenchGate); the rules share their set and number
// conditions, and all but the last their version condition, which a check
// evaluates once (BenchmarkCheckDistinct has none shared).
func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			g := mustCompile(b, BenchGate(n), Options{})
			if d := g.Check(BenchUnit); d.Rule != n-1 || d.Err != nil || !d.Sampled {
				b.Fatalf("decision %+v", d)
			}
			b.ReportAllocs()
			stop := cputime.Start(b)
			for b.Loop() {
				g.Check(BenchUnit)
			}
			stop()
		})
	}
}

// benchGateDistinct returns the JSON of a gate like BenchGate(3) whose
// restraints are nine distinct conditions (each rule's set, number and
// version differ), so that a check evaluates all nine: no rule shares a
// condition with another.
func benchGateDistinct() string {
	var rules []string
	for i := range 3 {
		v, percent := fmt.Sprintf("9.0.%d", i), 100
		if i == 2 {
			v, percent = "2.3.0", 10
		}
		rules = append(rules, fmt.Sprintf(`{"name": "rule %d", "restraints": [
		  {"condition": {"attr_in": {"attr": "country", "values": ["US", "CA", "X%d"]}}},
		  {"condition": {"number": {"attr": "friends", "op": "GE", "value": %d}}},
		  {"condition": {"version": {"attr": "app_version", "op": "GE", "value": %q}}}], "percent": %d}`, i, i, 100-i, v, percent))
	}
	return `{"salt": "feed/new_ranker", "rules": [` + strings.Join(rules, ",") + `]}`
}

// BenchmarkCheckDistinct checks a gate of 3 rules of 3 restraints, nine
// distinct conditions, all evaluated (benchGateDistinct).
func BenchmarkCheckDistinct(b *testing.B) {
	g := mustCompile(b, benchGateDistinct(), Options{})
	if d := g.Check(BenchUnit); d.Rule != 2 || d.Err != nil || !d.Sampled || len(g.conds) != 9 {
		b.Fatalf("decision %+v of %d conditions", d, len(g.conds))
	}
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		g.Check(BenchUnit)
	}
	stop()
}

// BenchmarkCheckSmall checks a gate of 3 rules and 3 restraints in all
// (benchGateSmall), all evaluated.
func BenchmarkCheckSmall(b *testing.B) {
	g := mustCompile(b, benchGateSmall(), Options{})
	if d := g.Check(BenchUnit); d.Rule != 2 || d.Err != nil || !d.Sampled {
		b.Fatalf("decision %+v", d)
	}
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		g.Check(BenchUnit)
	}
	stop()
}

// BenchmarkHash is the floor of a sampling check: the hash of the unit's ID
// after the gate's salt (hashed once, when the gate is compiled) and the
// bucket.
func BenchmarkHash(b *testing.B) {
	p := newPrefix("feed/new_ranker")
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		bucketOf(p.sum(BenchUnit.ID))
	}
	stop()
}

// BenchmarkCheckPrepared checks prepared units (CheckPrepared) against the
// gate of 3 rules and 3 restraints (small, benchGateSmall) and those of 3
// and 10 rules of 3 restraints (BenchGate), reporting the time per check:
// with the unit prepared once (per=all), and with a Prepared reset for the
// unit every 10 checks and before every check (per=10, per=1: Reset
// included, shared by the checks).
func BenchmarkCheckPrepared(b *testing.B) {
	for _, gc := range []struct {
		name, src string
		rule      int
	}{{"small", benchGateSmall(), 2}, {"rules=3", BenchGate(3), 2}, {"rules=10", BenchGate(10), 9}} {
		g := mustCompile(b, gc.src, Options{})
		for _, per := range []int{0, 10, 1} {
			name := fmt.Sprintf("%s/per=%d", gc.name, per)
			if per == 0 {
				name = gc.name + "/per=all"
			}
			b.Run(name, func(b *testing.B) {
				p := Prepare(BenchUnit)
				if d := g.CheckPrepared(p); d.Rule != gc.rule || d.Err != nil || !d.Sampled {
					b.Fatalf("decision %+v", d)
				}
				b.ReportAllocs()
				stop := cputime.Start(b)
				i := 0
				for b.Loop() {
					if per > 0 {
						if i == 0 {
							p.Reset(BenchUnit)
							i = per
						}
						i--
					}
					g.CheckPrepared(p)
				}
				stop()
			})
		}
	}
}

// BenchmarkPrepare resets a Prepared for BenchUnit: the work done once per
// unit, whatever the number of gates checked.
func BenchmarkPrepare(b *testing.B) {
	mustCompile(b, BenchGate(1), Options{})
	p := Prepare(BenchUnit)
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		p.Reset(BenchUnit)
	}
	stop()
}
