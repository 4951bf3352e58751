package gate

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// referenceCheck decides a gate from its JSON (parsed) the plain way, as the
// package documentation states the evaluation: the first rule whose
// restraints all hold decides; a rule evaluates its restraints in order of
// cost (stable: boolean, set, number, unit IDs, version, population,
// application's), each from scratch, and stops at the first that does not
// hold; attributes are found by comparing keys with ==, versions parsed
// where they are read. It is the specification Check is tested against
// (TestCheckMatchesReference); it knows nothing of conditions shared by
// rules, slots or words.
func referenceCheck(t testing.TB, jg *jsonGate, opts Options, u Unit) string {
	attr := func(key string) (Attr, bool) {
		for _, a := range u.Attrs {
			if a.Key == key {
				return a, true
			}
		}
		return Attr{}, false
	}
	ops := map[string]func(c int) bool{
		"LT": func(c int) bool { return c < 0 }, "LE": func(c int) bool { return c <= 0 }, "EQ": func(c int) bool { return c == 0 },
		"NE": func(c int) bool { return c != 0 }, "GE": func(c int) bool { return c >= 0 }, "GT": func(c int) bool { return c > 0 },
	}
	bucketPasses := func(salt string, percent float64) (ok bool, err error) {
		b := int(percent*100 + 0.5)
		switch {
		case b == 0:
			return false, nil
		case b == Buckets:
			return true, nil
		case u.ID == "":
			return false, ErrNoUnitID
		}
		return Bucket(salt, u.ID) < b, nil
	}
	typeErr := func(key string, want string) error {
		a, _ := attr(key)
		return &AttrError{Attr: key, Got: a.describe(), Want: want}
	}
	// eval returns whether c holds, or why it cannot be evaluated.
	eval := func(c *jsonCondition) (bool, error) {
		switch {
		case c.UnitIDs != nil:
			return u.ID != "" && slices.Contains(*c.UnitIDs, u.ID), nil
		case c.AttrIn != nil:
			a, ok := attr(c.AttrIn.Attr)
			if !ok {
				return false, nil
			}
			if a.Kind() != String {
				return false, typeErr(c.AttrIn.Attr, "a string")
			}
			return slices.Contains(c.AttrIn.Values, a.Str()), nil
		case c.AttrIs != nil:
			a, ok := attr(c.AttrIs.Attr)
			if !ok {
				return false, nil
			}
			if a.Kind() != Bool {
				return false, typeErr(c.AttrIs.Attr, "a bool")
			}
			return a.True() == (c.AttrIs.Value == nil || *c.AttrIs.Value), nil
		case c.Number != nil:
			a, ok := attr(c.Number.Attr)
			if !ok {
				return false, nil
			}
			if a.Kind() != Number || a.Num() != a.Num() {
				return false, typeErr(c.Number.Attr, "a number")
			}
			return ops[c.Number.Op](cmpFloat(a.Num(), *c.Number.Value)), nil
		case c.Version != nil:
			a, ok := attr(c.Version.Attr)
			if !ok {
				return false, nil
			}
			v, ok := parseVersion(a.Str())
			if a.Kind() != String || !ok {
				return false, typeErr(c.Version.Attr, "a semantic version")
			}
			w, _ := parseVersion(c.Version.Value)
			return ops[c.Version.Op](compareVersions(&v, &w)), nil
		case c.Population != nil:
			return bucketPasses(c.Population.Salt, *c.Population.Percent)
		}
		fn, err := opts.Restraints[c.Custom.Name](c.Custom.Params)
		if err != nil {
			t.Fatal(err)
		}
		return callCustom(c.Custom.Name, fn, u)
	}
	cost := func(c *jsonCondition) int {
		switch {
		case c.AttrIs != nil:
			return 0
		case c.AttrIn != nil:
			return 1
		case c.Number != nil:
			return 2
		case c.UnitIDs != nil:
			return 3
		case c.Version != nil:
			return 4
		case c.Population != nil:
			return 5
		}
		return 6
	}
	for i, r := range jg.Rules {
		rs := slices.Clone(r.Restraints)
		slices.SortStableFunc(rs, func(a, b jsonRestraint) int { return cost(a.Condition) - cost(b.Condition) })
		var unknown error
		holds := true
		for _, x := range rs {
			ok, err := eval(x.Condition)
			if err != nil {
				if unknown == nil {
					unknown = err
				}
				continue
			}
			if ok == x.Negate {
				holds = false
				break
			}
		}
		if !holds {
			continue
		}
		if unknown != nil {
			return fmt.Sprintf("fail closed: rule %q: %v", *r.Name, unknown)
		}
		pass, err := bucketPasses(*jg.Salt, *r.Percent)
		if err != nil {
			return fmt.Sprintf("fail closed: rule %q: %v", *r.Name, err)
		}
		s := "fail"
		if pass {
			s = "pass"
		}
		s += fmt.Sprintf(" rule %d %q", i, *r.Name)
		if b := int(*r.Percent*100 + 0.5); b != 0 && b != Buckets {
			s += " sampled"
		}
		return s
	}
	return "fail no rule"
}

