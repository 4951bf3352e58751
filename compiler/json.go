package compiler

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/schema"
)

// An encoder writes a typed value as canonical JSON (see the package doc),
// checking it once more on the way: containers may have been changed after
// they were set, and required fields are only checked here. It reports every
// problem, not just the first.
type encoder struct {
	buf    []byte
	path   []pathSeg
	at     origin // construction site of the innermost struct
	errs   []encodeError
	indent int
}

// pathSeg is one step of the path to a value inside a config: a type name
// or ".field", a map key, or a list index.
type pathSeg struct {
	name  string // a type name
	field string
	index int // when the others are empty
	key   starlark.Value
}

func (s pathSeg) String() string {
	switch {
	case s.name != "":
		return s.name
	case s.field != "":
		return "." + s.field
	case s.key != nil:
		return "[" + s.key.String() + "]"
	}
	return "[" + strconv.Itoa(s.index) + "]"
}

// formatPath renders a path such as Job.tasks[1].resources.
func formatPath(path []pathSeg) string {
	var b strings.Builder
	for _, s := range path {
		b.WriteString(s.String())
	}
	return b.String()
}

type encodeError struct {
	at  origin
	err *valueError
}

func (e *encoder) fail(err *valueError) {
	for i := len(e.path) - 1; i >= 0; i-- {
		err.at(e.path[i].String())
	}
	e.errs = append(e.errs, encodeError{e.at, err})
}

func (e *encoder) newline() {
	e.buf = append(e.buf, '\n')
	for range e.indent {
		e.buf = append(e.buf, ' ', ' ')
	}
}

// encodeRoot encodes the exported value with a trailing newline.
func encodeRoot(s *Struct) ([]byte, []encodeError) {
	e := &encoder{buf: make([]byte, 0, 1024)}
	e.path = append(e.path, pathSeg{name: s.t.Name})
	e.structValue(s)
	e.buf = append(e.buf, '\n')
	return e.buf, e.errs
}

func (e *encoder) structValue(s *Struct) {
	saved := e.at
	e.at = s.origin
	defer func() { e.at = saved }()
	if s.t.Type == schema.Union {
		if n := len(s.setFields()); n != 1 {
			e.fail(errorf("union takes exactly one member, got %d", n))
		}
	}
	e.buf = append(e.buf, '{')
	e.indent++
	first := true
	for i, f := range s.t.Fields {
		v := s.fields[i]
		if v == nil {
			if f.Required == schema.Required {
				e.path = append(e.path, pathSeg{field: f.Name})
				e.fail(&valueError{msg: "missing required field", decl: &f.Pos})
				e.path = e.path[:len(e.path)-1]
			}
			continue
		}
		if !first {
			e.buf = append(e.buf, ',')
		}
		first = false
		e.newline()
		e.buf = appendString(e.buf, f.Name)
		e.buf = append(e.buf, ':', ' ')
		e.path = append(e.path, pathSeg{field: f.Name})
		e.value(f.Type, v)
		e.path = e.path[:len(e.path)-1]
	}
	e.indent--
	if !first {
		e.newline()
	}
	e.buf = append(e.buf, '}')
}

func (e *encoder) value(t *schema.Type, v starlark.Value) {
	switch t.Kind {
	case schema.Bool:
		if b, ok := v.(starlark.Bool); ok {
			e.buf = strconv.AppendBool(e.buf, bool(b))
			return
		}
	case schema.I8, schema.I16, schema.I32, schema.I64:
		if i, ok := v.(starlark.Int); ok {
			lo, hi, _ := t.Kind.IntRange()
			if n, ok := i.Int64(); ok && lo <= n && n <= hi {
				e.buf = strconv.AppendInt(e.buf, n, 10)
				return
			}
		}
	case schema.Double:
		var f float64
		switch x := v.(type) {
		case starlark.Float:
			f = float64(x)
		case starlark.Int:
			f = float64(x.Float())
		default:
			e.fail(wantMismatch(v, t))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			e.fail(errorf("got %s, want a finite double", starlark.Float(f)))
			return
		}
		e.buf = appendFloat(e.buf, f)
		return
	case schema.String:
		if s, ok := v.(starlark.String); ok {
			e.buf = appendString(e.buf, string(s))
			return
		}
	case schema.Binary:
		var b []byte
		switch x := v.(type) {
		case starlark.Bytes:
			b = []byte(x)
		case starlark.String:
			b = []byte(x)
		default:
			e.fail(wantMismatch(v, t))
			return
		}
		e.buf = append(e.buf, '"')
		e.buf = base64.StdEncoding.AppendEncode(e.buf, b)
		e.buf = append(e.buf, '"')
		return
	case schema.EnumKind:
		if x, ok := v.(*Enum); ok && x.item.Enum == t.Enum {
			e.buf = appendString(e.buf, x.item.Name)
			return
		}
	case schema.StructKind:
		if x, ok := v.(*Struct); ok && x.t == t.Struct {
			e.structValue(x)
			return
		}
	case schema.List:
		if l, ok := v.(*starlark.List); ok {
			e.list(t.Elem, l)
			return
		}
	case schema.Set:
		if l, ok := v.(*starlark.List); ok {
			e.set(t.Elem, l)
			return
		}
	case schema.Map:
		if d, ok := v.(*starlark.Dict); ok {
			e.mapValue(t, d)
			return
		}
	}
	e.fail(wantMismatch(v, t))
}

