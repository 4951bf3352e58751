package gate

import (
	"errors"
	"fmt"
	"math/bits"
)

// Decision is the outcome of a check.
type Decision struct {
	// Pass says whether the feature is on for the unit. It is false when
	// Err is set: a check that cannot decide fails closed.
	Pass bool
	// Rule is the index of the rule that decided, -1 if no rule held (or
	// on error); RuleName its name.
	Rule     int
	RuleName string
	// Buckets is the deciding rule's percentage in hundredths of a percent
	// (0 to Buckets).
	Buckets int
	// Sampled says the deciding rule samples (its percentage is neither 0
	// nor 100): the unit's bucket decided.
	Sampled bool
	// Err is why the check failed closed: ErrNoUnitID, an *AttrError, a
	// *RestraintError, or, for a followed gate, ErrNotLoaded or the
	// *CompileError of the gate as distributed.
	Err error
	// Version is the version of a followed gate that decided (Follow); nil
	// for a Gate checked directly.
	Version *Version
}

// Percent returns the deciding rule's percentage.
func (d Decision) Percent() float64 { return float64(d.Buckets) / 100 }

// ErrNoUnitID fails a check in which a rule or restraint that samples (a
// percentage that is neither 0 nor 100, or a population) had to decide
// for a unit without an ID: every such unit would fall in one bucket.
var ErrNoUnitID = errors.New("the unit has no ID, and sampling needs one")

// AttrError fails a check that read an attribute of the wrong type.
type AttrError struct {
	Attr string
	Got  string // the value: `number 3`, `string "x"`, or its Go type
	Want string // `a string`, `a semantic version`, ...
}

func (e *AttrError) Error() string {
	return fmt.Sprintf("attribute %q: got %s, want %s", e.Attr, e.Got, e.Want)
}

// RestraintError fails a check in which an application's restraint
// returned an error or panicked.
type RestraintError struct {
	Name string
	Err  error
}

func (e *RestraintError) Error() string { return fmt.Sprintf("restraint %q: %v", e.Name, e.Err) }

func (e *RestraintError) Unwrap() error { return e.Err }

// Check decides whether the gate passes for u. The first rule whose
// restraints all hold decides: the unit passes with the rule's percentage
// (by its bucket, Bucket). The conditions on the unit's attributes are
// evaluated first, in one pass over them; a rule evaluates its other
// restraints cheapest first, the application's last, and stops at the
// first that does not hold. A restraint that
// cannot be evaluated (an attribute of the wrong type, an application's
// restraint failing) fails the check closed, with the reason in Err,
// unless another restraint of its rule does not hold (the rule then does
// not hold whatever it would have said). Check never panics and, for units
// whose checks succeed, allocates nothing.
func (g *Gate) Check(u Unit) Decision { return g.check(u, nil) }

// check decides the gate for u, prepared in p if p is not nil.
func (g *Gate) check(u Unit, p *Prepared) (d Decision) {
	var e env
	e.u = u
	e.g = g
	e.p = p
	// The unit's bucket, for a gate whose rules sample: computed first,
	// while nothing depends on it, so that the processor overlaps it with
	// the rest of the check.
	var bucket int
	if g.samples && u.ID != "" {
		bucket = bucketOf(g.pre.sum(u.ID))
	}
	// What the check knows of the first maxMemo conditions, one bit each:
	// evaluated (known), held (val), could not be evaluated (unk). Each is
	// evaluated once per check: those on attributes with a slot first, in
	// one pass over the unit's attributes (scan; a condition on an
	// attribute the unit does not have does not hold), the others when a
	// rule reaches them.
	var val, unk uint64
	if g.nkeys > 0 {
		val, unk = e.scan()
	}
	known := g.scanned
	rules := g.rules
rules:
	for i := 0; i < len(rules); i++ {
		// The rule's conjunction: it does not hold if a restraint does
		// not (a condition it needs the other way, or both ways); it
		// cannot be decided if none is false but one could not be
		// evaluated. Its conditions known already first (the rules they
		// rule out passed over in a loop that calls nothing), then the
		// others, cheapest first.
		for kv := known &^ unk; ; {
			r := &rules[i]
			if (val^r.want|r.both)&r.need&kv == 0 {
				break
			}
			if i++; i >= len(rules) {
				break rules
			}
		}
		r := &rules[i]
		for todo := r.need &^ known; todo != 0; todo &= todo - 1 {
			c := bits.TrailingZeros64(todo)
			bit := uint64(1) << c
			known |= bit
			switch e.eval(&g.conds[c]) {
			case yes:
				val |= bit
			case unknown3:
				unk |= bit
				continue
			}
			if (val^r.want|r.both)&bit != 0 {
				continue rules
			}
		}
		var unknown *restraint // the first of extra that could not be evaluated
		for j := range r.extra {
			rf := &r.extra[j]
			switch v := e.eval(rf.x); {
			case v == unknown3:
				if unknown == nil {
					unknown = rf.x
				}
			case (v == yes) == rf.negate:
				continue rules
			}
		}
		if unk&r.need != 0 || unknown != nil {
			return failClosed(r, why(&e, firstUnknown(r, unk, unknown)))
		}
		d.Rule, d.RuleName, d.Buckets = i, r.name, r.buckets
		switch {
		case r.buckets == 0:
		case r.buckets == Buckets:
			d.Pass = true
		case e.u.ID == "":
			return failClosed(r, ErrNoUnitID)
		default:
			d.Sampled = true
			d.Pass = bucket < r.buckets
		}
		return d
	}
	d.Rule = -1
	return d
}

