package gate

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// cidr is an application's restraint for the tests: the unit's "ip"
// attribute is in params["cidr"].
func cidr(params map[string]string) (Restraint, error) {
	p, err := netip.ParsePrefix(params["cidr"])
	if err != nil {
		return nil, err
	}
	return func(u Unit) (bool, error) {
		a, ok := u.Attr("ip")
		if !ok {
			return false, nil
		}
		ip, err := netip.ParseAddr(a.Str())
		if err != nil {
			return false, fmt.Errorf("ip %q: %v", a.Str(), err)
		}
		return p.Contains(ip), nil
	}, nil
}

var testRestraints = Options{Restraints: map[string]NewRestraint{
	"internal_network": cidr,
	"explodes":         func(map[string]string) (Restraint, error) { return func(Unit) (bool, error) { panic("boom") }, nil },
	"broken":           func(map[string]string) (Restraint, error) { panic("no constructor today") },
	"nothing":          func(map[string]string) (Restraint, error) { return nil, nil },
}}

func TestCompileErrors(t *testing.T) {
	rule := func(restraint string) string {
		return `{"salt": "s", "rules": [{"name": "r", "restraints": [` + restraint + `], "percent": 10}]}`
	}
	for _, tc := range []struct {
		src, want string
	}{
		{`[]`, `not a Gate of @cfg//gate.thrift: json: cannot unmarshal array into Go value of type gate.jsonGate`},
		{`{"salt": "s", "rules": []} {}`, `not a Gate of @cfg//gate.thrift: data after the JSON value`},
		{`{"config": "demo/service", "phases": []}`, `not a Gate of @cfg//gate.thrift: json: unknown field "config"`},
		{`{"rules": []}`, `salt: missing`},
		{`{"salt": "", "rules": []}`, `salt: must not be empty`},
		{`{"salt": "s"}`, `rules: missing`},
		{`{"salt": "s", "rules": []}`, `rules: a gate needs at least one rule`},
		{`{"salt": "s", "rules": [{"percent": 1}]}`, `rules[0].name: missing`},
		{`{"salt": "s", "rules": [{"name": "", "percent": 1}]}`, `rules[0].name: a rule needs a name`},
		{`{"salt": "s", "rules": [{"name": "a"}]}`, `rules[0].percent: missing`},
		{`{"salt": "s", "rules": [{"name": "a", "percent": 100.5}]}`, `rules[0].percent: got 100.5, want a percentage in [0, 100]`},
		{`{"salt": "s", "rules": [{"name": "a", "percent": -1}]}`, `rules[0].percent: got -1, want a percentage in [0, 100]`},
		{`{"salt": "s", "rules": [{"name": "a", "percent": 0.005}]}`, `rules[0].percent: got 0.005, want a multiple of 0.01`},
		{`{"salt": "s", "rules": [{"name": "a", "percent": "10"}]}`, `not a Gate of @cfg//gate.thrift: json: cannot unmarshal string into Go struct field jsonRule.rules.percent of type float64`},
		{`{"salt": "s", "rules": [{"name": "a", "percent": 1}, {"name": "a", "percent": 2}]}`, `rules[0].restraints: rule "a" holds for every unit, so the rules after it ("a" first) can never decide`},
		{`{"salt": "s", "rules": [{"name": "a", "restraints": [{"condition": {"unit_ids": ["x"]}}], "percent": 1}, {"name": "a", "percent": 2}]}`, `rules[1].name: two rules are named "a"`},
		{`{"salt": "s", "rules": [{"name": "all", "percent": 1}, {"name": "b", "percent": 2}]}`, `rules[0].restraints: rule "all" holds for every unit, so the rules after it ("b" first) can never decide`},
		{rule(`{}`), `rules[0].restraints[0].condition: missing`},
		{rule(`{"condition": {}}`), `rules[0].restraints[0].condition: got 0 members (), want one`},
		{rule(`{"condition": {"unit_ids": ["a"], "attr_is": {"attr": "x"}}}`), `rules[0].restraints[0].condition: got 2 members (attr_is, unit_ids), want one`},
		{rule(`{"condition": {"unit_ids": []}}`), `rules[0].restraints[0].condition.unit_ids: needs at least one value`},
		{rule(`{"condition": {"unit_ids": ["a", ""]}}`), `rules[0].restraints[0].condition.unit_ids: an ID must not be empty`},
		{rule(`{"condition": {"attr_in": {"attr": "", "values": ["x"]}}}`), `rules[0].restraints[0].condition.attr_in.attr: must not be empty`},
		{rule(`{"condition": {"attr_in": {"attr": "country", "values": []}}}`), `rules[0].restraints[0].condition.attr_in.values: needs at least one value`},
		{rule(`{"condition": {"number": {"attr": "n", "op": "GTE", "value": 1}}}`), `rules[0].restraints[0].condition.number.op: got "GTE", want one of LT, LE, EQ, NE, GE, GT`},
		{rule(`{"condition": {"number": {"attr": "n", "op": "GE"}}}`), `rules[0].restraints[0].condition.number.value: missing`},
		{rule(`{"condition": {"version": {"attr": "v", "op": "GE", "value": "2.3"}}}`), `rules[0].restraints[0].condition.version.value: got "2.3", want a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD)`},
		{rule(`{"condition": {"population": {"salt": "", "percent": 5}}}`), `rules[0].restraints[0].condition.population.salt: must not be empty`},
		{rule(`{"condition": {"population": {"salt": "x", "percent": 500}}}`), `rules[0].restraints[0].condition.population.percent: got 500, want a percentage in [0, 100]`},
		{rule(`{"condition": {"attr_in": {"attr": "n", "values": ["1"]}}}, {"condition": {"number": {"attr": "n", "op": "GE", "value": 1}}}`),
			`rules[0].restraints[1].condition.number.attr: attribute "n" is read as a number here, and as a string at rules[0].restraints[0].condition.attr_in: a unit cannot satisfy both`},
		{rule(`{"condition": {"custom": {"name": "internal_netwrk", "params": {"cidr": "10.0.0.0/8"}}}}`),
			`rules[0].restraints[0].condition.custom.name: restraint "internal_netwrk" is not registered by this application (did you mean "internal_network"?) (registered: broken, explodes, internal_network, nothing)`},
		{rule(`{"condition": {"custom": {"name": "internal_network", "params": {"cidr": "10.0.0.0/33"}}}}`),
			`rules[0].restraints[0].condition.custom.params: restraint "internal_network": netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{rule(`{"condition": {"custom": {"name": "broken"}}}`), `rules[0].restraints[0].condition.custom.params: restraint "broken": panic: no constructor today`},
		{rule(`{"condition": {"custom": {"name": "nothing"}}}`), `rules[0].restraints[0].condition.custom: restraint "nothing": its constructor returned no restraint`},
	} {
		_, err := Compile([]byte(tc.src), testRestraints)
		var ce *CompileError
		if err == nil || err.Error() != tc.want || !errors.As(err, &ce) {
			t.Errorf("Compile(%s):\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
	_, err := Compile([]byte(rule(`{"condition": {"custom": {"name": "x"}}}`)), Options{})
	if want := `rules[0].restraints[0].condition.custom.name: restraint "x" is not registered by this application (registered: none)`; err == nil || err.Error() != want {
		t.Errorf("without restraints: %v, want %s", err, want)
	}
	// A name the schema's validator refuses is refused here too, even
	// when the application registers it.
	holds := func(map[string]string) (Restraint, error) { return func(Unit) (bool, error) { return true, nil }, nil }
	for name, want := range map[string]string{
		"in network": `rules[0].restraints[0].condition.custom.name: name "in network": character " " not allowed (want letters, digits and _ - .)`,
		"net/in":     `rules[0].restraints[0].condition.custom.name: name "net/in": character "/" not allowed (want letters, digits and _ - .)`,
		"réseau":     `rules[0].restraints[0].condition.custom.name: name "réseau": character "é" not allowed (want letters, digits and _ - .)`,
		"":           `rules[0].restraints[0].condition.custom.name: must not be empty`,
	} {
		src := rule(fmt.Sprintf(`{"condition": {"custom": {"name": %q}}}`, name))
		_, err := Compile([]byte(src), Options{Restraints: map[string]NewRestraint{name: holds}})
		var ce *CompileError
		if err == nil || err.Error() != want || !errors.As(err, &ce) {
			t.Errorf("Compile(%s) with %q registered:\n got %v\nwant %s", src, name, err, want)
		}
	}
	if _, err := Compile([]byte(rule(`{"condition": {"custom": {"name": "net-v4_in.office2"}}}`)), Options{Restraints: map[string]NewRestraint{"net-v4_in.office2": holds}}); err != nil {
		t.Errorf("a name of letters, digits and _ - .: %v", err)
	}
}

func TestCompileDescribes(t *testing.T) {
	g := mustCompile(t, `{"salt": "feed/x", "description": "the new ranker", "rules": [
		{"name": "early", "restraints": [{"condition": {"attr_is": {"attr": "employee", "value": true}}},
		                                 {"condition": {"version": {"attr": "app_version", "op": "GE", "value": "2.3.0"}}}], "percent": 100},
		{"name": "ramp", "restraints": [{"condition": {"number": {"attr": "friends", "op": "GT", "value": 3}}}], "percent": 12.5}]}`, Options{})
	if g.Salt() != "feed/x" || g.Description() != "the new ranker" {
		t.Errorf("salt %q, description %q", g.Salt(), g.Description())
	}
	if got, want := fmt.Sprint(g.Rules()), "[{early 100 2} {ramp 12.5 1}]"; got != want {
		t.Errorf("Rules() = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(g.AttrKinds()), "map[app_version:string employee:bool friends:number]"; got != want {
		t.Errorf("AttrKinds() = %s, want %s", got, want)
	}
	if !strings.Contains(fmt.Sprint(GE), ">=") {
		t.Errorf("GE prints as %s", GE)
	}
}

func TestCustomNames(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`{"salt": "s", "rules": [
			{"name": "a", "restraints": [{"condition": {"custom": {"name": "office"}}}, {"condition": {"custom": {"name": "beta"}}}], "percent": 100},
			{"name": "b", "restraints": [{"condition": {"custom": {"name": "office"}}, "negate": true}, {"condition": {"unit_ids": ["x"]}}], "percent": 5}]}`, "[beta office]"},
		{`{"salt": "s", "rules": [{"name": "a", "restraints": [{}], "percent": 1}]}`, "[]"},
		{`[1, 2]`, "[]"},
	} {
		if got := fmt.Sprint(CustomNames([]byte(tc.src))); got != tc.want {
			t.Errorf("CustomNames(%s) = %s, want %s", tc.src, got, tc.want)
		}
	}
}
