package gate

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

// decision prints a Decision for comparison: "pass rule 1 "allow"",
// "fail no rule", "fail closed: <reason>", with " sampled" when sampling
// decided.
func decision(d Decision) string {
	if d.Err != nil {
		if d.Pass || d.Rule != -1 {
			return fmt.Sprintf("inconsistent %+v", d)
		}
		return "fail closed: " + d.Err.Error()
	}
	s := "fail"
	if d.Pass {
		s = "pass"
	}
	if d.Rule < 0 {
		return s + " no rule"
	}
	s += fmt.Sprintf(" rule %d %q", d.Rule, d.RuleName)
	if d.Sampled {
		s += " sampled"
	}
	return s
}

// checkGate is a gate with every kind of restraint.
const checkGate = `{"salt": "feed/new_ranker", "rules": [
  {"name": "deny", "restraints": [{"condition": {"unit_ids": ["mallory", "trudy"]}}], "percent": 0},
  {"name": "allow", "restraints": [{"condition": {"unit_ids": ["alice", "bob"]}}], "percent": 100},
  {"name": "employees", "restraints": [{"condition": {"attr_is": {"attr": "employee", "value": true}}}], "percent": 100},
  {"name": "office", "restraints": [{"condition": {"custom": {"name": "internal_network", "params": {"cidr": "10.0.0.0/8"}}}}], "percent": 100},
  {"name": "power users", "restraints": [
     {"condition": {"number": {"attr": "friends", "op": "GE", "value": 1000}}},
     {"condition": {"attr_in": {"attr": "country", "values": ["FR"]}}, "negate": true}], "percent": 100},
  {"name": "beta", "restraints": [{"condition": {"population": {"salt": "beta-program", "percent": 0.5}}}], "percent": 100},
  {"name": "ramp", "restraints": [
     {"condition": {"attr_in": {"attr": "country", "values": ["US", "CA"]}}},
     {"condition": {"version": {"attr": "app_version", "op": "GE", "value": "2.3.0"}}}], "percent": 10}]}`

// firstUnit returns the first ID "prefix-N" for which ok holds.
func firstUnit(prefix string, ok func(id string) bool) string {
	for i := 0; ; i++ {
		if id := fmt.Sprintf("%s-%d", prefix, i); ok(id) {
			return id
		}
	}
}

