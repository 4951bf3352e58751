package compiler

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/schema"
)

// A valueError is a type error in a value, with the path of the field inside
// the value where it was found. Path segments are prepended as the error
// travels up, so the successful path costs nothing.
type valueError struct {
	path  []string // reversed: innermost segment first
	msg   string
	decl  *diag.Pos // the declaration of the field, when known
	kwarg string    // the keyword argument of a constructor call at fault
}

func (e *valueError) Error() string {
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		b.WriteString(e.path[i])
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// at prepends a path segment (".field", "[3]", `["key"]` or a type name).
func (e *valueError) at(seg string) *valueError {
	e.path = append(e.path, seg)
	return e
}

func errorf(format string, args ...any) *valueError {
	return &valueError{msg: fmt.Sprintf(format, args...)}
}

// describe renders a value for a "got X" message: its type and, for
// scalars, a short representation.
func describe(v starlark.Value) string {
	switch v := v.(type) {
	case starlark.String:
		s := v.String()
		if len(s) > 40 {
			s = s[:37] + `..."`
		}
		return "string " + s
	case starlark.Int, starlark.Float, starlark.Bool:
		return v.Type() + " " + v.String()
	case *Struct:
		return v.t.Name
	case *Enum:
		return v.String()
	case starlark.NoneType:
		return "None"
	}
	return v.Type()
}

// toDouble converts a float or an int to a finite double. -0.0 becomes
// 0.0: the two are equal, and canonical form writes each value one way.
func toDouble(v starlark.Value, t *schema.Type) (starlark.Float, *valueError) {
	var f float64
	switch x := v.(type) {
	case starlark.Float:
		f = float64(x)
	case starlark.Int:
		f = float64(x.Float())
	default:
		return 0, wantMismatch(v, t)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errorf("got %s, want a finite double", starlark.Float(f))
	}
	if f == 0 {
		f = 0 // not -0
	}
	return starlark.Float(f), nil
}

// checkUTF8 checks that a string value is UTF-8 text: a Thrift string is,
// and JSON could not carry it otherwise.
func checkUTF8(s string) *valueError {
	if utf8.ValidString(s) {
		return nil
	}
	for i := 0; ; {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return errorf("got string with invalid UTF-8 (byte 0x%02x at offset %d), want UTF-8 text (binary holds bytes)", s[i], i)
		}
		i += size
	}
}

// maxEnumValues bounds how many values of an enum an error lists.
const maxEnumValues = 10

// enumValues lists the values of e for an error: "one of FAST, SAFE".
func enumValues(e *schema.Enum) string {
	names := e.ItemNames()
	if len(names) > maxEnumValues {
		return fmt.Sprintf("one of %s and %d more", strings.Join(names[:maxEnumValues], ", "), len(names)-maxEnumValues)
	}
	return "one of " + strings.Join(names, ", ")
}

func wantMismatch(v starlark.Value, t *schema.Type) *valueError {
	return errorf("got %s, want %s", describe(v), t)
}

// convert checks that v is a value of type t and returns the value to store:
// containers are copied, so later changes to v do not bypass the check. It
// makes the conversions a user expects and no others (see the package doc).
func convert(t *schema.Type, v starlark.Value) (starlark.Value, *valueError) {
	switch t.Kind {
	case schema.Bool:
		if b, ok := v.(starlark.Bool); ok {
			return b, nil
		}
	case schema.I8, schema.I16, schema.I32, schema.I64:
		i, ok := v.(starlark.Int)
		if !ok {
			break
		}
		lo, hi, _ := t.Kind.IntRange()
		if n, ok := i.Int64(); !ok || n < lo || n > hi {
			return nil, errorf("got %s, want %s (range %d..%d)", i, t, lo, hi)
		}
		return i, nil
	case schema.Double:
		f, err := toDouble(v, t)
		if err != nil {
			return nil, err
		}
		return f, nil
	case schema.String:
		if s, ok := v.(starlark.String); ok {
			if err := checkUTF8(string(s)); err != nil {
				return nil, err
			}
			return v, nil // not s: boxing it again would allocate
		}
	case schema.Binary:
		switch x := v.(type) {
		case starlark.Bytes:
			return v, nil
		case starlark.String:
			return starlark.Bytes(x), nil
		}
	case schema.EnumKind:
		if e, ok := v.(*Enum); ok && e.item.Enum == t.Enum {
			return e, nil
		}
		return nil, errorf("got %s, want %s (%s)", describe(v), t, enumValues(t.Enum))
	case schema.StructKind:
		if s, ok := v.(*Struct); ok && s.t == t.Struct {
			return s, nil
		}
		if _, ok := v.(*starlark.Dict); ok {
			return nil, errorf("got dict, want %s (build it with %s(...))", t, t.Struct.Name)
		}
	case schema.List, schema.Set:
		var elems starlark.Indexable
		switch x := v.(type) {
		case *starlark.List, starlark.Tuple:
			elems = v.(starlark.Indexable)
		case *starlark.Set:
			if t.Kind == schema.Set {
				// A set has no index: its elements, in order, do.
				elems = starlark.Tuple(slices.Collect(x.Elements()))
			}
		}
		if elems == nil {
			break
		}
		// Converting an element runs no Starlark code, so the
		// container cannot change meanwhile.
		out := make([]starlark.Value, elems.Len())
		for i := range out {
			c, err := convert(t.Elem, elems.Index(i))
			if err != nil {
				return nil, err.at(fmt.Sprintf("[%d]", i))
			}
			out[i] = c
		}
		return starlark.NewList(out), nil
	case schema.Map:
		d, ok := v.(*starlark.Dict)
		if !ok {
			break
		}
		out := starlark.NewDict(d.Len())
		for _, kv := range d.Items() {
			k, err := convert(t.Key, kv[0])
			if err != nil {
				return nil, err.at("[" + kv[0].String() + "] (key)")
			}
			val, err := convert(t.Elem, kv[1])
			if err != nil {
				return nil, err.at("[" + kv[0].String() + "]")
			}
			if err := out.SetKey(k, val); err != nil {
				return nil, errorf("%v", err).at("[" + kv[0].String() + "]")
			}
		}
		return out, nil
	}
	return nil, wantMismatch(v, t)
}