// referenceRuns numbers the runs of TestCheckMatchesReference.
var referenceRuns atomic.Int64

// TestCheckMatchesReference: Check and CheckPrepared decide as
// referenceCheck, on random
// gates (rules of up to four restraints drawn from a small pool, so that
// rules share conditions, with either negation; some of up to 60 rules and
// more conditions than a check remembers) and random units (present,
// absent, mistyped and repeated attributes, versions that do not parse,
// missing IDs), as well as on the benchmarks' gates; and they call the
// application's restraints as often. CheckPrepared is given units
// prepared before the gate was compiled (with a key no gate read before,
// in every tenth random gate), after, and a Prepared reset for each.
func TestCheckMatchesReference(t *testing.T) {
	conditions := []string{
		`{"attr_in": {"attr": "country", "values": ["US", "CA", "MX"]}}`,
		`{"attr_in": {"attr": "country", "values": ["FR"]}}`,
		`{"attr_in": {"attr": "a-rather-long-attribute-name", "values": ["x", "a value longer than sixteen bytes"]}}`,
		`{"attr_is": {"attr": "employee"}}`,
		`{"attr_is": {"attr": "employee", "value": false}}`,
		`{"number": {"attr": "friends", "op": "GE", "value": 100}}`,
		`{"number": {"attr": "friends", "op": "LT", "value": 1000}}`,
		`{"number": {"attr": "age", "op": "EQ", "value": 30}}`,
		`{"version": {"attr": "app_version", "op": "GE", "value": "2.3.0"}}`,
		`{"version": {"attr": "app_version", "op": "LT", "value": "9.0.0-rc.1"}}`,
		`{"version": {"attr": "os", "op": "NE", "value": "1.0.0"}}`,
		`{"unit_ids": ["alice", "bob"]}`,
		`{"population": {"salt": "beta", "percent": 50}}`,
		`{"population": {"salt": "all", "percent": 100}}`,
		`{"custom": {"name": "internal_network", "params": {"cidr": "10.0.0.0/8"}}}`,
		`{"custom": {"name": "counted"}}`,
	}
	values := map[string][]Attr{
		"country":                      {StringAttr("country", "US"), StringAttr("country", "FR"), StringAttr("country", "DE"), NumberAttr("country", 1)},
		"a-rather-long-attribute-name": {StringAttr("a-rather-long-attribute-name", "x"), StringAttr("a-rather-long-attribute-name", "a value longer than sixteen bytes"), StringAttr("a-rather-long-attribute-name", "a value longer than sixteen byteZ")},
		"a-rather-long-attribute-nam3": {StringAttr("a-rather-long-attribute-nam3", "x")},
		"employee":                     {BoolAttr("employee", true), BoolAttr("employee", false), StringAttr("employee", "yes")},
		"friends":                      {NumberAttr("friends", 120), NumberAttr("friends", 5000), NumberAttr("friends", 3), AnyAttr("friends", struct{}{})},
		"age":                          {NumberAttr("age", 30), NumberAttr("age", 31)},
		"app_version":                  {StringAttr("app_version", "2.4.1"), StringAttr("app_version", "2.3.0-beta"), StringAttr("app_version", "9.0.0-rc.1"), StringAttr("app_version", "v10.0.0"), StringAttr("app_version", "2.x"), BoolAttr("app_version", true)},
		"os":                           {StringAttr("os", "1.0.0"), StringAttr("os", "1.0.0+b")},
		"ip":                           {StringAttr("ip", "10.1.2.3"), StringAttr("ip", "192.0.2.1"), StringAttr("ip", "not an address")},
	}
	// counted is an application's restraint that counts its calls: Check
	// calls the application's restraints exactly when the reference does.
	calls := 0
	opts := Options{Restraints: maps.Clone(testRestraints.Restraints)}
	opts.Restraints["counted"] = func(map[string]string) (Restraint, error) {
		return func(u Unit) (bool, error) { calls++; return len(u.ID)%2 == 0, nil }, nil
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	})
	ids := []string{"", "alice", "bob", "user-1", "user-12345", "user-99"}
	rng := rand.New(rand.NewPCG(1, 2))
	gates := []string{BenchGate(1), BenchGate(3), BenchGate(10), benchGateDistinct(), benchGateSmall(), checkGate}
	// condition draws one from the pool, or, one time in many, a number
	// or version comparison of its own, so that large gates have more
	// conditions than a check remembers (maxMemo).
	condition := func(many bool) string {
		if !many || rng.IntN(2) == 0 {
			return conditions[rng.IntN(len(conditions))]
		}
		if rng.IntN(2) == 0 {
			return fmt.Sprintf(`{"number": {"attr": "friends", "op": "GE", "value": %d}}`, rng.IntN(6000))
		}
		return fmt.Sprintf(`{"version": {"attr": "app_version", "op": "LT", "value": "%d.%d.0"}}`, rng.IntN(11), rng.IntN(5))
	}
	// Every tenth random gate also reads a version attribute of a key no
	// gate read before (fresh: new to each run of the test), which units
	// prepared before the gate was compiled have not numbered.
	run := referenceRuns.Add(1)
	fresh := map[int]string{}
	for n := range 2000 {
		many := n%4 == 0
		var rules []string
		for i := range 1 + rng.IntN(map[bool]int{false: 6, true: 60}[many]) {
			var rs []string
			for range rng.IntN(5) {
				rs = append(rs, fmt.Sprintf(`{"condition": %s, "negate": %v}`, condition(many), rng.IntN(3) == 0))
			}
			if len(rs) == 0 {
				rs = append(rs, fmt.Sprintf(`{"condition": %s}`, conditions[0]))
			}
			rules = append(rules, fmt.Sprintf(`{"name": "r%d", "restraints": [%s], "percent": %v}`, i, strings.Join(rs, ", "), []float64{0, 10, 50, 100}[rng.IntN(4)]))
		}
		if n%10 == 0 {
			key := fmt.Sprintf("reference-fresh-%d-%d", run, n)
			fresh[len(gates)] = key
			i := rng.IntN(len(rules) + 1)
			rules = slices.Insert(rules, i, fmt.Sprintf(`{"name": "fresh", "restraints": [{"condition": {"version": {"attr": %q, "op": "GE", "value": "1.0.0"}}, "negate": %v}], "percent": 100}`, key, rng.IntN(2) == 0))
		}
		gates = append(gates, `{"salt": "s", "rules": [`+strings.Join(rules, ",")+`]}`)
	}
	reused := new(Prepared)
	for gi, src := range gates {
		units := []Unit{BenchUnit}
		for range 40 {
			u := Unit{ID: ids[rng.IntN(len(ids))]}
			for _, k := range keys {
				if rng.IntN(4) > 0 {
					vs := values[k]
					u.Attrs = append(u.Attrs, vs[rng.IntN(len(vs))])
				}
			}
			if k := fresh[gi]; k != "" && rng.IntN(4) > 0 {
				u.Attrs = append(u.Attrs, StringAttr(k, []string{"2.0.0", "0.9.0", "1.x"}[rng.IntN(3)]))
			}
			rng.Shuffle(len(u.Attrs), func(i, j int) { u.Attrs[i], u.Attrs[j] = u.Attrs[j], u.Attrs[i] })
			if rng.IntN(4) == 0 { // a key given twice: the first counts
				vs := values[keys[rng.IntN(len(keys))]]
				u.Attrs = append(u.Attrs, vs[rng.IntN(len(vs))])
			}
			units = append(units, u)
		}
		// Units prepared before the gate is compiled: its fresh key has
		// no number yet for them.
		var before []*Prepared
		for _, u := range units {
			before = append(before, Prepare(u))
		}
		g, err := Compile([]byte(src), opts)
		if err != nil {
			// Random rules may read one attribute as two types.
			continue
		}
		if k := fresh[gi]; k != "" {
			// Numbered after the units were prepared, or not at all once
			// the registry is full (the test run many times).
			ids := registry.cur.Load().ids
			if id, ok := ids[k]; (ok && id < uint32(len(before[0].at))) || (!ok && len(ids) < maxKeys) {
				t.Fatalf("fresh key %q numbered %d, %v; units prepared before knew %d keys, %d numbered", k, id, ok, len(before[0].at), len(ids))
			}
		}
		var jg jsonGate
		if err := json.Unmarshal([]byte(src), &jg); err != nil {
			t.Fatal(err)
		}
		for ui, u := range units {
			calls = 0
			want := referenceCheck(t, &jg, opts, u)
			wantCalls := calls
			reused.Reset(u)
			for _, c := range []struct {
				how   string
				check func() Decision
			}{
				{"Check", func() Decision { return g.Check(u) }},
				{"CheckPrepared, prepared before the gate was compiled", func() Decision { return g.CheckPrepared(before[ui]) }},
				{"CheckPrepared, prepared after", func() Decision { return g.CheckPrepared(Prepare(u)) }},
				{"CheckPrepared, a Prepared reset", func() Decision { return g.CheckPrepared(reused) }},
			} {
				calls = 0
				if got := decision(c.check()); got != want || calls != wantCalls {
					t.Fatalf("%s:\ngate %s\nunit %+v\n got %s after %d calls of \"counted\"\nwant %s after %d", c.how, src, u, got, calls, want, wantCalls)
				}
			}
		}
	}
}