func (e *encoder) list(elem *schema.Type, l *starlark.List) {
	if l.Len() == 0 {
		e.buf = append(e.buf, '[', ']')
		return
	}
	e.buf = append(e.buf, '[')
	e.indent++
	for i := range l.Len() {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.newline()
		e.path = append(e.path, pathSeg{index: i})
		e.value(elem, l.Index(i))
		e.path = e.path[:len(e.path)-1]
	}
	e.indent--
	e.newline()
	e.buf = append(e.buf, ']')
}

// set writes a set as a sorted array without duplicates: numbers and enums
// by value, everything else by its encoding.
func (e *encoder) set(elem *schema.Type, l *starlark.List) {
	type item struct {
		v   starlark.Value
		enc []byte
	}
	items := make([]item, 0, l.Len())
	e.indent++
	for i := range l.Len() {
		start := len(e.buf)
		e.path = append(e.path, pathSeg{index: i})
		e.value(elem, l.Index(i))
		e.path = e.path[:len(e.path)-1]
		items = append(items, item{l.Index(i), bytes.Clone(e.buf[start:])})
		e.buf = e.buf[:start]
	}
	e.indent--
	slices.SortStableFunc(items, func(a, b item) int { return compareElems(elem, a.v, b.v, a.enc, b.enc) })
	items = slices.CompactFunc(items, func(a, b item) bool { return bytes.Equal(a.enc, b.enc) })
	if len(items) == 0 {
		e.buf = append(e.buf, '[', ']')
		return
	}
	e.buf = append(e.buf, '[')
	e.indent++
	for i, it := range items {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.newline()
		e.buf = append(e.buf, it.enc...)
	}
	e.indent--
	e.newline()
	e.buf = append(e.buf, ']')
}

// compareElems orders set elements and map keys: integers, doubles and enums
// by numeric value, everything else by encoding.
func compareElems(t *schema.Type, a, b starlark.Value, aenc, benc []byte) int {
	switch t.Kind {
	case schema.I8, schema.I16, schema.I32, schema.I64:
		x, ok1 := a.(starlark.Int)
		y, ok2 := b.(starlark.Int)
		if ok1 && ok2 {
			c, _ := x.Cmp(y, 1)
			return c
		}
	case schema.Double:
		x, _ := starlark.AsFloat(a)
		y, _ := starlark.AsFloat(b)
		return cmp.Compare(x, y)
	case schema.EnumKind:
		x, ok1 := a.(*Enum)
		y, ok2 := b.(*Enum)
		if ok1 && ok2 {
			return cmp.Compare(x.item.Value, y.item.Value)
		}
	}
	return bytes.Compare(aenc, benc)
}

func (e *encoder) mapValue(t *schema.Type, d *starlark.Dict) {
	items := d.Items()
	if len(items) == 0 {
		e.buf = append(e.buf, '{', '}')
		return
	}
	keys := make([]string, len(items))
	for i, kv := range items {
		k, ok := mapKey(t.Key, kv[0])
		if !ok {
			e.fail(errorf("map key %s cannot be a JSON object key (want string, enum or integer keys)", describe(kv[0])))
			return
		}
		keys[i] = k
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		return compareElems(t.Key, items[i][0], items[j][0], []byte(keys[i]), []byte(keys[j]))
	})
	e.buf = append(e.buf, '{')
	e.indent++
	for n, i := range order {
		if n > 0 {
			e.buf = append(e.buf, ',')
		}
		e.newline()
		e.buf = appendString(e.buf, keys[i])
		e.buf = append(e.buf, ':', ' ')
		e.path = append(e.path, pathSeg{key: items[i][0]})
		e.value(t.Elem, items[i][1])
		e.path = e.path[:len(e.path)-1]
	}
	e.indent--
	e.newline()
	e.buf = append(e.buf, '}')
}

// mapKey renders a map key as a JSON object key.
func mapKey(t *schema.Type, k starlark.Value) (string, bool) {
	switch t.Kind {
	case schema.String:
		s, ok := k.(starlark.String)
		return string(s), ok
	case schema.EnumKind:
		x, ok := k.(*Enum)
		if ok && x.item.Enum == t.Enum {
			return x.item.Name, true
		}
	case schema.I8, schema.I16, schema.I32, schema.I64:
		i, ok := k.(starlark.Int)
		if ok {
			lo, hi, _ := t.Kind.IntRange()
			if n, ok := i.Int64(); ok && lo <= n && n <= hi {
				return strconv.FormatInt(n, 10), true
			}
		}
	}
	return "", false
}

// appendFloat writes the shortest representation that round-trips, in the
// form encoding/json uses (ES6 number formatting).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hex = "0123456789abcdef"

// appendString writes s as a JSON string without HTML escaping. Invalid
// UTF-8 becomes U+FFFD; U+2028 and U+2029 are escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