// fromConst converts an IDL constant to a (fresh, mutable) Starlark value.
func fromConst(t *schema.Type, c schema.Const, o origin) starlark.Value {
	switch c := c.(type) {
	case bool:
		return starlark.Bool(c)
	case int64:
		return starlark.MakeInt64(c)
	case float64:
		return starlark.Float(c)
	case string:
		return starlark.String(c)
	case []byte:
		return starlark.Bytes(c)
	case *schema.EnumItem:
		return &Enum{item: c}
	case []schema.Const:
		elems := make([]starlark.Value, len(c))
		for i, e := range c {
			elems[i] = fromConst(t.Elem, e, o)
		}
		return starlark.NewList(elems)
	case []schema.ConstPair:
		d := starlark.NewDict(len(c))
		for _, kv := range c {
			_ = d.SetKey(fromConst(t.Key, kv.Key, o), fromConst(t.Elem, kv.Value, o))
		}
		return d
	case *schema.StructConst:
		s := newStruct(c.Struct, o)
		for name, fc := range c.Fields {
			f := c.Struct.Field(name)
			s.fields[f.Index] = fromConst(f.Type, fc, o)
		}
		s.setDefaults(nil) // as the struct's constructor would
		return s
	}
	panic(fmt.Sprintf("unexpected constant %T", c))
}

// StructType is the constructor of a Thrift struct or union: a callable
// taking keyword arguments only.
type StructType struct{ t *schema.Struct }

var (
	_ starlark.Callable    = (*StructType)(nil)
	_ starlark.HasAttrs    = (*Struct)(nil)
	_ starlark.HasSetField = (*Struct)(nil)
	_ starlark.Comparable  = (*Struct)(nil)
	_ starlark.Comparable  = (*Enum)(nil)
	_ starlark.HasAttrs    = (*EnumType)(nil)
)

func (st *StructType) Name() string         { return st.t.Name }
func (st *StructType) String() string       { return "<struct " + st.t.Name + ">" }
func (st *StructType) Type() string         { return "struct_type" }
func (st *StructType) Freeze()              {}
func (st *StructType) Truth() starlark.Bool { return true }
func (st *StructType) Hash() (uint32, error) {
	return starlark.String(st.t.File + ":" + st.t.Name).Hash()
}

// CallInternal constructs a value: IDL defaults first, then each keyword
// argument checked against its field.
func (st *StructType) CallInternal(thread *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) > 0 {
		return nil, errorf("%s takes keyword arguments only, got %d positional", st.t.Name, len(args))
	}
	s := newStruct(st.t, originOf(thread))
	set := 0
	var unset []bool // fields explicitly set to None, which keep no default
	for _, kv := range kwargs {
		name := string(kv[0].(starlark.String))
		if err := s.set(name, kv[1]); err != nil {
			return nil, err.at(st.t.Name)
		}
		if kv[1] != starlark.None {
			set++
		} else if f := st.t.Field(name); f.Default != nil {
			if unset == nil {
				unset = make([]bool, len(st.t.Fields))
			}
			unset[f.Index] = true
		}
	}
	s.setDefaults(unset)
	if st.t.Type == schema.Union && set > 1 {
		var names []string
		for _, kv := range kwargs {
			if kv[1] != starlark.None {
				names = append(names, fmt.Sprintf("%q", string(kv[0].(starlark.String))))
			}
		}
		return nil, errorf("union takes exactly one member, got %d (%s)", set, strings.Join(names, ", ")).at(st.t.Name)
	}
	return s, nil
}

