package gate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/diag"
)

// Restraint is an application's own restraint: it reports whether it holds
// for the unit. An error fails the check closed, with the error as the
// reason; so does a panic.
type Restraint func(u Unit) (bool, error)

// NewRestraint makes the Restraint a gate asks for by name, with the
// gate's parameters; an error (a parameter missing or malformed) stops the
// gate from loading, with the error as the reason.
type NewRestraint func(params map[string]string) (Restraint, error)

// Options configure Compile.
type Options struct {
	// Restraints are the application's restraints, by the name gates use
	// (Custom.name). A gate naming one that is not here does not compile.
	Restraints map[string]NewRestraint
}

// CompileError is a gate that cannot be evaluated: Field is where in the
// gate's JSON ("rules[2].restraints[0].condition.version.value").
type CompileError struct {
	Field string
	Msg   string
}

func (e *CompileError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Gate is a gate compiled for evaluation. It is immutable and safe for
// concurrent use.
type Gate struct {
	salt        string
	description string
	pre         prefix
	rules       []rule
	conds       []restraint // the distinct conditions of the rules' restraints
	attrs       map[string]Kind
	// keys are the attributes with a slot, by slot (slots 0 to nkeys-1);
	// byLen[n] has bit s set when keys[s] has n bytes (keys of up to
	// maxKeyLen bytes have slots).
	keys  [maxSlots]word
	nkeys int
	// ids are the keys' interned numbers (prepared.go), by slot.
	ids   [maxSlots]uint32
	byLen [maxKeyLen + 1]uint16
	// attrConds are the conditions below maxMemo on attributes with a
	// slot, in order, which a check evaluates once it has found the
	// attributes in the unit (env.scan); scanned is all of them, one bit
	// each.
	attrConds []attrCond
	scanned   uint64
	// samples says a rule samples (its percentage is neither 0 nor 100).
	samples bool
	// verCond is the first of them that compares versions, or -1.
	verCond int
}

type rule struct {
	name       string
	restraints []ref // cheapest first
	buckets    int   // percent * 100
	// The rule's conditions below maxMemo, one bit each (bit c for
	// Gate.conds[c]): need has those it restrains by, want those of them
	// it restrains by unnegated, both those it restrains by both ways. A
	// check evaluates them in the order of their bits, which is the order
	// of their cost (Gate.conds is sorted so), and remembers their values.
	need, want, both uint64
	// extra are its restraints by conditions from maxMemo on, in order:
	// evaluated after the others (they cost as much or more), every time
	// the rule is reached.
	extra []ref
}

// attrCond is a condition on an attribute with a slot (Gate.conds[c], x),
// with what a check reads of it first, together.
type attrCond struct {
	bit      uint64 // 1 << c
	kind     condKind
	attrKind Kind
	slot     uint8
	outcomes uint8
	num      float64
	x        *restraint
}

// ref is a restraint of a rule: a condition of the gate (Gate.conds),
// possibly negated. Rules that restrain by the same condition share it, and
// a check evaluates it once.
type ref struct {
	x      *restraint // &Gate.conds[cond]
	bit    uint64     // 1 << cond, 0 for conditions from maxMemo on
	cond   int
	kind   condKind
	negate bool
}

// condKind is a restraint's condition: first those that read an
// attribute (up to condVersion).
type condKind uint8

const (
	condAttrIs condKind = iota
	condAttrIn
	condNumber
	condVersion
	condUnitIDs
	condPopulation
	condCustom
)

// cost orders the kinds of conditions as a rule evaluates them, cheapest
// first: boolean, set and number tests, unit IDs, versions, populations,
// the application's restraints.
func (k condKind) cost() int {
	return [...]int{condAttrIs: 0, condAttrIn: 1, condNumber: 2, condUnitIDs: 3, condVersion: 4, condPopulation: 5, condCustom: 6}[k]
}

// Op compares an attribute with a value (Op in gate.thrift).
type Op uint8

// Comparison operators.
const (
	LT Op = iota + 1
	LE
	EQ
	NE
	GE
	GT
)

var opNames = map[string]Op{"LT": LT, "LE": LE, "EQ": EQ, "NE": NE, "GE": GE, "GT": GT}

func (o Op) String() string {
	return [...]string{"?", "<", "<=", "==", "!=", ">=", ">"}[o]
}

// smallSet is the size up to which a set of strings is searched linearly.
const smallSet = 8

type restraint struct {
	// What every check reads first, together.
	kind condKind
	op   Op
	// outcomes has bit c+1 set when op holds for the result c (-1, 0, 1)
	// of comparing attribute and value (number, version).
	outcomes uint8
	attrKind Kind    // the kind of value its attribute must have
	slot     int     // the attribute's slot in env.at, or -1
	num      float64 // number: the value; attr_is: 1 for true
	strs     []word  // attr_in, unit_ids: up to smallSet values
	attr     string
	key      word // attr, to look it up by

	set     map[string]struct{} // attr_in, unit_ids: more than smallSet
	ver     version             // version
	buckets int                 // population
	pre     prefix              // population: its salt
	custom  Restraint
	name    string // custom
}

// maxSlots is how many attributes of a gate a check finds in the unit in
// one pass, and maxKeyLen how long their keys can be; restraints reading
// others look them up every time.
const (
	maxSlots  = 16
	maxKeyLen = 63
)

// JSON as the compiler writes a Gate (stdlib/gate.thrift).
type (
	jsonGate struct {
		Salt        *string    `json:"salt"`
		Rules       []jsonRule `json:"rules"`
		Description string     `json:"description"`
	}
	jsonRule struct {
		Name       *string         `json:"name"`
		Restraints []jsonRestraint `json:"restraints"`
		Percent    *float64        `json:"percent"`
	}
	jsonRestraint struct {
		Condition *jsonCondition `json:"condition"`
		Negate    bool           `json:"negate"`
	}
	jsonCondition struct {
		UnitIDs *[]string `json:"unit_ids"`
		AttrIn  *struct {
			Attr   string   `json:"attr"`
			Values []string `json:"values"`
		} `json:"attr_in"`
		AttrIs *struct {
			Attr  string `json:"attr"`
			Value *bool  `json:"value"`
		} `json:"attr_is"`
		Number *struct {
			Attr  string   `json:"attr"`
			Op    string   `json:"op"`
			Value *float64 `json:"value"`
		} `json:"number"`
		Version *struct {
			Attr  string `json:"attr"`
			Op    string `json:"op"`
			Value string `json:"value"`
		} `json:"version"`
		Population *struct {
			Salt    string   `json:"salt"`
			Percent *float64 `json:"percent"`
		} `json:"population"`
		Custom *struct {
			Name   string            `json:"name"`
			Params map[string]string `json:"params"`
		} `json:"custom"`
	}
)

// Compile compiles a gate from its JSON, as the compiler writes a Gate of
// @cfg//gate.thrift, checking what the schema's validators check (so a gate
// from anywhere else is held to the same rules) and that every custom
// restraint it names is in opts.Restraints and accepts its parameters.
func Compile(data []byte, opts Options) (*Gate, error) {
	var jg jsonGate
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jg); err != nil {
		return nil, &CompileError{Msg: "not a Gate of @cfg//gate.thrift: " + err.Error()}
	}
	if dec.More() {
		return nil, &CompileError{Msg: "not a Gate of @cfg//gate.thrift: data after the JSON value"}
	}
	c := gateCompiler{opts: opts, attrs: map[string]Kind{}, attrAt: map[string]string{}, slots: map[string]int{}, conds: map[string]int{}}
	g := c.gate(&jg)
	if c.err != nil {
		return nil, c.err
	}
	// Only gates that compile number their keys.
	for s := range g.nkeys {
		g.ids[s] = registry.intern(g.keys[s].s)
	}
	return g, nil
}