// firstUnknown returns the first of r's restraints, in order, that could
// not be evaluated: one whose bit is in unk, or extra, the first such of
// r.extra.
func firstUnknown(r *rule, unk uint64, extra *restraint) *restraint {
	for _, rf := range r.restraints {
		if unk&rf.bit != 0 || rf.x == extra {
			return rf.x
		}
	}
	return extra
}

// failClosed is the decision of a check that could not decide at rule r.
// It is kept out of Check, whose frame stays small.
//
//go:noinline
func failClosed(r *rule, err error) Decision {
	return Decision{Rule: -1, Err: fmt.Errorf("rule %q: %w", r.name, err)}
}

// eval evaluates the condition x, which scan has not: yes, no, or unknown
// if it cannot be evaluated.
func (e *env) eval(x *restraint) tri {
	if x.kind > condVersion {
		return e.evalUnit(x)
	}
	// An attribute: from its slot (found by scan), or looked up.
	i := -1
	if s := uint(x.slot); s < maxSlots {
		if j := uint(e.at[s]) - 1; j < uint(len(e.u.Attrs)) { // 0, absent, wraps around
			i = int(j)
		}
	} else {
		i = find(e.u.Attrs, &x.key)
	}
	if i < 0 {
		return no
	}
	return e.evalAttr(x, &e.u.Attrs[i])
}

// evalAttr evaluates the condition x on its attribute a: yes, no, or
// unknown if a is of another kind or not a version where x compares
// versions (evalVersion). scan writes it out.
func (e *env) evalAttr(x *restraint, a *Attr) tri {
	if a.kind != x.attrKind {
		return unknown3
	}
	switch x.kind {
	case condAttrIn:
		return truth(x.contains(a.s))
	case condAttrIs:
		return truth(a.n == x.num)
	case condNumber:
		return x.compareNumber(a.n)
	}
	return e.evalVersion(x, a)
}

// compareNumber compares the number n with x's value: yes, no, or unknown
// if n is NaN.
func (x *restraint) compareNumber(n float64) tri {
	if n != n {
		return unknown3
	}
	return x.holds(cmpFloat(n, x.num))
}

// evalVersion compares the string attribute a with x's version: yes, no,
// or unknown if a is not a version. An attribute with a slot is parsed once
// per check (slotVersion); one without is parsed each time.
func (e *env) evalVersion(x *restraint, a *Attr) tri {
	if x.slot < 0 {
		var v version
		if !v.parse(a.s) {
			return unknown3
		}
		return x.holds(compareVersions(&v, &x.ver))
	}
	if int(e.verSlot) != x.slot+1 {
		e.slotVersion(x, a)
	}
	if !e.verOK {
		return unknown3
	}
	return x.holds(compareVersions(&e.ver, &x.ver))
}

// slotVersion reads the attribute a, of x's slot, as a version into e.ver
// (e.verOK: it is one) for the slot (e.verSlot): as the unit was prepared,
// or parsed.
func (e *env) slotVersion(x *restraint, a *Attr) {
	e.verSlot = int8(x.slot + 1)
	if p := e.p; p != nil {
		// a is e.u.Attrs[i], found in its slot.
		if i := uint(e.at[x.slot&(maxSlots-1)]) - 1; i < uint(len(p.vers)) && p.vers[i].state != 0 {
			pv := &p.vers[i]
			e.ver, e.verOK = pv.v, pv.state == verParsed
			return
		}
	}
	e.verOK = e.ver.parse(a.s)
}

