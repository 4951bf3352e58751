package gate

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cfg-dev/cfg/compiler"
)

// compileSource compiles source/feed/g.cconf holding src with the real
// compiler (and the schema, validators and helpers that ship with cfg) and
// returns its JSON, or its diagnostics (first lines only).
func compileSource(t *testing.T, src string, files ...string) ([]byte, string) {
	t.Helper()
	fsys := fstest.MapFS{"source/feed/g.cconf": {Data: []byte(src)}}
	for i := 0; i+1 < len(files); i += 2 {
		fsys[files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	out := compiler.New(fsys, compiler.Options{Jobs: 1}).Compile("source/feed/g.cconf")
	if len(out.Diags) > 0 {
		var msgs []string
		for _, d := range out.Diags {
			msgs = append(msgs, d.Error())
		}
		return nil, strings.Join(msgs, "\n")
	}
	if out.Type != Type {
		t.Fatalf("compiled a %s, want a %s", out.Type, Type)
	}
	return out.Data, ""
}

// TestHelpersRamp: the ramp helper makes the typical gate in one call, and
// the runtime reads what the compiler writes.
func TestHelpersRamp(t *testing.T) {
	data, diags := compileSource(t, `
load("@cfg//gate.cinc", "attr_in", "attr_is", "custom_restraint", "negate", "number", "population", "ramp", "version")

internal_network = custom_restraint("internal_network", params = ["cidr"])

export(ramp(
    salt = "feed/new_ranker",
    description = "the new feed ranker",
    percent = 10,
    deny = ["mallory"],
    allow = ["alice", "bob"],
    early = [attr_is("employee"), internal_network(cidr = "10.0.0.0/8"), negate(number("friends", "<", 1000)), population("beta-program", 0.5)],
    where = [attr_in("country", ["US", "CA"]), version("app_version", ">=", "2.3.0")],
))
`)
	if diags != "" {
		t.Fatal(diags)
	}
	g, err := Compile(data, testRestraints)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range g.Rules() {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, "; "), "deny; allow; employee; internal_network; not friends < 1000; 0.5 % of beta-program; ramp"; got != want {
		t.Errorf("rules %s, want %s", got, want)
	}
	// The same decisions as the gate written out by hand.
	hand := mustCompile(t, `{"salt": "feed/new_ranker", "rules": [
	  {"name": "deny", "restraints": [{"condition": {"unit_ids": ["mallory"]}}], "percent": 0},
	  {"name": "allow", "restraints": [{"condition": {"unit_ids": ["alice", "bob"]}}], "percent": 100},
	  {"name": "employees", "restraints": [{"condition": {"attr_is": {"attr": "employee"}}}], "percent": 100},
	  {"name": "office", "restraints": [{"condition": {"custom": {"name": "internal_network", "params": {"cidr": "10.0.0.0/8"}}}}], "percent": 100},
	  {"name": "power users", "restraints": [{"condition": {"number": {"attr": "friends", "op": "GE", "value": 1000}}}], "percent": 100},
	  {"name": "beta", "restraints": [{"condition": {"population": {"salt": "beta-program", "percent": 0.5}}}], "percent": 100},
	  {"name": "ramp", "restraints": [
	     {"condition": {"attr_in": {"attr": "country", "values": ["US", "CA"]}}},
	     {"condition": {"version": {"attr": "app_version", "op": "GE", "value": "2.3.0"}}}], "percent": 10}]}`, testRestraints)
	for i := range 2000 {
		u := Unit{ID: fmt.Sprintf("user-%d", i),
			Attrs: []Attr{StringAttr("country", []string{"US", "FR", "CA"}[i%3]), StringAttr("app_version", []string{"2.4.0", "2.2.9"}[i%2]),
				BoolAttr("employee", i%11 == 0), NumberAttr("friends", float64(i)), StringAttr("ip", []string{"10.0.0.1", "192.0.2.1"}[i%5/4])}}
		if i%13 == 0 {
			u.ID = "alice"
		}
		got, want := g.Check(u), hand.Check(u)
		if got.Pass != want.Pass || got.Err != nil || want.Err != nil {
			t.Fatalf("unit %+v: helper gate %s, hand-written gate %s", u, decision(got), decision(want))
		}
	}
}

// TestValidatorsAgreeWithRuntime: what the schema's validators refuse at
// compile time, with the error each reports; and that every gate they
// accept compiles in the runtime.
func TestValidatorsAgreeWithRuntime(t *testing.T) {
	for _, tc := range []struct {
		src, want string // want: "" if the gate compiles
	}{
		{`ramp(salt = "s", percent = 0.01)`, ""},
		{`ramp(salt = "s", percent = 100)`, ""},
		{`ramp(salt = "", percent = 1)`, `Gate: validator failed: salt must not be empty`},
		{`ramp(salt = "s", percent = 100.01)`, `Gate.rules[0]: validator failed: rule "ramp": percent must be in [0, 100], got 100.01`},
		{`ramp(salt = "s", percent = -1)`, `Gate.rules[0]: validator failed: rule "ramp": percent must be in [0, 100], got -1`},
		{`ramp(salt = "s", percent = 1.234)`, `Gate.rules[0]: validator failed: rule "ramp": percent must be a multiple of 0.01, got 1.234`},
		{`gate("s", [])`, `Gate: validator failed: a gate needs at least one rule`},
		{`gate("s", [rule("a"), rule("b")])`, `Gate: validator failed: rule "a" holds for every unit, so the rules after it ("b" first) can never decide`},
		{`gate("s", [rule("a", restraints = [unit_ids(["x"])]), rule("a")])`, `Gate: validator failed: two rules are named "a"`},
		{`gate("s", [rule("", 5)])`, `Gate.rules[0]: validator failed: a rule needs a name`},
		{`gate("s", [rule("a", restraints = [unit_ids([])])])`, `Gate.rules[0].restraints[0].condition: validator failed: unit_ids needs at least one ID`},
		{`gate("s", [rule("a", restraints = [unit_ids(["x", ""])])])`, `Gate.rules[0].restraints[0].condition: validator failed: unit_ids: an ID must not be empty`},
		{`gate("s", [rule("a", restraints = [attr_in("", ["x"])])])`, `Gate.rules[0].restraints[0].condition.attr_in: validator failed: attr must not be empty`},
		{`gate("s", [rule("a", restraints = [attr_in("c", [])])])`, `Gate.rules[0].restraints[0].condition.attr_in: validator failed: attr_in "c" needs at least one value`},
		{`gate("s", [rule("a", restraints = [version("v", ">=", "2.3")])])`, `Gate.rules[0].restraints[0].condition.version: validator failed: version "v": got "2.3", want a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD)`},
		{`gate("s", [rule("a", restraints = [version("v", ">=", "1.2.3-01")])])`, `Gate.rules[0].restraints[0].condition.version: validator failed: version "v": got "1.2.3-01", want a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD)`},
		{`gate("s", [rule("a", restraints = [version("v", ">=", "v1.2.3-rc.1+build.01")])])`, ""},
		{`gate("s", [rule("a", restraints = [version("v", "=>", "1.2.3")])])`, `fail: comparison "=>": want one of <, <=, ==, !=, >=, >`},
		{`gate("s", [rule("a", restraints = [population("", 5)])])`, `Gate.rules[0].restraints[0].condition.population: validator failed: population: salt must not be empty`},
		{`gate("s", [rule("a", restraints = [population("t", 0.001)])])`, `Gate.rules[0].restraints[0].condition.population: validator failed: population: percent must be a multiple of 0.01, got 0.001`},
		{`gate("s", [rule("a", restraints = [custom("in network", cidr = "x")])])`, `Gate.rules[0].restraints[0].condition.custom: validator failed: custom: name "in network": character " " not allowed (want letters, digits and _ - .)`},
		{`gate("s", [rule("a", restraints = [custom("net", cidr = 8)])])`, `fail: custom restraint "net": parameter "cidr": got int 8, want a string`},
		{`gate("s", [rule("a", restraints = [attr_in("n", ["1"]), number("n", ">", 0)])])`, `Gate: validator failed: attribute "n" is read as a number in rule "a", and as a string in rule "a": a unit cannot satisfy both`},
		{`gate("s", [rule("a", restraints = [attr_is("n")]), rule("b", restraints = [version("n", ">", "1.0.0")])])`, `Gate: validator failed: attribute "n" is read as a string in rule "b", and as a bool in rule "a": a unit cannot satisfy both`},
	} {
		src := `load("@cfg//gate.cinc", "attr_in", "attr_is", "custom", "gate", "number", "population", "ramp", "rule", "unit_ids", "version")
export(` + tc.src + ")\n"
		data, diags := compileSource(t, src)
		if tc.want == "" {
			if diags != "" {
				t.Errorf("%s: %s", tc.src, diags)
			} else if _, err := Compile(data, testRestraints); err != nil {
				t.Errorf("%s: the compiler accepts it, the runtime does not: %v", tc.src, err)
			}
			continue
		}
		first, _, _ := strings.Cut(diags, "\n")
		first = strings.TrimPrefix(first, "source/feed/g.cconf:")
		if _, msg, ok := strings.Cut(first, ": "); !ok || msg != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.src, diags, tc.want)
		}
	}
}