// Struct is a value of a Thrift struct or union type.
type Struct struct {
	t      *schema.Struct
	fields []starlark.Value // by field index; nil when unset
	origin origin           // where it was constructed
	frozen bool
}

func newStruct(t *schema.Struct, o origin) *Struct {
	return &Struct{t: t, fields: make([]starlark.Value, len(t.Fields)), origin: o}
}

// origin records where a value was built: the constructor call, and the
// line of the top-level program (the config being compiled) that led to it,
// when the call was made inside a module's function.
type origin struct {
	pos, top syntax.Position
}

// originOf returns the origin of a value built by the builtin now running.
func originOf(thread *starlark.Thread) origin {
	o := origin{pos: thread.CallFrame(1).Pos}
	if d := thread.CallStackDepth(); d > 2 {
		o.top = thread.CallFrame(d - 1).Pos
	}
	return o
}

// place returns where to report a problem with the value: the line of the
// config being compiled when known, with a note at the constructor call in
// a module; fallback when the value has no origin (an IDL default).
func (o origin) place(fallback syntax.Position) (diag.Pos, []diag.Note) {
	switch {
	case o.top.IsValid() && o.pos.IsValid() && o.top != o.pos:
		return posOf(o.top), []diag.Note{{Pos: posOf(o.pos), Msg: "value built here"}}
	case o.pos.IsValid():
		return posOf(o.pos), nil
	}
	return posOf(fallback), nil
}

// setDefaults gives every unset field with an IDL default its default,
// except those listed in unset; a union takes the first member with a
// default when it has none.
func (s *Struct) setDefaults(unset []bool) {
	if s.t.Type == schema.Union {
		// A union without a member takes the first member with a default.
		if unset != nil || len(s.setFields()) > 0 {
			return
		}
		for i, f := range s.t.Fields {
			if f.Default != nil {
				s.fields[i] = fromConst(f.Type, f.Default, s.origin)
				return
			}
		}
		return
	}
	for i, f := range s.t.Fields {
		if f.Default != nil && s.fields[i] == nil && (unset == nil || !unset[i]) {
			s.fields[i] = fromConst(f.Type, f.Default, s.origin)
		}
	}
}

// set checks and stores one field. None unsets it.
func (s *Struct) set(name string, v starlark.Value) *valueError {
	f := s.t.Field(name)
	if f == nil {
		err := errorf("unknown field %q%s", name, diag.DidYouMean(name, s.t.FieldNames()))
		err.kwarg = name
		return err
	}
	if v == starlark.None {
		s.fields[f.Index] = nil
		return nil
	}
	c, err := convert(f.Type, v)
	if err != nil {
		err.decl, err.kwarg = &f.Pos, name
		return err.at("." + name)
	}
	if s.t.Type == schema.Union {
		clear(s.fields)
	}
	s.fields[f.Index] = c
	return nil
}

func (s *Struct) String() string {
	var b strings.Builder
	b.WriteString(s.t.Name)
	b.WriteByte('(')
	sep := ""
	for i, f := range s.t.Fields {
		if s.fields[i] != nil {
			fmt.Fprintf(&b, "%s%s=%s", sep, f.Name, s.fields[i])
			sep = ", "
		}
	}
	b.WriteByte(')')
	return b.String()
}

func (s *Struct) Type() string         { return s.t.Name }
func (s *Struct) Truth() starlark.Bool { return true }
func (s *Struct) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", s.t.Name)
}

func (s *Struct) Freeze() {
	if s.frozen {
		return
	}
	s.frozen = true
	for _, v := range s.fields {
		if v != nil {
			v.Freeze()
		}
	}
}

// Attr returns a field's value: None when unset.
func (s *Struct) Attr(name string) (starlark.Value, error) {
	f := s.t.Field(name)
	if f == nil {
		return nil, nil // starlark reports "has no .x field or method"
	}
	if v := s.fields[f.Index]; v != nil {
		return v, nil
	}
	return starlark.None, nil
}

func (s *Struct) AttrNames() []string { return s.t.FieldNames() }

// SetField checks and sets a field (obj.field = v).
func (s *Struct) SetField(name string, v starlark.Value) error {
	if s.frozen {
		return fmt.Errorf("cannot set %s.%s: value is frozen (it was built by another module; build a new one)", s.t.Name, name)
	}
	if err := s.set(name, v); err != nil {
		return err.at(s.t.Name)
	}
	return nil
}

