package schema

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/diag"
)

// A linker turns the syntax tree of one file, whose includes are linked
// already, into a File: it resolves types and evaluates constants and
// defaults as Apache Thrift's compiler does, and reports what that
// compiler refuses (and a few things cfg refuses besides, see the README)
// at its position.
type linker struct {
	l     *Loader
	path  string
	file  *File
	incs  []include // in order; two may share a name
	decls map[string]astDef

	typedefs  map[string]*Type
	resolving map[string]bool
	// viaTypedef holds the types written as the name of a typedef: Thrift's
	// compiler takes a reference to a struct constant for those only.
	viaTypedef map[*Type]bool
	consts     map[string]Const
	evaluting  map[string]bool
	// order is the index of each declaration; cur that of the one whose
	// value is being evaluated. Thrift's compiler reads a value only with
	// the types and constants declared before it.
	order map[string]int
	cur   int
}

type include struct {
	name string
	file *File
}

func (k *linker) errorf(pos astPos, format string, args ...any) error {
	return diag.List{diag.Errorf(diag.Pos{File: k.path, Line: pos.line, Col: pos.col}, format, args...)}
}

func (k *linker) posOf(pos astPos) diag.Pos {
	return diag.Pos{File: k.path, Line: pos.line, Col: pos.col}
}

// includeName is the name a file is included by: its base name without
// .thrift (a.b for "dir/a.b.thrift").
func includeName(p string) string { return strings.TrimSuffix(path.Base(p), ".thrift") }

func (l *Loader) link(p string, f *astFile) error {
	k := &linker{l: l, path: p, decls: map[string]astDef{}, typedefs: map[string]*Type{},
		resolving: map[string]bool{}, consts: map[string]Const{}, evaluting: map[string]bool{}, viaTypedef: map[*Type]bool{}}
	file := &File{
		Path:      p,
		Structs:   map[string]*Struct{},
		Enums:     map[string]*Enum{},
		Typedefs:  map[string]*Typedef{},
		Constants: map[string]*Constant{},
		Includes:  map[string]*File{},
	}
	k.file = file
	for _, inc := range f.includes {
		q, _ := IncludePath(p, inc.path) // checked when parsed
		name := includeName(q)
		k.incs = append(k.incs, include{name, l.files[q]})
		if file.Includes[name] == nil {
			file.Includes[name] = l.files[q]
		}
	}
	// Declare every name, and the structs and enums themselves, so that
	// fields may refer to types declared later.
	k.order = map[string]int{}
	for i, d := range f.defs {
		name := d.defName()
		k.order[name] = i
		if prev, ok := k.decls[name]; ok {
			return k.errorf(posOfDef(d), "%q is already declared at line %d", name, posOfDef(prev).line)
		}
		k.decls[name] = d
		pos := k.posOf(posOfDef(d))
		switch d := d.(type) {
		case *astStruct:
			s := &Struct{Name: d.name, File: p, Pos: pos, Type: d.kind, byName: map[string]*Field{}}
			file.Structs[d.name] = s
			l.structs[declKey{p, d.name}] = s
		case *astEnum:
			e, err := k.enum(d)
			if err != nil {
				return err
			}
			file.Enums[d.name] = e
			l.enums[declKey{p, d.name}] = e
		}
	}
	l.files[p] = file
	for _, d := range f.defs {
		switch d := d.(type) {
		case *astTypedef:
			t, err := k.typedef(d.name)
			if err != nil {
				return err
			}
			file.Typedefs[d.name] = &Typedef{Name: d.name, Target: t, Pos: k.posOf(d.astPos)}
		case *astStruct:
			if err := k.fields(file.Structs[d.name], d); err != nil {
				return err
			}
		case *astService:
			if err := k.service(d); err != nil {
				return err
			}
		}
	}
	for i, d := range f.defs {
		k.cur = i
		switch d := d.(type) {
		case *astConstDef:
			v, err := k.constant(d.name)
			if err != nil {
				return err
			}
			t, _ := k.resolve(d.typ)
			file.Constants[d.name] = &Constant{Name: d.name, Type: t, Value: v, Pos: k.posOf(d.astPos)}
		case *astStruct:
			s := file.Structs[d.name]
			for i, af := range d.fields {
				if af.def == nil {
					continue
				}
				fld := s.Fields[i]
				if err := k.declaredBefore(af.typ); err != nil {
					return err
				}
				v, err := k.value(af.def, fld.Type)
				if err != nil {
					return diag.List{diag.Errorf(err.pos, "%s.%s: default: %s", d.name, af.name, err.msg)}
				}
				fld.Default = v
			}
		}
	}
	return nil
}

