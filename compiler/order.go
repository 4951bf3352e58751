package compiler

import (
	"cmp"
	"slices"
	"strings"

	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/schema"
)

// compareValues is the one order of Thrift values, used for the elements
// of sets and the keys of maps in every encoding (canonical JSON, Thrift
// binary and compact) and so by decoding and cfg diff. Two values are
// equal in it exactly when their canonical encodings are equal:
//
//   - bool: false before true;
//   - integers and doubles: by numeric value (a double is never NaN, and
//     -0.0 is stored as 0.0, so equal doubles have one encoding);
//   - string and binary: bytewise (for valid UTF-8, the order of code
//     points);
//   - enum: by numeric value;
//   - struct, union and exception: field by field in field ID order, an
//     unset field before a set one;
//   - list: element by element, a prefix first;
//   - set: as the list of its elements in this order, without duplicates;
//   - map: as the list of its entries ordered by key, entry by entry, key
//     then value.
//
// Values that do not match t (a list changed after it was set) are ordered
// by their Starlark type and text, never equal to a value that matches, so
// that they are reported rather than dropped as duplicates.
func compareValues(t *schema.Type, a, b starlark.Value) int {
	switch t.Kind {
	case schema.Bool:
		x, ok1 := a.(starlark.Bool)
		y, ok2 := b.(starlark.Bool)
		if ok1 && ok2 {
			switch {
			case x == y:
				return 0
			case !bool(x):
				return -1
			}
			return 1
		}
	case schema.I8, schema.I16, schema.I32, schema.I64:
		x, ok1 := a.(starlark.Int)
		y, ok2 := b.(starlark.Int)
		if ok1 && ok2 {
			if x, ok := x.Int64(); ok {
				if y, ok := y.Int64(); ok {
					return cmp.Compare(x, y)
				}
			}
			c, _ := x.Cmp(y, 1)
			return c
		}
	case schema.Double:
		x, ok1 := asDouble(a)
		y, ok2 := asDouble(b)
		if ok1 && ok2 {
			return cmp.Compare(x, y)
		}
	case schema.String:
		x, ok1 := a.(starlark.String)
		y, ok2 := b.(starlark.String)
		if ok1 && ok2 {
			return strings.Compare(string(x), string(y))
		}
	case schema.Binary:
		x, ok1 := asBytes(a)
		y, ok2 := asBytes(b)
		if ok1 && ok2 {
			return strings.Compare(x, y)
		}
	case schema.EnumKind:
		x, ok1 := a.(*Enum)
		y, ok2 := b.(*Enum)
		if ok1 && ok2 && x.item.Enum == t.Enum && y.item.Enum == t.Enum {
			return cmp.Compare(x.item.Value, y.item.Value)
		}
	case schema.StructKind:
		x, ok1 := a.(*Struct)
		y, ok2 := b.(*Struct)
		if ok1 && ok2 && x.t == t.Struct && y.t == t.Struct {
			for _, f := range t.Struct.FieldsByID() {
				u, v := x.fields[f.Index], y.fields[f.Index]
				switch {
				case u == nil && v == nil:
					continue
				case u == nil:
					return -1
				case v == nil:
					return 1
				}
				if c := compareValues(f.Type, u, v); c != 0 {
					return c
				}
			}
			return 0
		}
	case schema.List:
		x, ok1 := a.(*starlark.List)
		y, ok2 := b.(*starlark.List)
		if ok1 && ok2 {
			for i := 0; i < x.Len() && i < y.Len(); i++ {
				if c := compareValues(t.Elem, x.Index(i), y.Index(i)); c != 0 {
					return c
				}
			}
			return cmp.Compare(x.Len(), y.Len())
		}
	case schema.Set:
		x, ok1 := a.(*starlark.List)
		y, ok2 := b.(*starlark.List)
		if ok1 && ok2 {
			xs, ys := sortedSet(t.Elem, x), sortedSet(t.Elem, y)
			for i := 0; i < len(xs) && i < len(ys); i++ {
				if c := compareValues(t.Elem, xs[i].v, ys[i].v); c != 0 {
					return c
				}
			}
			return cmp.Compare(len(xs), len(ys))
		}
	case schema.Map:
		x, ok1 := a.(*starlark.Dict)
		y, ok2 := b.(*starlark.Dict)
		if ok1 && ok2 {
			xs, ys := sortedMap(t.Key, x), sortedMap(t.Key, y)
			for i := 0; i < len(xs) && i < len(ys); i++ {
				if c := compareValues(t.Key, xs[i][0], ys[i][0]); c != 0 {
					return c
				}
				if c := compareValues(t.Elem, xs[i][1], ys[i][1]); c != 0 {
					return c
				}
			}
			return cmp.Compare(len(xs), len(ys))
		}
	}
	return compareMismatched(t, a, b)
}