type gateCompiler struct {
	opts   Options
	err    *CompileError
	attrs  map[string]Kind   // how each attribute is read
	attrAt map[string]string // where it was first read so
	slots  map[string]int    // each attribute's slot
	keys   []word            // by slot
	conds  map[string]int    // the index of each condition in Gate.conds, by its JSON
}

func (c *gateCompiler) fail(field, format string, args ...any) {
	if c.err == nil {
		c.err = &CompileError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
}

func (c *gateCompiler) gate(jg *jsonGate) *Gate {
	switch {
	case jg.Salt == nil:
		c.fail("salt", "missing")
	case *jg.Salt == "":
		c.fail("salt", "must not be empty")
	case jg.Rules == nil:
		c.fail("rules", "missing")
	case len(jg.Rules) == 0:
		c.fail("rules", "a gate needs at least one rule")
	}
	if c.err != nil {
		return nil
	}
	g := &Gate{salt: *jg.Salt, description: jg.Description, pre: newPrefix(*jg.Salt), attrs: c.attrs}
	names := map[string]bool{}
	for i := range jg.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		jr := &jg.Rules[i]
		r := rule{}
		switch {
		case jr.Name == nil:
			c.fail(field+".name", "missing")
		case *jr.Name == "":
			c.fail(field+".name", "a rule needs a name")
		case names[*jr.Name]:
			c.fail(field+".name", "two rules are named %q", *jr.Name)
		case jr.Percent == nil:
			c.fail(field+".percent", "missing")
		default:
			r.name = *jr.Name
			names[r.name] = true
			r.buckets = c.percent(field+".percent", *jr.Percent)
		}
		if len(jr.Restraints) == 0 && i < len(jg.Rules)-1 && jr.Name != nil && jg.Rules[i+1].Name != nil {
			c.fail(field+".restraints", "rule %q holds for every unit, so the rules after it (%q first) can never decide", r.name, *jg.Rules[i+1].Name)
		}
		for j := range jr.Restraints {
			jx := &jr.Restraints[j]
			x := c.restraint(fmt.Sprintf("%s.restraints[%d]", field, j), jx)
			r.restraints = append(r.restraints, ref{cond: c.cond(g, x, jx.Condition), kind: x.kind, negate: jx.Negate})
		}
		slices.SortStableFunc(r.restraints, func(a, b ref) int { return a.kind.cost() - b.kind.cost() })
		g.rules = append(g.rules, r)
		g.samples = g.samples || r.buckets != 0 && r.buckets != Buckets
	}
	g.nkeys = copy(g.keys[:], c.keys)
	for s, k := range c.keys {
		g.byLen[len(k.s)] |= 1 << s
	}
	g.numberConds()
	return g
}