func posOfDef(d astDef) astPos {
	switch d := d.(type) {
	case *astStruct:
		return d.astPos
	case *astEnum:
		return d.astPos
	case *astTypedef:
		return d.astPos
	case *astConstDef:
		return d.astPos
	case *astService:
		return d.astPos
	}
	return astPos{}
}

// enum computes the values of an enum's items: given, or one more than the
// previous item's (the first is 0); each must fit an i32.
func (k *linker) enum(d *astEnum) (*Enum, error) {
	e := &Enum{Name: d.name, File: k.path, Pos: k.posOf(d.astPos), byName: map[string]*EnumItem{}, byValue: map[int32]*EnumItem{}}
	next := int64(0)
	for _, it := range d.items {
		v := next
		if it.hasValue {
			v = it.value
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			if it.hasValue {
				return nil, k.errorf(it.astPos, "%s.%s: got %d, want a value in the range of i32 (%d..%d)", d.name, it.name, v, math.MinInt32, math.MaxInt32)
			}
			return nil, k.errorf(it.astPos, "%s.%s: the value after %d overflows i32", d.name, it.name, v-1)
		}
		if e.byName[it.name] != nil {
			return nil, k.errorf(it.astPos, "%s.%s: declared twice", d.name, it.name)
		}
		item := &EnumItem{Enum: e, Name: it.name, Value: int32(v), Pos: k.posOf(it.astPos)}
		e.Items = append(e.Items, item)
		e.byName[it.name] = item
		if e.byValue[item.Value] == nil {
			e.byValue[item.Value] = item
		}
		next = v + 1
	}
	return e, nil
}

// fields links the fields of a struct. A field without an ID, or with an
// ID of 0 or less, gets -1, -2, ... in declaration order, as Thrift's
// compiler assigns them.
func (k *linker) fields(s *Struct, d *astStruct) error {
	auto := int64(-1)
	byID := map[int16]*Field{}
	var withDefault *astField // a union's member with a default
	for i, af := range d.fields {
		id := af.id
		if !af.hasID || id <= 0 {
			id = auto
			auto--
		}
		if id > math.MaxInt16 || id < math.MinInt16 {
			return k.errorf(af.idPos, "%s.%s: got field ID %d, want at most %d", d.name, af.name, id, math.MaxInt16)
		}
		t, err := k.resolve(af.typ)
		if err != nil {
			return err
		}
		fld := &Field{ID: int16(id), Name: af.name, Index: i, Type: t, Required: af.req, Pos: k.posOf(af.astPos)}
		if s.Type == Union && fld.Required == Required {
			// A union takes one member: none can be required.
			fld.Required = Optional
		}
		if s.Type == Union && af.def != nil {
			// It takes that member when built without one: at most one
			// has a default, as for Thrift's compiler.
			if withDefault != nil {
				return k.errorf(af.astPos, "%s.%s: a second default in union %s (%q has one); a union takes at most one", d.name, af.name, d.name, withDefault.name)
			}
			withDefault = af
		}
		if prev := byID[fld.ID]; prev != nil {
			return k.errorf(af.astPos, "%s.%s: field ID %d is already used by %q", d.name, af.name, id, prev.Name)
		}
		if s.byName[af.name] != nil {
			return k.errorf(af.namePos, "%s.%s: declared twice", d.name, af.name)
		}
		byID[fld.ID] = fld
		s.Fields = append(s.Fields, fld)
		s.byName[af.name] = fld
	}
	s.byID = slices.SortedFunc(slices.Values(s.Fields), func(a, b *Field) int { return int(a.ID) - int(b.ID) })
	return nil
}