// evalUnit evaluates the condition x that reads no attribute (eval).
func (e *env) evalUnit(x *restraint) tri {
	switch x.kind {
	case condUnitIDs:
		return truth(e.u.ID != "" && x.contains(e.u.ID))
	case condPopulation:
		switch {
		case x.buckets == 0:
			return no
		case x.buckets == Buckets:
			return yes
		case e.u.ID != "":
			return truth(bucketOf(x.pre.sum(e.u.ID)) < x.buckets)
		}
		return unknown3
	}
	return e.custom(x)
}

// tri is a truth value that may be unknown: a restraint that could not be
// evaluated.
type tri uint8

const (
	no tri = iota
	yes
	unknown3
)

func truth(b bool) tri {
	if b {
		return yes
	}
	return no
}

// env is one check's unit, with where in it the gate's attributes are:
// each attribute a gate reads has a slot (restraint.slot, up to maxSlots),
// and a check finds them all in one pass over the unit's attributes
// (scan).
type env struct {
	u  Unit
	g  *Gate
	p  *Prepared        // when checking a prepared unit
	at [maxSlots]uint32 // 0: absent; i+1: u.Attrs[i]
	// verSlot is the slot of the attribute whose version ver holds,
	// parsed (verOK) or not, plus one; 0 for none. Gates rarely read more
	// than one version attribute, and read it in several rules.
	verSlot int8
	verOK   bool
	ver     version
	// customErr is the error of the application's restraint that failed.
	customErr error
}

// maxMemo is how many of a gate's conditions a check remembers the value
// of (one bit each); others are evaluated every time a rule reaches them.
const maxMemo = 64

// scan finds the gate's attributes in the unit (into e.at), or in the
// prepared unit (fromPrepared), and evaluates the conditions on them
// (Gate.attrConds). It returns the conditions that held and those that
// could not be evaluated, one bit each.
func (e *env) scan() (val, unk uint64) {
	g := e.g
	attrs := e.u.Attrs
	if e.p != nil {
		e.fromPrepared()
	} else {
		e.find()
	}
	// The version attribute compared first is read before the loop, which
	// then calls nothing (a call makes a loop keep its state on the stack
	// around it): the conditions that need one are evaluated after it
	// (slow).
	if c := g.verCond; c >= 0 {
		x := &g.conds[c]
		if i := uint(e.at[x.slot&(maxSlots-1)]) - 1; i < uint(len(attrs)) && attrs[i].kind == String {
			e.slotVersion(x, &attrs[i])
		}
	}
	var slow uint64
	for k := range g.attrConds {
		ac := &g.attrConds[k]
		i := uint(e.at[ac.slot&(maxSlots-1)]) - 1 // 0, absent, wraps around
		if i >= uint(len(attrs)) {
			continue
		}
		// evalAttr, written out.
		a := &attrs[i]
		if a.kind != ac.attrKind {
			unk |= ac.bit
			continue
		}
		var t bool
		switch ac.kind {
		case condAttrIn:
			x := ac.x
			if x.set != nil {
				slow |= ac.bit
				continue
			}
			// x.contains(a.s), written out for small sets.
			s := a.s
			var h, w uint64
			if n := len(s); n >= 8 { // words(s), written out
				h, w = le64(s), le64(s[n-8:])
			} else if n >= 4 {
				h, w = uint64(le32(s)), uint64(le32(s[n-4:]))
			} else if n > 0 {
				h = uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
			}
			for j := range x.strs {
				if x.strs[j].is(s, h, w) {
					t = true
					break
				}
			}
		case condAttrIs:
			t = a.n == ac.num
		case condNumber:
			if a.n != a.n { // NaN
				unk |= ac.bit
				continue
			}
			t = ac.outcomes>>(uint(cmpFloat(a.n, ac.num)+1)&7)&1 != 0
		default: // condVersion: evalVersion, written out
			if int(e.verSlot) != int(ac.slot)+1 {
				slow |= ac.bit
				continue
			}
			if !e.verOK {
				unk |= ac.bit
				continue
			}
			v, y := &e.ver, &ac.x.ver
			c := 0
			switch {
			case v.major != y.major:
				c = cmpUint(v.major, y.major)
			case v.minor != y.minor:
				c = cmpUint(v.minor, y.minor)
			case v.patch != y.patch:
				c = cmpUint(v.patch, y.patch)
			default: // pre-releases
				slow |= ac.bit
				continue
			}
			t = ac.outcomes>>(uint(c+1)&7)&1 != 0
		}
		if t {
			val |= ac.bit
		}
	}
	// The conditions that need a call: large sets, versions of another
	// attribute than the one read first, versions of the same numbers.
	for ; slow != 0; slow &= slow - 1 {
		x := &g.conds[bits.TrailingZeros64(slow)]
		switch e.evalAttr(x, &attrs[e.at[x.slot&(maxSlots-1)]-1]) {
		case yes:
			val |= slow & -slow
		case unknown3:
			unk |= slow & -slow
		}
	}
	return val, unk
}

