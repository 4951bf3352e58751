package compiler

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/internal/jsontext"
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
	e := encoders.Get().(*encoder)
	defer func() {
		*e = encoder{buf: e.buf[:0], path: e.path[:0]}
		encoders.Put(e)
	}()
	e.path = append(e.path, pathSeg{name: s.t.Name})
	e.structValue(s)
	e.buf = append(e.buf, '\n')
	return bytes.Clone(e.buf), e.errs
}

// encoders keeps encoders, and their grown buffers, between configs.
var encoders = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 64<<10)} }}

func (e *encoder) structValue(s *Struct) {
	saved := e.at
	e.at = s.origin
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
		e.buf = jsontext.AppendString(e.buf, f.Name)
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
	e.at = saved
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
		f, err := toDouble(v, t)
		if err != nil {
			e.fail(err)
			return
		}
		e.buf = jsontext.AppendFloat(e.buf, float64(f))
		return
	case schema.String:
		if s, ok := v.(starlark.String); ok {
			e.buf = jsontext.AppendString(e.buf, string(s))
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
			e.buf = jsontext.AppendString(e.buf, x.item.Name)
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
		e.buf = jsontext.AppendString(e.buf, keys[i])
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