// service checks that the types a service uses exist, and what it extends.
func (k *linker) service(d *astService) error {
	if d.extends != "" {
		if _, ok := k.decls[d.extends].(*astService); !ok && !k.includedService(d.extends) {
			return k.errorf(d.extendPos, "service %s extends %q: no such service", d.name, d.extends)
		}
	}
	for _, fn := range d.functions {
		if fn.ret != nil {
			if _, err := k.resolve(fn.ret); err != nil {
				return err
			}
		}
		for _, list := range [][]*astField{fn.args, fn.throws} {
			for _, a := range list {
				if _, err := k.resolve(a.typ); err != nil {
					return err
				}
			}
		}
	}
	k.l.services[declKey{k.path, d.name}] = true
	return nil
}

func (k *linker) includedService(name string) bool {
	for _, inc := range k.incs {
		if rest, ok := strings.CutPrefix(name, inc.name+"."); ok && k.l.services[declKey{inc.file.Path, rest}] {
			return true
		}
	}
	return false
}

var baseKinds = map[string]Kind{"bool": Bool, "byte": I8, "i8": I8, "i16": I16, "i32": I32, "i64": I64,
	"double": Double, "string": String, "slist": String, "binary": Binary}

// resolve returns the type an IDL type names.
func (k *linker) resolve(t *astType) (*Type, error) {
	switch t.name {
	case "list", "set":
		e, err := k.resolve(t.value)
		if err != nil {
			return nil, err
		}
		kind := List
		if t.name == "set" {
			kind = Set
		}
		return &Type{Kind: kind, Elem: e}, nil
	case "map":
		key, err := k.resolve(t.key)
		if err != nil {
			return nil, err
		}
		v, err := k.resolve(t.value)
		if err != nil {
			return nil, err
		}
		return &Type{Kind: Map, Key: key, Elem: v}, nil
	}
	if kind, ok := baseKinds[t.name]; ok {
		return &Type{Kind: kind}, nil
	}
	if d, ok := k.decls[t.name]; ok {
		switch d := d.(type) {
		case *astStruct:
			return &Type{Kind: StructKind, Struct: k.file.Structs[d.name]}, nil
		case *astEnum:
			return &Type{Kind: EnumKind, Enum: k.file.Enums[d.name]}, nil
		case *astTypedef:
			td, err := k.typedef(d.name)
			if err != nil {
				return nil, err
			}
			return k.named(td), nil
		case *astService:
			return nil, k.errorf(t.astPos, "%q is a service, want a type", t.name)
		case *astConstDef:
			return nil, k.errorf(t.astPos, "%q is a constant, want a type", t.name)
		}
	}
	for _, inc := range k.incs {
		rest, ok := strings.CutPrefix(t.name, inc.name+".")
		if !ok {
			continue
		}
		if s := inc.file.Structs[rest]; s != nil {
			return &Type{Kind: StructKind, Struct: s}, nil
		}
		if e := inc.file.Enums[rest]; e != nil {
			return &Type{Kind: EnumKind, Enum: e}, nil
		}
		if td := inc.file.Typedefs[rest]; td != nil {
			return k.named(td.Target), nil
		}
	}
	return nil, k.errorf(t.astPos, "unknown type %q", t.name)
}

// declaredBefore checks that the types named in t, used with a value, are
// declared before the declaration being evaluated.
func (k *linker) declaredBefore(t *astType) error {
	for ; t != nil; t = t.value {
		if t.key != nil {
			if err := k.declaredBefore(t.key); err != nil {
				return err
			}
		}
		if i, ok := k.order[t.name]; ok && i >= k.cur {
			if _, ok := k.decls[t.name].(*astConstDef); !ok {
				return k.errorf(t.astPos, "got type %s, declared at line %d, want one declared before its use with a value (as Thrift's compiler reads them)", t.name, posOfDef(k.decls[t.name]).line)
			}
		}
	}
	return nil
}