// TestHelpersRestraints: the restraints of @cfg//gate.cinc hold as the
// README's table says: attr_equals is one value of attr_in, attr_not_in
// its negation (so it holds when the attribute is missing), attr_is with
// False holds for a false attribute, number compares by each of its six
// operators, and a restraint declared with custom_restraint refuses a
// parameter it was not declared with when the gate compiles.
func TestHelpersRestraints(t *testing.T) {
	us, fr, none := []Attr{StringAttr("country", "US")}, []Attr{StringAttr("country", "FR")}, []Attr(nil)
	yes, no := []Attr{BoolAttr("beta", true)}, []Attr{BoolAttr("beta", false)}
	n := func(v float64) []Attr { return []Attr{NumberAttr("n", v)} }
	for _, tc := range []struct {
		restraint string
		holds     [][]Attr // units for which it holds
		not       [][]Attr // units for which it does not
	}{
		{`attr_equals("country", "US")`, [][]Attr{us}, [][]Attr{fr, none}},
		{`attr_not_in("country", ["US", "CA"])`, [][]Attr{fr, none}, [][]Attr{us}},
		{`attr_is("beta", False)`, [][]Attr{no}, [][]Attr{yes, none}},
		{`attr_is("beta")`, [][]Attr{yes}, [][]Attr{no, none}},
		{`number("n", "<", 2)`, [][]Attr{n(1)}, [][]Attr{n(2), n(3), none}},
		{`number("n", "<=", 2)`, [][]Attr{n(1), n(2)}, [][]Attr{n(3), none}},
		{`number("n", "==", 2)`, [][]Attr{n(2)}, [][]Attr{n(1), n(3), none}},
		{`number("n", "!=", 2)`, [][]Attr{n(1), n(3)}, [][]Attr{n(2), none}},
		{`number("n", ">=", 2)`, [][]Attr{n(2), n(3)}, [][]Attr{n(1), none}},
		{`number("n", ">", 2)`, [][]Attr{n(3)}, [][]Attr{n(1), n(2), none}},
	} {
		data, diags := compileSource(t, `load("@cfg//gate.cinc", "attr_equals", "attr_in", "attr_is", "attr_not_in", "gate", "number", "rule")
export(gate("s", [rule("r", restraints = [`+tc.restraint+`])]))
`)
		if diags != "" {
			t.Errorf("%s: %s", tc.restraint, diags)
			continue
		}
		g, err := Compile(data, Options{})
		if err != nil {
			t.Errorf("%s: %v", tc.restraint, err)
			continue
		}
		for want, units := range map[bool][][]Attr{true: tc.holds, false: tc.not} {
			for _, attrs := range units {
				if d := g.Check(Unit{ID: "u", Attrs: attrs}); d.Err != nil || d.Pass != want {
					t.Errorf("%s for %v: %s, want pass %v", tc.restraint, attrs, decision(d), want)
				}
			}
		}
	}
	_, diags := compileSource(t, `load("//lib/net.cinc", "internal_network")
load("@cfg//gate.cinc", "ramp")
export(ramp(salt = "s", percent = 1, early = [internal_network(cdir = "10.0.0.0/8")]))
`, "source/lib/net.cinc", `load("@cfg//gate.cinc", "custom_restraint")
internal_network = custom_restraint("internal_network", params = ["cidr"])
`)
	if want := `restraint "internal_network" has no parameter "cdir" (it has cidr)`; !strings.Contains(diags, want) {
		t.Errorf("a misspelt parameter: %q, want an error containing %q", diags, want)
	}
}
