package gate

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckSharedConditions: a condition restrained by several rules is
// evaluated once per check, and each rule applies its own negation to it;
// so is one that could not be evaluated, failing the first rule it decides.
func TestCheckSharedConditions(t *testing.T) {
	g := mustCompile(t, `{"salt": "s", "rules": [
	  {"name": "not US, adult", "restraints": [
	     {"condition": {"attr_in": {"attr": "country", "values": ["US"]}}, "negate": true},
	     {"condition": {"attr_is": {"attr": "adult"}}}], "percent": 100},
	  {"name": "US, new app", "restraints": [
	     {"condition": {"attr_in": {"attr": "country", "values": ["US"]}}},
	     {"condition": {"version": {"attr": "app", "op": "GE", "value": "2.0.0"}}}], "percent": 100},
	  {"name": "US, old app", "restraints": [
	     {"condition": {"version": {"attr": "app", "op": "GE", "value": "2.0.0"}}, "negate": true},
	     {"condition": {"attr_in": {"attr": "country", "values": ["US"]}}}], "percent": 0},
	  {"name": "adult", "restraints": [{"condition": {"attr_is": {"attr": "adult"}}}], "percent": 100}]}`, Options{})
	if n := len(g.conds); n != 3 {
		t.Errorf("%d conditions, want 3", n)
	}
	for _, tc := range []struct {
		u    Unit
		want string
	}{
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "FR"), BoolAttr("adult", true)}}, `pass rule 0 "not US, adult"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "FR"), BoolAttr("adult", false)}}, `fail no rule`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), StringAttr("app", "2.1.0")}}, `pass rule 1 "US, new app"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), StringAttr("app", "1.9.0")}}, `fail rule 2 "US, old app"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), StringAttr("app", "1.9.0"), BoolAttr("adult", true)}}, `fail rule 2 "US, old app"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "DE"), StringAttr("app", "1.9.0"), BoolAttr("adult", true)}}, `pass rule 0 "not US, adult"`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), StringAttr("app", "2.x")}}, `fail closed: rule "US, new app": attribute "app": got string "2.x", want a semantic version`},
		{Unit{ID: "x", Attrs: []Attr{StringAttr("country", "US"), BoolAttr("adult", true)}}, `fail rule 2 "US, old app"`}, // no app: not >= 2.0.0
		{Unit{ID: "x", Attrs: []Attr{StringAttr("app", "1.0.0"), BoolAttr("adult", true)}}, `pass rule 0 "not US, adult"`},
		{Unit{ID: "x", Attrs: []Attr{NumberAttr("country", 3), BoolAttr("adult", true)}}, `fail closed: rule "not US, adult": attribute "country": got number 3, want a string`},
	} {
		if got := decision(g.Check(tc.u)); got != tc.want {
			t.Errorf("Check(%+v)\n got %s\nwant %s", tc.u, got, tc.want)
		}
	}
}

// TestCheckApplicationRestraintsNotShared: an application's restraint named
// with the same parameters by two rules is called by each (it may not be a
// function of the unit alone).
func TestCheckApplicationRestraintsNotShared(t *testing.T) {
	calls := 0
	opts := Options{Restraints: map[string]NewRestraint{"second_call": func(map[string]string) (Restraint, error) {
		return func(Unit) (bool, error) { calls++; return calls%2 == 0, nil }, nil
	}}}
	g := mustCompile(t, `{"salt": "s", "rules": [
	  {"name": "a", "restraints": [{"condition": {"custom": {"name": "second_call"}}}], "percent": 100},
	  {"name": "b", "restraints": [{"condition": {"custom": {"name": "second_call"}}}], "percent": 100}]}`, opts)
	if got, want := decision(g.Check(Unit{ID: "x"})), `pass rule 1 "b"`; got != want || calls != 2 {
		t.Errorf("Check = %s after %d calls, want %s after 2", got, calls, want)
	}
}