// named returns a copy of the target of a typedef, marked as written
// through it.
func (k *linker) named(target *Type) *Type {
	cp := *target
	k.viaTypedef[&cp] = true
	return &cp
}

// typedef resolves a typedef of this file.
func (k *linker) typedef(name string) (*Type, error) {
	if t := k.typedefs[name]; t != nil {
		return t, nil
	}
	d := k.decls[name].(*astTypedef)
	if k.resolving[name] {
		return nil, k.errorf(d.astPos, "typedef %s refers to itself", name)
	}
	k.resolving[name] = true
	t, err := k.resolve(d.typ)
	delete(k.resolving, name)
	if err != nil {
		return nil, err
	}
	k.typedefs[name] = t
	return t, nil
}

// constant evaluates a constant of this file.
func (k *linker) constant(name string) (Const, error) {
	if v, ok := k.consts[name]; ok {
		return v, nil
	}
	d := k.decls[name].(*astConstDef)
	if k.evaluting[name] {
		return nil, k.errorf(d.astPos, "constant %s refers to itself", name)
	}
	k.evaluting[name] = true
	defer delete(k.evaluting, name)
	defer func(cur int) { k.cur = cur }(k.cur)
	k.cur = k.order[name]
	if err := k.declaredBefore(d.typ); err != nil {
		return nil, err
	}
	t, err := k.resolve(d.typ)
	if err != nil {
		return nil, err
	}
	v, verr := k.value(d.value, t)
	if verr != nil {
		return nil, diag.List{diag.Errorf(verr.pos, "const %s: %s", name, verr.msg)}
	}
	k.consts[name] = v
	return v, nil
}

// A valueError is a constant that does not fit its type, at its position.
type valueError struct {
	pos diag.Pos
	msg string
}

func (k *linker) valueErrorf(c *astConst, format string, args ...any) *valueError {
	return &valueError{k.posOf(c.astPos), fmt.Sprintf(format, args...)}
}

// describeConst renders a constant value for a "got X" message.
func describeConst(c *astConst) string {
	switch {
	case c.kind == tokString:
		return "string " + strconv.Quote(c.str)
	case c.kind == tokInt:
		return "integer " + c.text
	case c.kind == tokDouble:
		return "double " + c.text
	case c.kind == tokIdent:
		return c.text
	case c.isMap:
		return "a map"
	}
	return "a list"
}