// compareMismatched orders values of which at least one does not match t:
// matching values first, then by Starlark type and text.
func compareMismatched(t *schema.Type, a, b starlark.Value) int {
	ma, mb := matches(t, a), matches(t, b)
	switch {
	case ma && !mb:
		return -1
	case !ma && mb:
		return 1
	}
	if c := strings.Compare(a.Type(), b.Type()); c != 0 {
		return c
	}
	if c := strings.Compare(a.String(), b.String()); c != 0 {
		return c
	}
	return 0
}

// matches reports whether v has the Starlark type values of t are stored as.
func matches(t *schema.Type, v starlark.Value) bool {
	switch t.Kind {
	case schema.Bool:
		_, ok := v.(starlark.Bool)
		return ok
	case schema.I8, schema.I16, schema.I32, schema.I64:
		_, ok := v.(starlark.Int)
		return ok
	case schema.Double:
		_, ok := asDouble(v)
		return ok
	case schema.String:
		_, ok := v.(starlark.String)
		return ok
	case schema.Binary:
		_, ok := asBytes(v)
		return ok
	case schema.EnumKind:
		x, ok := v.(*Enum)
		return ok && x.item.Enum == t.Enum
	case schema.StructKind:
		x, ok := v.(*Struct)
		return ok && x.t == t.Struct
	case schema.List, schema.Set:
		_, ok := v.(*starlark.List)
		return ok
	case schema.Map:
		_, ok := v.(*starlark.Dict)
		return ok
	}
	return false
}

func asDouble(v starlark.Value) (float64, bool) {
	switch x := v.(type) {
	case starlark.Float:
		return float64(x), true
	case starlark.Int:
		return float64(x.Float()), true
	}
	return 0, false
}

func asBytes(v starlark.Value) (string, bool) {
	switch x := v.(type) {
	case starlark.Bytes:
		return string(x), true
	case starlark.String:
		return string(x), true
	}
	return "", false
}

// A setElem is an element of a set and its index in the list holding it.
type setElem struct {
	v     starlark.Value
	index int
}

// sortedSet returns the elements of a set in canonical order, without
// duplicates (the first of equal elements is kept).
func sortedSet(elem *schema.Type, l *starlark.List) []setElem {
	elems := make([]setElem, l.Len())
	for i := range l.Len() {
		elems[i] = setElem{l.Index(i), i}
	}
	slices.SortStableFunc(elems, func(a, b setElem) int { return compareValues(elem, a.v, b.v) })
	return slices.CompactFunc(elems, func(a, b setElem) bool { return compareValues(elem, a.v, b.v) == 0 })
}

// sortedMap returns the entries of a map in canonical order of their keys.
func sortedMap(key *schema.Type, d *starlark.Dict) []starlark.Tuple {
	items := d.Items()
	slices.SortStableFunc(items, func(a, b starlark.Tuple) int { return compareValues(key, a[0], b[0]) })
	return items
}