// numberConds sorts the gate's conditions by cost (stably: an application's
// restraints stay in the order the gate names them) and sets each rule's
// bits and extra restraints. So a rule evaluating its conditions in the
// order of their numbers evaluates them cheapest first, and its
// application's restraints last, in its order.
func (g *Gate) numberConds() {
	order := make([]int, len(g.conds)) // old numbers, by new number
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return g.conds[a].kind.cost() - g.conds[b].kind.cost() })
	conds := make([]restraint, len(g.conds))
	number := make([]int, len(g.conds)) // new numbers, by old number
	for i, old := range order {
		conds[i] = g.conds[old]
		number[old] = i
	}
	g.conds = conds
	g.verCond = -1
	for c := range min(len(conds), maxMemo) {
		if x := &conds[c]; x.kind <= condVersion && x.slot >= 0 {
			g.attrConds = append(g.attrConds, attrCond{bit: 1 << c, kind: x.kind, attrKind: x.attrKind, slot: uint8(x.slot), outcomes: x.outcomes, num: x.num, x: x})
			g.scanned |= 1 << c
			if x.kind == condVersion && g.verCond < 0 {
				g.verCond = c
			}
		}
	}
	for i := range g.rules {
		r := &g.rules[i]
		var pos, neg uint64
		for j := range r.restraints {
			rf := &r.restraints[j]
			rf.cond = number[rf.cond]
			rf.x = &g.conds[rf.cond]
			if rf.cond >= maxMemo {
				r.extra = append(r.extra, *rf)
				continue
			}
			rf.bit = 1 << rf.cond
			if rf.negate {
				neg |= rf.bit
			} else {
				pos |= rf.bit
			}
		}
		r.need, r.want, r.both = pos|neg, pos, pos&neg
	}
}

// cond returns the index in g.conds of the condition x, compiled from jc:
// the index of the same condition met before, if any (an application's
// restraint is never taken for the same as another: it may not be a
// function of the unit alone).
func (c *gateCompiler) cond(g *Gate, x restraint, jc *jsonCondition) int {
	var key string
	if b, err := json.Marshal(jc); err == nil && x.kind != condCustom {
		key = string(b)
		if i, ok := c.conds[key]; ok {
			return i
		}
		c.conds[key] = len(g.conds)
	}
	g.conds = append(g.conds, x)
	return len(g.conds) - 1
}

