package compiler

import (
	"bytes"
	"encoding/base64"
	"fmt"
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
	depth  int  // of the value being written
	deep   bool // the depth limit was reported
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
	e := getEncoder()
	defer e.put()
	data, errs := e.encodeRoot(s)
	return bytes.Clone(data), errs
}

// encodeRoot encodes the exported value with a trailing newline into the
// encoder's buffer, which it returns: it is valid until e.put.
func (e *encoder) encodeRoot(s *Struct) ([]byte, []encodeError) {
	e.path = append(e.path, pathSeg{name: s.t.Name})
	e.structValue(s)
	e.buf = append(e.buf, '\n')
	return e.buf, e.errs
}

// encoders keeps encoders, and their grown buffers, between configs.
var encoders = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 64<<10)} }}

func getEncoder() *encoder { return encoders.Get().(*encoder) }

// put gives the encoder, and its buffer, to the next config.
func (e *encoder) put() {
	*e = encoder{buf: e.buf[:0], path: e.path[:0]}
	encoders.Put(e)
}

// enter counts one level of nesting, and reports whether the value may be
// written: values nest at most MaxDepth deep.
func (e *encoder) enter() bool {
	if e.depth++; e.depth <= MaxDepth {
		return true
	}
	if !e.deep {
		e.deep = true
		e.fail(errorf("%s", depthMsg))
	}
	e.buf = append(e.buf, "null"...)
	return false
}

// depthMsg is the error of a value nested too deep, in every encoding.
var depthMsg = fmt.Sprintf("value nested more than %d deep (structs, lists, sets and maps count, the exported struct as 1)", MaxDepth)

func (e *encoder) structValue(s *Struct) {
	saved := e.at
	e.at = s.origin
	defer func() { e.depth--; e.at = saved }()
	if !e.enter() {
		return
	}
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
			if err := checkUTF8(string(s)); err != nil {
				e.fail(err)
				return
			}
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
	defer func() { e.depth-- }()
	if !e.enter() {
		return
	}
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

// set writes a set as an array in canonical order without duplicates
// (compareValues).
func (e *encoder) set(elem *schema.Type, l *starlark.List) {
	defer func() { e.depth-- }()
	if !e.enter() {
		return
	}
	elems := sortedSet(elem, l)
	if len(elems) == 0 {
		e.buf = append(e.buf, '[', ']')
		return
	}
	e.buf = append(e.buf, '[')
	e.indent++
	for i, el := range elems {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.newline()
		e.path = append(e.path, pathSeg{index: el.index})
		e.value(elem, el.v)
		e.path = e.path[:len(e.path)-1]
	}
	e.indent--
	e.newline()
	e.buf = append(e.buf, ']')
}

// mapValue writes a map as an object with keys in canonical order
// (compareValues).
func (e *encoder) mapValue(t *schema.Type, d *starlark.Dict) {
	defer func() { e.depth-- }()
	if !e.enter() {
		return
	}
	if d.Len() == 0 {
		e.buf = append(e.buf, '{', '}')
		return
	}
	for _, k := range d.Keys() {
		if _, ok := mapKey(t.Key, k); !ok {
			e.fail(errorf("map key %s cannot be a JSON object key (want string, enum or integer keys)", describe(k)))
			return
		}
	}
	e.buf = append(e.buf, '{')
	e.indent++
	for n, kv := range sortedMap(t.Key, d) {
		if n > 0 {
			e.buf = append(e.buf, ',')
		}
		e.newline()
		k, _ := mapKey(t.Key, kv[0])
		e.buf = jsontext.AppendString(e.buf, k)
		e.buf = append(e.buf, ':', ' ')
		e.path = append(e.path, pathSeg{key: kv[0]})
		e.value(t.Elem, kv[1])
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