func TestCheck(t *testing.T) {
	g := mustCompile(t, checkGate, testRestraints)
	us := []Attr{StringAttr("country", "US"), StringAttr("app_version", "2.4.0")}
	// Units inside and outside the ramp's 10 %, and inside the beta
	// population's 0.5 %.
	in := firstUnit("u", func(id string) bool { return Bucket("feed/new_ranker", id) < 1000 && Bucket("beta-program", id) >= 50 })
	out := firstUnit("u", func(id string) bool { return Bucket("feed/new_ranker", id) >= 1000 && Bucket("beta-program", id) >= 50 })
	beta := firstUnit("u", func(id string) bool { return Bucket("beta-program", id) < 50 })
	for _, tc := range []struct {
		name string
		u    Unit
		want string
	}{
		{"denied beats everything", Unit{ID: "mallory", Attrs: []Attr{BoolAttr("employee", true)}}, `fail rule 0 "deny"`},
		{"allowed", Unit{ID: "alice"}, `pass rule 1 "allow"`},
		{"employee", Unit{ID: out, Attrs: []Attr{BoolAttr("employee", true)}}, `pass rule 2 "employees"`},
		{"not an employee", Unit{ID: out, Attrs: []Attr{BoolAttr("employee", false)}}, `fail no rule`},
		{"internal network", Unit{ID: out, Attrs: []Attr{StringAttr("ip", "10.1.2.3")}}, `pass rule 3 "office"`},
		{"outside network", Unit{ID: out, Attrs: []Attr{StringAttr("ip", "192.0.2.1")}}, `fail no rule`},
		{"power user", Unit{ID: out, Attrs: []Attr{NumberAttr("friends", 1000)}}, `pass rule 4 "power users"`},
		{"power user in France: negated restraint", Unit{ID: out, Attrs: []Attr{NumberAttr("friends", 5000), StringAttr("country", "FR")}}, `fail no rule`},
		{"few friends", Unit{ID: out, Attrs: []Attr{NumberAttr("friends", 999.5)}}, `fail no rule`},
		{"beta population", Unit{ID: beta}, `pass rule 5 "beta"`},
		{"ramp, sampled in", Unit{ID: in, Attrs: us}, `pass rule 6 "ramp" sampled`},
		{"ramp, sampled out", Unit{ID: out, Attrs: us}, `fail rule 6 "ramp" sampled`},
		{"old app", Unit{ID: in, Attrs: []Attr{StringAttr("country", "US"), StringAttr("app_version", "2.3.0-rc.1")}}, `fail no rule`},
		{"v-prefixed version", Unit{ID: in, Attrs: []Attr{StringAttr("country", "CA"), StringAttr("app_version", "v2.3.0")}}, `pass rule 6 "ramp" sampled`},
		{"missing attributes hold for no restraint", Unit{ID: in}, `fail no rule`},
		{"first of a repeated key counts", Unit{ID: in, Attrs: []Attr{StringAttr("country", "DE"), StringAttr("country", "US"), StringAttr("app_version", "3.0.0")}}, `fail no rule`},

		// Fail closed.
		{"wrong type", Unit{ID: out, Attrs: []Attr{StringAttr("employee", "yes")}}, `fail closed: rule "employees": attribute "employee": got string "yes", want a bool`},
		{"number as string", Unit{ID: out, Attrs: []Attr{StringAttr("friends", "1200")}}, `fail closed: rule "power users": attribute "friends": got string "1200", want a number`},
		{"NaN", Unit{ID: out, Attrs: []Attr{NumberAttr("friends", math.NaN())}}, `fail closed: rule "power users": attribute "friends": got number NaN, want a number`},
		{"bad version", Unit{ID: in, Attrs: []Attr{StringAttr("country", "US"), StringAttr("app_version", "2.x")}}, `fail closed: rule "ramp": attribute "app_version": got string "2.x", want a semantic version`},
		{"version as number", Unit{ID: in, Attrs: []Attr{StringAttr("country", "US"), NumberAttr("app_version", 2.4)}}, `fail closed: rule "ramp": attribute "app_version": got number 2.4, want a semantic version`},
		{"application's restraint fails", Unit{ID: out, Attrs: []Attr{StringAttr("ip", "not an ip")}}, `fail closed: rule "office": restraint "internal_network": ip "not an ip": ParseAddr("not an ip"): unable to parse IP`},
		{"no ID where a population samples", Unit{}, `fail closed: rule "beta": the unit has no ID, and sampling needs one`},
		{"an invalid attribute", Unit{ID: out, Attrs: []Attr{AnyAttr("employee", []string{"x"})}}, `fail closed: rule "employees": attribute "employee": got []string, want a bool`},
		{"a null attribute", Unit{ID: out, Attrs: []Attr{AnyAttr("employee", nil)}}, `fail closed: rule "employees": attribute "employee": got null, want a bool`},

		// A rule with a restraint that does not hold does not hold,
		// whatever its unknown restraints would say.
		{"unknown but false elsewhere", Unit{ID: out, Attrs: []Attr{StringAttr("country", "FR"), StringAttr("friends", "many")}}, `fail no rule`},
	} {
		if got := decision(g.Check(tc.u)); got != tc.want {
			t.Errorf("%s: Check(%+v)\n got %s\nwant %s", tc.name, tc.u, got, tc.want)
		}
	}
}

// TestCheckUnknownRestraintMasked: a rule with a restraint that does not
// hold does not hold, whatever its other restraints would say; one whose
// other restraints hold fails the check closed, even negated.
func TestCheckUnknownRestraintMasked(t *testing.T) {
	// attr_is is evaluated before attr_in: its unknown is masked only by
	// a later restraint that does not hold.
	g := mustCompile(t, `{"salt": "s", "rules": [
	  {"name": "r", "restraints": [
	     {"condition": {"attr_in": {"attr": "country", "values": ["US"]}}},
	     {"condition": {"attr_is": {"attr": "adult"}}, "negate": true}], "percent": 100},
	  {"name": "rest", "percent": 100}]}`, Options{})
	for _, tc := range []struct {
		u    Unit
		want string
	}{
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "DE"), StringAttr("adult", "no")}}, `pass rule 1 "rest"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), StringAttr("adult", "no")}}, `fail closed: rule "r": attribute "adult": got string "no", want a bool`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), BoolAttr("adult", false)}}, `pass rule 0 "r"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), BoolAttr("adult", true)}}, `pass rule 1 "rest"`},
	} {
		if got := decision(g.Check(tc.u)); got != tc.want {
			t.Errorf("Check(%+v)\n got %s\nwant %s", tc.u, got, tc.want)
		}
	}
}