// percent converts a percentage to buckets: it must be in [0, 100] and a
// multiple of 0.01.
func (c *gateCompiler) percent(field string, p float64) int {
	x := p * 100
	n := math.Round(x)
	switch {
	case !(p >= 0 && p <= 100):
		c.fail(field, "got %v, want a percentage in [0, 100]", p)
	case math.Abs(x-n) > 1e-6:
		c.fail(field, "got %v, want a multiple of 0.01", p)
	}
	return int(n)
}

func (c *gateCompiler) readAs(field string, r *restraint, k Kind) {
	attr := r.attr
	r.attrKind = k
	r.key = newWord(attr)
	r.slot = -1
	if s, ok := c.slots[attr]; ok {
		r.slot = s
	} else if len(c.keys) < maxSlots && len(attr) <= maxKeyLen && attr != "" {
		r.slot = len(c.keys)
		c.slots[attr] = r.slot
		c.keys = append(c.keys, r.key)
	}
	if attr == "" {
		c.fail(field+".attr", "must not be empty")
		return
	}
	if prev, ok := c.attrs[attr]; ok && prev != k {
		c.fail(field+".attr", "attribute %q is read as a %s here, and as a %s at %s: a unit cannot satisfy both", attr, k, prev, c.attrAt[attr])
		return
	}
	if _, ok := c.attrs[attr]; !ok {
		c.attrs[attr] = k
		c.attrAt[attr] = field
	}
}

// op sets r's comparison to the one named name.
func (c *gateCompiler) op(field, name string, r *restraint) {
	op, ok := opNames[name]
	if !ok {
		c.fail(field, "got %q, want one of LT, LE, EQ, NE, GE, GT", name)
	}
	r.op = op
	for cmp := -1; cmp <= 1; cmp++ {
		if compare(op, cmp) {
			r.outcomes |= 1 << (cmp + 1)
		}
	}
}

func (c *gateCompiler) restraint(field string, jr *jsonRestraint) restraint {
	r := restraint{slot: -1}
	jc := jr.Condition
	if jc == nil {
		c.fail(field+".condition", "missing")
		return r
	}
	field += ".condition"
	var set []string
	for name, isSet := range map[string]bool{
		"unit_ids": jc.UnitIDs != nil, "attr_in": jc.AttrIn != nil, "attr_is": jc.AttrIs != nil, "number": jc.Number != nil,
		"version": jc.Version != nil, "population": jc.Population != nil, "custom": jc.Custom != nil,
	} {
		if isSet {
			set = append(set, name)
		}
	}
	if len(set) != 1 {
		slices.Sort(set)
		c.fail(field, "got %d members (%s), want one", len(set), strings.Join(set, ", "))
		return r
	}
	switch {
	case jc.UnitIDs != nil:
		r.kind = condUnitIDs
		c.strings(field+".unit_ids", *jc.UnitIDs, &r)
	case jc.AttrIn != nil:
		r.kind, r.attr = condAttrIn, jc.AttrIn.Attr
		c.readAs(field+".attr_in", &r, String)
		c.strings(field+".attr_in.values", jc.AttrIn.Values, &r)
	case jc.AttrIs != nil:
		r.kind, r.attr = condAttrIs, jc.AttrIs.Attr
		c.readAs(field+".attr_is", &r, Bool)
		if jc.AttrIs.Value == nil || *jc.AttrIs.Value {
			r.num = 1
		}
	case jc.Number != nil:
		r.kind, r.attr = condNumber, jc.Number.Attr
		c.readAs(field+".number", &r, Number)
		c.op(field+".number.op", jc.Number.Op, &r)
		if jc.Number.Value == nil {
			c.fail(field+".number.value", "missing")
		} else {
			r.num = *jc.Number.Value
		}
	case jc.Version != nil:
		r.kind, r.attr = condVersion, jc.Version.Attr
		c.readAs(field+".version", &r, String)
		c.op(field+".version.op", jc.Version.Op, &r)
		v, ok := parseVersion(jc.Version.Value)
		if !ok {
			c.fail(field+".version.value", "got %q, want a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD)", jc.Version.Value)
		}
		// The pre-release must not keep the JSON text alive.
		v.pre = strings.Clone(v.pre)
		r.ver = v
	case jc.Population != nil:
		r.kind = condPopulation
		if jc.Population.Salt == "" {
			c.fail(field+".population.salt", "must not be empty")
		}
		r.pre = newPrefix(jc.Population.Salt)
		if jc.Population.Percent == nil {
			c.fail(field+".population.percent", "missing")
		} else {
			r.buckets = c.percent(field+".population.percent", *jc.Population.Percent)
		}
	case jc.Custom != nil:
		r.kind, r.name = condCustom, jc.Custom.Name
		if msg := checkRestraintName(r.name); msg != "" {
			c.fail(field+".custom.name", "%s", msg)
			return r
		}
		newR, ok := c.opts.Restraints[r.name]
		if !ok {
			known := slices.Sorted(maps.Keys(c.opts.Restraints))
			list := "none"
			if len(known) > 0 {
				list = strings.Join(known, ", ")
			}
			c.fail(field+".custom.name", "restraint %q is not registered by this application%s (registered: %s)", r.name, diag.DidYouMean(r.name, known), list)
			return r
		}
		params := jc.Custom.Params
		if params == nil {
			params = map[string]string{}
		}
		fn, err := newRestraint(newR, params)
		if err != nil {
			c.fail(field+".custom.params", "restraint %q: %v", r.name, err)
		} else if fn == nil {
			c.fail(field+".custom", "restraint %q: its constructor returned no restraint", r.name)
		}
		r.custom = fn
	}
	return r
}