// find finds the gate's attributes in the unit (into e.at): for each of
// the unit's attributes, the gate's attributes of its key's length (byLen)
// that are not found yet are compared with it, by their words; the first
// attribute of a key counts.
func (e *env) find() {
	g := e.g
	attrs := e.u.Attrs
	all := uint16(1)<<g.nkeys - 1
	var found uint16
	for i := range attrs {
		k := attrs[i].Key
		n := len(k)
		if n > maxKeyLen {
			continue
		}
		m := g.byLen[n] &^ found
		if m == 0 {
			continue
		}
		var h, t uint64
		if n >= 8 { // words(k), written out
			h, t = le64(k), le64(k[n-8:])
		} else if n >= 4 {
			h, t = uint64(le32(k)), uint64(le32(k[n-4:]))
		} else { // n > 0: no key of a gate is empty
			h = uint64(k[0]) | uint64(k[n/2])<<8 | uint64(k[n-1])<<16
		}
		for ; m != 0; m &= m - 1 {
			s := bits.TrailingZeros16(m) & (maxSlots - 1)
			if w := &g.keys[s]; h == w.head && t == w.tail && (n <= 16 || sameMiddle(k, w.s)) { // w.is(k, h, t): k has w's length
				e.at[s] = uint32(i) + 1
				found |= 1 << s
				break
			}
		}
		if found == all {
			break
		}
	}
}

// custom evaluates an application's restraint.
func (e *env) custom(r *restraint) tri {
	ok, err := callCustom(r.name, r.custom, e.u)
	if err != nil {
		e.customErr = err
		return unknown3
	}
	return truth(ok)
}

// why returns the error of the restraint r that could not be evaluated.
//
//go:noinline
func why(e *env, r *restraint) error {
	switch r.kind {
	case condPopulation:
		return ErrNoUnitID
	case condCustom:
		return e.customErr
	}
	a, _ := e.u.Attr(r.attr)
	want := map[condKind]string{condAttrIn: "a string", condAttrIs: "a bool", condNumber: "a number", condVersion: "a semantic version"}[r.kind]
	return &AttrError{Attr: r.attr, Got: a.describe(), Want: want}
}

func (r *restraint) contains(s string) bool {
	if r.set != nil {
		_, ok := r.set[s]
		return ok
	}
	var h, t uint64
	if n := len(s); n >= 8 { // words(s), written out
		h, t = le64(s), le64(s[n-8:])
	} else if n >= 4 {
		h, t = uint64(le32(s)), uint64(le32(s[n-4:]))
	} else if n > 0 {
		h = uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
	}
	for i := range r.strs {
		if r.strs[i].is(s, h, t) {
			return true
		}
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compare applies op to the result c of comparing attribute and value.
func compare(op Op, c int) bool {
	switch op {
	case LT:
		return c < 0
	case LE:
		return c <= 0
	case EQ:
		return c == 0
	case NE:
		return c != 0
	case GE:
		return c >= 0
	case GT:
		return c > 0
	}
	return false
}

// holds applies the restraint's comparison to the result c (-1, 0 or 1) of
// comparing attribute and value: yes or no.
func (r *restraint) holds(c int) tri { return tri(r.outcomes>>(uint(c+1)&7)) & 1 }

// callCustom runs an application's restraint, turning an error or a panic
// into a *RestraintError.
func callCustom(name string, fn Restraint, u Unit) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, &RestraintError{Name: name, Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	ok, err = fn(u)
	if err != nil {
		err = &RestraintError{Name: name, Err: err}
	}
	return ok, err
}