// TestCheckManyAttributesAndConditions: a gate reading more attributes than
// a check finds in one pass (maxSlots), some with keys longer than
// maxKeyLen, and with more conditions than a check remembers (maxMemo),
// decides as one reading few.
func TestCheckManyAttributesAndConditions(t *testing.T) {
	var rules []string
	var attrs []Attr
	key := func(i int) string {
		if i%5 == 4 {
			return fmt.Sprintf("attribute-%02d-%s", i, strings.Repeat("x", maxKeyLen))
		}
		return fmt.Sprintf("a%d", i)
	}
	const n = maxMemo + 10
	for i := range n {
		// Rule i holds for a unit whose attribute i%20 is "v<i>" (and whose
		// number attribute i%20 is i).
		rules = append(rules, fmt.Sprintf(`{"name": "r%d", "restraints": [
		  {"condition": {"attr_in": {"attr": %q, "values": ["v%d"]}}},
		  {"condition": {"number": {"attr": "n%d", "op": "EQ", "value": %d}}}], "percent": 100}`, i, key(i%20), i, i%20, i))
	}
	g := mustCompile(t, `{"salt": "s", "rules": [`+strings.Join(rules, ",")+`]}`, Options{})
	for _, i := range []int{0, 3, 4, 19, 20, 44, n - 1} {
		attrs = attrs[:0]
		for j := range 20 {
			attrs = append(attrs, StringAttr(key(j), "other"), NumberAttr(fmt.Sprintf("n%d", j), -1))
		}
		attrs = append(attrs, StringAttr(key(i%20), "first counts"))
		attrs[2*(i%20)] = StringAttr(key(i%20), fmt.Sprint("v", i))
		attrs[2*(i%20)+1] = NumberAttr(fmt.Sprintf("n%d", i%20), float64(i))
		if got, want := decision(g.Check(Unit{ID: "x", Attrs: attrs})), fmt.Sprintf(`pass rule %d "r%d"`, i, i); got != want {
			t.Errorf("unit for rule %d: %s, want %s", i, got, want)
		}
	}
}

// TestCheckVersionsWithAndWithoutSlot: a version attribute without a slot
// (the gate reads more than maxSlots attributes), compared after a version
// attribute with one was parsed, does not take that one's place in a
// condition beyond maxMemo on it.
func TestCheckVersionsWithAndWithoutSlot(t *testing.T) {
	// Rule "numbers": 62 conditions on the attributes n0 to n14 (slots 0
	// to 14), none held; "old": app (slot 15) below 0.0.1, the condition
	// numbered 62, not held; "new": v (no slot) at least 1.0.0 (63) and
	// app at least 5.0.0 (64, beyond maxMemo).
	var nums []string
	for i := range 62 {
		nums = append(nums, fmt.Sprintf(`{"condition": {"number": {"attr": "n%d", "op": "EQ", "value": %d}}}`, i%15, i))
	}
	g := mustCompile(t, `{"salt": "s", "rules": [
	  {"name": "numbers", "restraints": [`+strings.Join(nums, ",")+`], "percent": 100},
	  {"name": "old", "restraints": [{"condition": {"version": {"attr": "app", "op": "LT", "value": "0.0.1"}}}], "percent": 100},
	  {"name": "new", "restraints": [
	    {"condition": {"version": {"attr": "v", "op": "GE", "value": "1.0.0"}}},
	    {"condition": {"version": {"attr": "app", "op": "GE", "value": "5.0.0"}}}], "percent": 100}]}`, Options{})
	if len(g.conds) != 65 || g.conds[64].attr != "app" || g.conds[63].slot >= 0 {
		t.Fatalf("conditions: %d, the last on %q, the one before with slot %d", len(g.conds), g.conds[len(g.conds)-1].attr, g.conds[63].slot)
	}
	for _, tc := range []struct {
		app, v, want string
	}{
		{"1.0.0", "9.0.0", `fail no rule`},
		{"6.0.0", "9.0.0", `pass rule 2 "new"`},
		{"6.0.0", "0.9.0", `fail no rule`},
	} {
		u := Unit{ID: "x", Attrs: []Attr{StringAttr("app", tc.app), StringAttr("v", tc.v)}}
		if got := decision(g.Check(u)); got != tc.want {
			t.Errorf("app %s, v %s: %s, want %s", tc.app, tc.v, got, tc.want)
		}
		if got := decision(g.CheckPrepared(Prepare(u))); got != tc.want {
			t.Errorf("prepared, app %s, v %s: %s, want %s", tc.app, tc.v, got, tc.want)
		}
	}
}