// value evaluates the constant c as a value of type t.
func (k *linker) value(c *astConst, t *Type) (Const, *valueError) {
	switch c.kind {
	case tokIdent:
		switch c.text {
		case "true", "false":
			if _, isDecl := k.decls[c.text]; !isDecl {
				n := int64(0)
				if c.text == "true" {
					n = 1
				}
				return k.intValue(c, n, t)
			}
		}
		return k.reference(c, t)
	case tokInt:
		n, err := parseInt(c.text)
		if err != nil {
			return nil, k.valueErrorf(c, "%s: %v", c.text, err)
		}
		return k.intValue(c, n, t)
	case tokDouble:
		if t.Kind != Double {
			break
		}
		f, err := strconv.ParseFloat(c.text, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, k.valueErrorf(c, "got %s, want a finite double", c.text)
		}
		return f, nil
	case tokString:
		switch t.Kind {
		case String:
			if !utf8.ValidString(c.str) {
				return nil, k.valueErrorf(c, "got string with invalid UTF-8, want UTF-8 text (binary holds bytes)")
			}
			return c.str, nil
		case Binary:
			return []byte(c.str), nil
		}
	default:
		switch {
		case (!c.isMap || len(c.pairs) == 0) && (t.Kind == List || t.Kind == Set):
			// {} is an empty list or set too, as for Thrift's compiler.
			out := make([]Const, 0, len(c.list))
			for _, e := range c.list {
				v, err := k.value(e, t.Elem)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		case c.isMap && t.Kind == Map:
			out := make([]ConstPair, 0, len(c.pairs))
			for _, kv := range c.pairs {
				key, err := k.value(kv[0], t.Key)
				if err != nil {
					return nil, err
				}
				v, err := k.value(kv[1], t.Elem)
				if err != nil {
					return nil, err
				}
				out = append(out, ConstPair{key, v})
			}
			return out, nil
		case c.isMap && t.Kind == StructKind:
			sc := &StructConst{Struct: t.Struct, Fields: map[string]Const{}}
			for _, kv := range c.pairs {
				if kv[0].kind != tokString {
					return nil, k.valueErrorf(kv[0], "got %s, want the name of a field of %s as a literal", describeConst(kv[0]), t.Struct.Name)
				}
				fld := t.Struct.Field(kv[0].str)
				if fld == nil {
					return nil, k.valueErrorf(kv[0], "%s has no field %q", t.Struct.Name, kv[0].str)
				}
				v, err := k.value(kv[1], fld.Type)
				if err != nil {
					return nil, err
				}
				sc.Fields[fld.Name] = v
			}
			return sc, nil
		}
	}
	return nil, k.valueErrorf(c, "got %s, want %s", describeConst(c), t)
}

// intValue converts an integer constant to t.
func (k *linker) intValue(c *astConst, n int64, t *Type) (Const, *valueError) {
	switch t.Kind {
	case Bool:
		return n != 0, nil
	case Double:
		return float64(n), nil
	case EnumKind:
		if it := t.Enum.ItemByValue(int32(n)); it != nil && int64(it.Value) == n {
			return it, nil
		}
		return nil, k.valueErrorf(c, "got %d, want a value of enum %s", n, t.Enum.Name)
	}
	if lo, hi, ok := t.Kind.IntRange(); ok {
		if n < lo || n > hi {
			return nil, k.valueErrorf(c, "got %d, want %s (range %d..%d)", n, t, lo, hi)
		}
		return n, nil
	}
	return nil, k.valueErrorf(c, "got %s, want %s", describeConst(c), t)
}

// reference evaluates a name used as a constant: a constant (NAME,
// include.NAME) or an enum value (Enum.VALUE, include.Enum.VALUE).
func (k *linker) reference(c *astConst, t *Type) (Const, *valueError) {
	name := c.text
	if d, ok := k.decls[name].(*astConstDef); ok {
		if k.order[name] >= k.cur {
			return nil, k.valueErrorf(c, "got constant %s, declared at line %d, want one declared before its use (as Thrift's compiler reads them)", name, d.line)
		}
		// The constant's own text, read as t.
		if k.evaluting[name] {
			return nil, k.valueErrorf(c, "constant %s refers to itself", name)
		}
		k.evaluting[name] = true
		defer delete(k.evaluting, name)
		ct, err := k.resolve(d.typ)
		if err != nil {
			return nil, k.valueErrorf(c, "%s: %v", name, err)
		}
		if verr := k.checkRef(c, ct, t); verr != nil {
			return nil, verr
		}
		defer func(cur int) { k.cur = cur }(k.cur)
		k.cur = k.order[name]
		if _, verr := k.value(d.value, ct); verr != nil {
			return nil, verr
		}
		return k.value(d.value, t)
	}
	if item, ok := enumItemName(name); ok && t.Kind == EnumKind {
		// Thrift's compiler looks a value of an enum up in the enum of
		// the type, whatever the prefix says.
		if it := t.Enum.Item(item); it != nil {
			return it, nil
		}
		if strings.Contains(item, ".") {
			return nil, k.valueErrorf(c, "got %s, want a value of enum %s (Thrift's compiler looks it up as %q: it drops two names at most)", name, t.Enum.Name, item)
		}
		return nil, k.valueErrorf(c, "got %s, want a value of enum %s (it has no value %q)", name, t.Enum.Name, item)
	}
	if prefix, item, ok := cutLast(name); ok {
		if e := k.enumNamed(prefix); e != nil {
			it := e.Item(item)
			if it == nil {
				return nil, k.valueErrorf(c, "enum %s has no value %q", e.Name, item)
			}
			return k.enumValue(c, it, t)
		}
	}
	for _, inc := range k.incs {
		rest, ok := strings.CutPrefix(name, inc.name+".")
		if !ok {
			continue
		}
		if cn := inc.file.Constants[rest]; cn != nil {
			if verr := k.checkRef(c, cn.Type, t); verr != nil {
				return nil, verr
			}
			if v, ok := convertConst(cn.Value, cn.Type, t); ok {
				return v, nil
			}
			return nil, k.valueErrorf(c, "got %s (%s), want %s", name, cn.Type, t)
		}
	}
	if t.Kind == EnumKind && t.Enum.Item(name) != nil {
		return nil, k.valueErrorf(c, "got %s, want %s.%s (Thrift's compiler takes no unqualified enum value)", name, t.Enum.Name, name)
	}
	return nil, k.valueErrorf(c, "unknown constant %q", name)
}

// checkRef refuses the references to constants that Thrift's compiler
// refuses: to a constant of a struct type where the type is not written as
// a typedef, and to a constant of an enum type where the value is not of
// an enum type.
func (k *linker) checkRef(c *astConst, ct, t *Type) *valueError {
	switch {
	case ct.Kind == StructKind && !k.viaTypedef[t]:
		return k.valueErrorf(c, "got constant %s of struct type %s, want a value (Thrift's compiler takes none here)", c.text, ct)
	case ct.Kind == EnumKind && t.Kind != EnumKind:
		return k.valueErrorf(c, "got constant %s of enum type %s, want %s", c.text, ct, t)
	}
	return nil
}

// enumItemName is the name Thrift's compiler looks a value of an enum up
// by: what follows the first dot and, when there is another, what follows
// that (RED in Color.RED and in include.Color.RED, Color.RED in
// a.b.Color.RED, so that an enum of a file included as a.b has no value
// that can be written).
func enumItemName(s string) (string, bool) {
	_, rest, ok := strings.Cut(s, ".")
	if !ok {
		return "", false
	}
	if _, after, ok := strings.Cut(rest, "."); ok {
		rest = after
	}
	return rest, true
}

func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// enumNamed finds an enum (or a typedef of one) by name, local or
// included.
func (k *linker) enumNamed(name string) *Enum {
	switch d := k.decls[name].(type) {
	case *astEnum:
		return k.file.Enums[d.name]
	case *astTypedef:
		if t, err := k.typedef(d.name); err == nil && t.Kind == EnumKind {
			return t.Enum
		}
	}
	for _, inc := range k.incs {
		if rest, ok := strings.CutPrefix(name, inc.name+"."); ok {
			if e := inc.file.Enums[rest]; e != nil {
				return e
			}
			if td := inc.file.Typedefs[rest]; td != nil && td.Target.Kind == EnumKind {
				return td.Target.Enum
			}
		}
	}
	return nil
}

// enumValue converts an enum value to t: an enum (the value of the same
// number, when it is another enum) or an integer.
func (k *linker) enumValue(c *astConst, it *EnumItem, t *Type) (Const, *valueError) {
	if t.Kind == EnumKind {
		if it.Enum == t.Enum {
			return it, nil
		}
		if other := t.Enum.ItemByValue(it.Value); other != nil {
			return other, nil
		}
		return nil, k.valueErrorf(c, "got %s (%d), want a value of enum %s", it, it.Value, t.Enum.Name)
	}
	return k.intValue(c, int64(it.Value), t)
}

// convertConst converts the value v of a constant of type from to type t.
func convertConst(v Const, from, t *Type) (Const, bool) {
	switch v := v.(type) {
	case int64:
		switch t.Kind {
		case Double:
			return float64(v), true
		case Bool:
			return v != 0, true
		case EnumKind:
			it := t.Enum.ItemByValue(int32(v))
			return it, it != nil && int64(it.Value) == v
		}
		lo, hi, ok := t.Kind.IntRange()
		return v, ok && lo <= v && v <= hi
	case *EnumItem:
		if t.Kind == EnumKind {
			if v.Enum == t.Enum {
				return v, true
			}
			it := t.Enum.ItemByValue(v.Value)
			return it, it != nil
		}
		return convertConst(int64(v.Value), from, t)
	}
	if from.String() == t.String() {
		return v, true
	}
	return nil, false
}