func TestCheckOps(t *testing.T) {
	for _, tc := range []struct {
		op   string
		n    float64
		v    string
		want bool
	}{
		{"LT", 1, "1.0.0", true}, {"LT", 2, "2.0.0", false}, {"LE", 2, "2.0.0", true}, {"LE", 3, "3.0.0", false},
		{"EQ", 2, "2.0.0", true}, {"EQ", 1, "1.0.0", false}, {"NE", 1, "1.0.0", true}, {"NE", 2, "2.0.0+build", false},
		{"GE", 2, "2.0.0", true}, {"GE", 1, "2.0.0-rc.1", false}, {"GT", 3, "3.0.0", true}, {"GT", 2, "2.0.0", false},
	} {
		num := mustCompile(t, fmt.Sprintf(`{"salt": "s", "rules": [{"name": "r", "restraints": [
		  {"condition": {"number": {"attr": "n", "op": %q, "value": 2}}}], "percent": 100}]}`, tc.op), Options{})
		ver := mustCompile(t, fmt.Sprintf(`{"salt": "s", "rules": [{"name": "r", "restraints": [
		  {"condition": {"version": {"attr": "v", "op": %q, "value": "2.0.0"}}}], "percent": 100}]}`, tc.op), Options{})
		if got := num.Check(Unit{Attrs: []Attr{NumberAttr("n", tc.n)}}).Pass; got != tc.want {
			t.Errorf("%v %s 2: %v, want %v", tc.n, tc.op, got, tc.want)
		}
		if got := ver.Check(Unit{Attrs: []Attr{StringAttr("v", tc.v)}}).Pass; got != tc.want {
			t.Errorf("%s %s 2.0.0: %v, want %v", tc.v, tc.op, got, tc.want)
		}
	}
}

// TestCheckNeverPanics: an application's restraint that panics fails the
// check closed with the reason; other units are unaffected.
func TestCheckNeverPanics(t *testing.T) {
	g := mustCompile(t, `{"salt": "s", "rules": [
	  {"name": "risky", "restraints": [{"condition": {"attr_is": {"attr": "risky"}}}, {"condition": {"custom": {"name": "explodes"}}}], "percent": 100},
	  {"name": "rest", "percent": 50}]}`, testRestraints)
	d := g.Check(Unit{ID: "x", Attrs: []Attr{BoolAttr("risky", true)}})
	var re *RestraintError
	if got, want := decision(d), `fail closed: rule "risky": restraint "explodes": panic: boom`; got != want || !errors.As(d.Err, &re) || re.Name != "explodes" {
		t.Errorf("Check = %s, want %s", got, want)
	}
	if d := g.Check(Unit{ID: "x"}); d.Err != nil || d.Rule != 1 {
		t.Errorf("Check of another unit = %s", decision(d))
	}
}

// TestCheckLargeSets uses sets large enough to be maps.
func TestCheckLargeSets(t *testing.T) {
	ids := ""
	for i := range 50 {
		ids += fmt.Sprintf("%q, ", fmt.Sprint("id-", i))
	}
	g := mustCompile(t, `{"salt": "s", "rules": [{"name": "r", "restraints": [{"condition": {"unit_ids": [`+ids+`"last"]}}], "percent": 100}]}`, Options{})
	for id, want := range map[string]bool{"id-0": true, "id-49": true, "last": true, "id-50": false, "": false} {
		if got := g.Check(Unit{ID: id}).Pass; got != want {
			t.Errorf("Check(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	g := mustCompile(t, checkGate, testRestraints)
	u := Unit{ID: "user-1", Attrs: []Attr{StringAttr("country", "US"), StringAttr("app_version", "2.4.0"), BoolAttr("employee", false), StringAttr("ip", "192.0.2.1")}}
	if n := testing.AllocsPerRun(1000, func() { g.Check(u) }); n != 0 {
		t.Errorf("Check allocates %v times per run", n)
	}
}

func TestAnyAttr(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"x", `string "x"`}, {true, "bool true"}, {3, "number 3"}, {int64(-4), "number -4"}, {uint8(5), "number 5"},
		{float32(1.5), "number 1.5"}, {2.25, "number 2.25"}, {nil, "null"}, {map[string]any{}, "map[string]interface {}"},
	} {
		if got := AnyAttr("k", tc.v).describe(); got != tc.want {
			t.Errorf("AnyAttr(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func FuzzCompileCheck(f *testing.F) {
	f.Add([]byte(checkGate), "alice", "US", "2.4.0", 3.0, true)
	f.Add([]byte(`{"salt": "s", "rules": [{"name": "r", "percent": 50}]}`), "", "", "", 0.0, false)
	f.Fuzz(func(t *testing.T, data []byte, id, country, version string, friends float64, employee bool) {
		g, err := Compile(data, testRestraints)
		if err != nil {
			return
		}
		u := Unit{ID: id, Attrs: []Attr{StringAttr("country", country), StringAttr("app_version", version),
			NumberAttr("friends", friends), BoolAttr("employee", employee), StringAttr("ip", country)}}
		d := g.Check(u)
		if d.Err != nil && (d.Pass || d.Rule != -1) {
			t.Errorf("a failed check passes: %+v", d)
		}
		if d.Rule >= len(g.Rules()) {
			t.Errorf("rule %d of %d", d.Rule, len(g.Rules()))
		}
	})
}