// checkRestraintName checks the name of an application's restraint as the
// schema's validator does: letters, digits, _, - and . only. It returns
// what is wrong with it, or "".
func checkRestraintName(name string) string {
	if name == "" {
		return "must not be empty"
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-' || b == '.') {
			_, n := utf8.DecodeRuneInString(name[i:])
			return fmt.Sprintf("name %q: character %q not allowed (want letters, digits and _ - .)", name, name[i:i+n])
		}
	}
	return ""
}

// newRestraint calls an application's constructor, turning a panic into
// an error.
func newRestraint(newR NewRestraint, params map[string]string) (fn Restraint, err error) {
	defer func() {
		if p := recover(); p != nil {
			fn, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return newR(params)
}

func (c *gateCompiler) strings(field string, values []string, r *restraint) {
	if len(values) == 0 {
		c.fail(field, "needs at least one value")
		return
	}
	if len(values) <= smallSet {
		for _, v := range values {
			r.strs = append(r.strs, newWord(v))
		}
	} else {
		r.set = make(map[string]struct{}, len(values))
		for _, v := range values {
			r.set[v] = struct{}{}
		}
	}
	if r.kind == condUnitIDs && slices.Contains(values, "") {
		c.fail(field, "an ID must not be empty")
	}
}

// CustomNames returns the names of the application's restraints that the
// gate's JSON names, sorted and without repeats, so that a tool can
// register stand-ins for them before compiling it. JSON that is not a gate
// names none (Compile says what is wrong with it).
func CustomNames(data []byte) []string {
	var jg jsonGate
	if json.Unmarshal(data, &jg) != nil {
		return nil
	}
	var names []string
	for _, r := range jg.Rules {
		for _, x := range r.Restraints {
			if c := x.Condition; c != nil && c.Custom != nil && !slices.Contains(names, c.Custom.Name) {
				names = append(names, c.Custom.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// Salt returns the gate's salt.
func (g *Gate) Salt() string { return g.salt }

// Description returns the gate's description.
func (g *Gate) Description() string { return g.description }

// RuleInfo describes one rule of a gate.
type RuleInfo struct {
	Name    string
	Percent float64
	// Restraints is how many restraints the rule has.
	Restraints int
}

// Rules describes the gate's rules, in order.
func (g *Gate) Rules() []RuleInfo {
	out := make([]RuleInfo, len(g.rules))
	for i, r := range g.rules {
		out[i] = RuleInfo{Name: r.name, Percent: float64(r.buckets) / 100, Restraints: len(r.restraints)}
	}
	return out
}

// AttrKinds returns the attributes the gate's built-in restraints read, with
// the type each reads its attribute as (a version is a String).
func (g *Gate) AttrKinds() map[string]Kind { return maps.Clone(g.attrs) }
