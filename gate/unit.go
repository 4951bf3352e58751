package gate

import (
	"fmt"
	"math"
	"strconv"
)

// Unit is what a gate is checked for: a user, an account, a device, a
// request. ID identifies it for unit-ID restraints and for sampling; Attrs
// are what attribute restraints read (a key given twice: the first counts).
// Build a Unit once per request and check it against every gate; Check does
// not keep it.
type Unit struct {
	ID    string
	Attrs []Attr
}

// Attr looks up the attribute key.
func (u Unit) Attr(key string) (Attr, bool) {
	if key == "" {
		return Attr{}, false
	}
	w := newWord(key)
	if i := find(u.Attrs, &w); i >= 0 {
		return u.Attrs[i], true
	}
	return Attr{}, false
}

// find returns the index of the first attribute keyed key, or -1. Most keys
// differ from the one sought in length, which it compares first, and then
// it compares their words (words.go).
func find(attrs []Attr, key *word) int {
	for i := range attrs {
		if k := attrs[i].Key; len(k) == len(key.s) {
			if h, t := words(k); key.is(k, h, t) {
				return i
			}
		}
	}
	return -1
}

// Kind is the type of an attribute's value.
type Kind uint8

// Kinds of attribute values. An Invalid attribute holds a value of another
// type (Any's description of it); a check that reads it fails closed.
const (
	Invalid Kind = iota
	String
	Number
	Bool
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Number:
		return "number"
	case Bool:
		return "bool"
	}
	return "invalid"
}

// Attr is one attribute of a Unit: a key and a typed value.
type Attr struct {
	Key  string
	kind Kind
	s    string  // String; Invalid: what the value was
	n    float64 // Number; Bool: 1 for true
}

// StringAttr returns a string attribute.
func StringAttr(key, v string) Attr { return Attr{Key: key, kind: String, s: v} }

// NumberAttr returns a numeric attribute.
func NumberAttr(key string, v float64) Attr { return Attr{Key: key, kind: Number, n: v} }

// BoolAttr returns a boolean attribute.
func BoolAttr(key string, v bool) Attr {
	a := Attr{Key: key, kind: Bool}
	if v {
		a.n = 1
	}
	return a
}

// AnyAttr returns the attribute of a value of any type, as an evaluation
// context holds it (OpenFeature's): a string, a bool, a number of any Go
// numeric type. Any other value gives an Invalid attribute, which fails a
// check that reads it (with the value's type in the reason) rather than
// being taken for something it is not.
func AnyAttr(key string, v any) Attr {
	switch v := v.(type) {
	case string:
		return StringAttr(key, v)
	case bool:
		return BoolAttr(key, v)
	case float64:
		return NumberAttr(key, v)
	case float32:
		return NumberAttr(key, float64(v))
	case int:
		return NumberAttr(key, float64(v))
	case int8:
		return NumberAttr(key, float64(v))
	case int16:
		return NumberAttr(key, float64(v))
	case int32:
		return NumberAttr(key, float64(v))
	case int64:
		return NumberAttr(key, float64(v))
	case uint:
		return NumberAttr(key, float64(v))
	case uint8:
		return NumberAttr(key, float64(v))
	case uint16:
		return NumberAttr(key, float64(v))
	case uint32:
		return NumberAttr(key, float64(v))
	case uint64:
		return NumberAttr(key, float64(v))
	case nil:
		return Attr{Key: key, s: "null"}
	}
	return Attr{Key: key, s: fmt.Sprintf("%T", v)}
}

// Kind returns the type of the attribute's value.
func (a Attr) Kind() Kind { return a.kind }

// Str returns a String attribute's value.
func (a Attr) Str() string {
	if a.kind != String {
		return ""
	}
	return a.s
}

// Num returns a Number attribute's value.
func (a Attr) Num() float64 {
	if a.kind != Number {
		return 0
	}
	return a.n
}

// True returns a Bool attribute's value.
func (a Attr) True() bool { return a.kind == Bool && a.n != 0 }

// describe shows the value for an error: `string "x"`, `number 3`.
func (a Attr) describe() string {
	switch a.kind {
	case String:
		return "string " + strconv.Quote(a.s)
	case Number:
		if math.IsNaN(a.n) {
			return "number NaN"
		}
		return "number " + strconv.FormatFloat(a.n, 'g', -1, 64)
	case Bool:
		return "bool " + strconv.FormatBool(a.n != 0)
	}
	return a.s
}
