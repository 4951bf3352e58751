package gate

import (
	"errors"
	"fmt"
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
// (by its bucket, Bucket). A rule's restraints are evaluated cheapest
// first, and a rule stops at the first that does not hold. A restraint that
// cannot be evaluated (an attribute of the wrong type, an application's
// restraint failing) fails the check closed, with the reason in Err,
// unless another restraint of its rule does not hold (the rule then does
// not hold whatever it would have said). Check never panics and, for units
// whose checks succeed, allocates nothing.
func (g *Gate) Check(u Unit) Decision {
	e := env{u: u}
	for i := range g.rules {
		r := &g.rules[i]
		switch r.holds(&e) {
		case no:
			continue
		case unknown3:
			return Decision{Rule: -1, Err: fmt.Errorf("rule %q: %w", r.name, why(u, e.unknown, e.customErr))}
		}
		d := Decision{Rule: i, RuleName: r.name, Buckets: r.buckets}
		switch {
		case r.buckets == 0:
		case r.buckets == Buckets:
			d.Pass = true
		case u.ID == "":
			return Decision{Rule: -1, Err: fmt.Errorf("rule %q: %w", r.name, ErrNoUnitID)}
		default:
			d.Sampled = true
			d.Pass = bucketOf(g.pre.sum(u.ID)) < r.buckets
		}
		return d
	}
	return Decision{Rule: -1}
}

// holds evaluates the rule's conjunction: no if a restraint does not hold;
// unknown if none is false but one could not be evaluated (e.why tells
// why); yes otherwise.
func (r *rule) holds(e *env) tri {
	unknown := -1
	for i := range r.restraints {
		switch r.restraints[i].eval(e) {
		case no:
			return no
		case unknown3:
			if unknown < 0 {
				unknown = i
			}
		}
	}
	if unknown >= 0 {
		e.unknown = &r.restraints[unknown]
		return unknown3
	}
	return yes
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

// eval reports whether the restraint holds, negation included.
func (r *restraint) eval(e *env) tri {
	v := r.cond(e)
	if v != unknown3 && r.negate {
		v ^= 1
	}
	return v
}

// env is one check's unit, with the attributes it has looked up: each
// attribute a gate reads has a slot (restraint.slot), so that restraints
// reading the same attribute look it up once.
type env struct {
	u     Unit
	found [maxSlots]int32 // 0: not looked up; -1: absent; i+1: u.Attrs[i]
	// unknown is the restraint that could not be evaluated, and customErr
	// the error of the application's restraint that failed.
	unknown   *restraint
	customErr error
}

// attr returns the unit's attribute r reads, or nil.
func (e *env) attr(r *restraint) *Attr {
	if r.slot >= 0 {
		if f := e.found[r.slot]; f > 0 {
			return &e.u.Attrs[f-1]
		} else if f < 0 {
			return nil
		}
	}
	return e.lookup(r)
}

func (e *env) lookup(r *restraint) *Attr {
	i := e.u.find(r.attr)
	if r.slot >= 0 {
		e.found[r.slot] = int32(i) + 1
		if i < 0 {
			e.found[r.slot] = -1
		}
	}
	if i < 0 {
		return nil
	}
	return &e.u.Attrs[i]
}

// cond evaluates the restraint's condition.
func (r *restraint) cond(e *env) tri {
	u := &e.u
	switch r.kind {
	case condUnitIDs:
		return truth(u.ID != "" && r.contains(u.ID))
	case condPopulation:
		switch {
		case r.buckets == 0:
			return no
		case r.buckets == Buckets:
			return yes
		case u.ID == "":
			return unknown3
		}
		return truth(bucketOf(r.pre.sum(u.ID)) < r.buckets)
	case condCustom:
		ok, err := callCustom(r.name, r.custom, *u)
		if err != nil {
			e.customErr = err
			return unknown3
		}
		return truth(ok)
	}
	a := e.attr(r)
	if a == nil {
		return no
	}
	switch r.kind {
	case condAttrIn:
		if a.kind != String {
			return unknown3
		}
		return truth(r.contains(a.s))
	case condAttrIs:
		if a.kind != Bool {
			return unknown3
		}
		return truth(a.n == r.num)
	case condNumber:
		if a.kind != Number || a.n != a.n { // NaN
			return unknown3
		}
		return truth(compare(r.op, cmpFloat(a.n, r.num)))
	case condVersion:
		if a.kind != String {
			return unknown3
		}
		v, ok := parseVersion(a.s)
		if !ok {
			return unknown3
		}
		return truth(compare(r.op, compareVersions(v, r.ver)))
	}
	return unknown3
}

// why returns the error of a restraint that could not be evaluated for u
// (customErr: the error of the application's restraint that failed).
func why(u Unit, r *restraint, customErr error) error {
	switch r.kind {
	case condPopulation:
		return ErrNoUnitID
	case condCustom:
		return customErr
	}
	a, _ := u.Attr(r.attr)
	want := map[condKind]string{condAttrIn: "a string", condAttrIs: "a bool", condNumber: "a number", condVersion: "a semantic version"}[r.kind]
	return &AttrError{Attr: r.attr, Got: a.describe(), Want: want}
}

func (r *restraint) contains(s string) bool {
	if r.set != nil {
		_, ok := r.set[s]
		return ok
	}
	for _, x := range r.strs {
		if x == s {
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