// CompareSameType compares structs for equality, field by field.
func (s *Struct) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	o := y.(*Struct)
	switch op {
	case syntax.EQL, syntax.NEQ:
	default:
		return false, fmt.Errorf("%s %s %s not implemented", s.Type(), op, o.Type())
	}
	eq := s.t == o.t
	for i := 0; eq && i < len(s.fields); i++ {
		a, b := s.fields[i], o.fields[i]
		switch {
		case a == nil || b == nil:
			eq = a == nil && b == nil
		default:
			var err error
			if eq, err = starlark.EqualDepth(a, b, depth-1); err != nil {
				return false, err
			}
		}
	}
	return eq == (op == syntax.EQL), nil
}

// EnumType is the namespace of an enum's values: Priority.HIGH.
type EnumType struct {
	e      *schema.Enum
	values []*Enum
}

func newEnumType(e *schema.Enum) *EnumType {
	et := &EnumType{e: e}
	for _, it := range e.Items {
		et.values = append(et.values, &Enum{item: it})
	}
	return et
}

func (et *EnumType) String() string       { return "<enum " + et.e.Name + ">" }
func (et *EnumType) Type() string         { return "enum_type" }
func (et *EnumType) Freeze()              {}
func (et *EnumType) Truth() starlark.Bool { return true }
func (et *EnumType) Hash() (uint32, error) {
	return starlark.String(et.e.File + ":" + et.e.Name).Hash()
}
func (et *EnumType) AttrNames() []string { return et.e.ItemNames() }

func (et *EnumType) Attr(name string) (starlark.Value, error) {
	for _, v := range et.values {
		if v.item.Name == name {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%s has no value %q%s", et.e.Name, name, diag.DidYouMean(name, et.e.ItemNames()))
}

// Enum is one value of an enum.
type Enum struct{ item *schema.EnumItem }

func (e *Enum) String() string        { return e.item.String() }
func (e *Enum) Type() string          { return e.item.Enum.Name }
func (e *Enum) Freeze()               {}
func (e *Enum) Truth() starlark.Bool  { return true }
func (e *Enum) Hash() (uint32, error) { return uint32(e.item.Value), nil }

// Attr offers .name and .value.
func (e *Enum) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(e.item.Name), nil
	case "value":
		return starlark.MakeInt(int(e.item.Value)), nil
	}
	return nil, nil
}

func (e *Enum) AttrNames() []string { return []string{"name", "value"} }

// CompareSameType orders values of one enum by their numeric value.
func (e *Enum) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	o := y.(*Enum)
	if e.item.Enum != o.item.Enum {
		if op == syntax.EQL || op == syntax.NEQ {
			return op == syntax.NEQ, nil
		}
		return false, fmt.Errorf("cannot compare %s with %s", e.Type(), o.Type())
	}
	return threeway(op, int(e.item.Value)-int(o.item.Value)), nil
}

func threeway(op syntax.Token, c int) bool {
	switch op {
	case syntax.EQL:
		return c == 0
	case syntax.NEQ:
		return c != 0
	case syntax.LE:
		return c <= 0
	case syntax.LT:
		return c < 0
	case syntax.GE:
		return c >= 0
	case syntax.GT:
		return c > 0
	}
	panic(op)
}

// Typedef is a named alias of a primitive or container type; calling it
// checks and converts its argument.
type Typedef struct{ td *schema.Typedef }

func (t *Typedef) Name() string { return t.td.Name }
func (t *Typedef) String() string {
	return "<typedef " + t.td.Name + " = " + t.td.Target.String() + ">"
}
func (t *Typedef) Type() string          { return "typedef" }
func (t *Typedef) Freeze()               {}
func (t *Typedef) Truth() starlark.Bool  { return true }
func (t *Typedef) Hash() (uint32, error) { return starlark.String(t.td.Name).Hash() }

func (t *Typedef) CallInternal(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs(t.td.Name, args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	c, err := convert(t.td.Target, v)
	if err != nil {
		return nil, err.at(t.td.Name)
	}
	return c, nil
}

// schemaGlobals returns what load() of a .thrift file offers: every
// declaration by name, frozen.
func schemaGlobals(f *schema.File) starlark.StringDict {
	g := starlark.StringDict{}
	for name, s := range f.Structs {
		g[name] = &StructType{t: s}
	}
	for name, e := range f.Enums {
		g[name] = newEnumType(e)
	}
	for name, td := range f.Typedefs {
		switch td.Target.Kind {
		case schema.StructKind:
			g[name] = &StructType{t: td.Target.Struct}
		case schema.EnumKind:
			g[name] = newEnumType(td.Target.Enum)
		default:
			g[name] = &Typedef{td: td}
		}
	}
	for name, c := range f.Constants {
		g[name] = fromConst(c.Type, c.Value, origin{})
	}
	g.Freeze()
	return g
}

// setFields returns the indexes of the fields that are set.
func (s *Struct) setFields() []int {
	var idx []int
	for i, v := range s.fields {
		if v != nil {
			idx = append(idx, i)
		}
	}
	return slices.Clip(idx)
}
