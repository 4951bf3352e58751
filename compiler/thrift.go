package compiler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/apache/thrift/lib/go/thrift"
	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/schema"
)

// The Thrift encodings a repository can publish besides JSON (see
// repo.Settings).
const (
	EncodingThriftBinary  = repo.EncodingThriftBinary  // TBinaryProtocol
	EncodingThriftCompact = repo.EncodingThriftCompact // TCompactProtocol
)

// newProtocol returns the protocol of an encoding over buf.
func newProtocol(encoding string, buf *thrift.TMemoryBuffer) (thrift.TProtocol, error) {
	conf := &thrift.TConfiguration{}
	switch encoding {
	case EncodingThriftBinary:
		return thrift.NewTBinaryProtocolConf(buf, conf), nil
	case EncodingThriftCompact:
		return thrift.NewTCompactProtocolConf(buf, conf), nil
	}
	return nil, fmt.Errorf("unknown encoding %q (want %s or %s)", encoding, EncodingThriftBinary, EncodingThriftCompact)
}

// EncodeThrift writes v in a Thrift encoding (EncodingThriftBinary or
// EncodingThriftCompact), as the code Thrift generates for v's type would:
// fields in field ID order, unset fields left out, enums as i32. Sets are
// written sorted and without duplicates, and maps with sorted keys, in the
// order of canonical JSON, so the same value always gives the same bytes.
// A value that does not match its schema, lacks a required field or nests
// more than MaxDepth deep is an error naming the path of the field.
func EncodeThrift(v *Struct, encoding string) ([]byte, error) {
	buf := thrift.NewTMemoryBufferLen(1024)
	p, err := newProtocol(encoding, buf)
	if err != nil {
		return nil, err
	}
	w := &thriftWriter{ctx: context.Background(), p: p}
	if err := w.structValue(v); err != nil {
		return nil, err.at(v.t.Name)
	}
	return buf.Bytes(), nil
}

// DecodeError reports what is wrong with the data given to DecodeThrift.
// Each problem names the path of the field inside the value
// (Job.resources.memory_mb: unexpected end of data).
type DecodeError struct{ Problems []string }

func (e *DecodeError) Error() string { return strings.Join(e.Problems, "\n") }

// DecodeThrift reads data as a value of struct type name declared in the
// schema file schemaPath (repository-relative, e.g.
// "source/schemas/job.thrift") of the repository in fsys, and returns its
// canonical JSON. A name may be qualified by an include ("common.Endpoint").
//
// Fields are read by ID and checked against their declared types; fields
// the schema does not declare are skipped. Fields absent from the data stay
// unset: IDL defaults are not applied, so decoding what EncodeThrift wrote
// gives back the compiled JSON byte for byte. Problems with the schema or
// the type name are a diag.List, problems with the data a *DecodeError;
// an unknown encoding is a plain error.
func DecodeThrift(fsys fs.FS, schemaPath, typeName string, data []byte, encoding string) ([]byte, error) {
	f, err := schema.NewLoader(withStdlib(fsys)).Load(schemaPath)
	if err != nil {
		return nil, err
	}
	t, err := lookupStruct(f, typeName)
	if err != nil {
		return nil, err
	}
	return decodeThrift(t, data, encoding)
}

// lookupStruct finds the struct, union or exception called name in f, or
// in a file f includes when name is qualified (common.Endpoint). Typedefs
// of structs count. Its errors are a diag.List positioned in the schema.
func lookupStruct(f *schema.File, name string) (*schema.Struct, error) {
	fail := func(format string, args ...any) error {
		return diag.List{diag.Errorf(diag.Pos{File: f.Path}, format, args...)}
	}
	file, local := f, name
	if inc, rest, ok := strings.Cut(name, "."); ok {
		if file = f.Includes[inc]; file == nil {
			return nil, fail("no struct %q: the schema does not include %q", name, inc)
		}
		local = rest
	}
	if s := file.Structs[local]; s != nil {
		return s, nil
	}
	if td := file.Typedefs[local]; td != nil && td.Target.Kind == schema.StructKind {
		return td.Target.Struct, nil
	}
	if file.Enums[local] != nil {
		return nil, fail("%q is an enum, want a struct", name)
	}
	prefix := name[:len(name)-len(local)]
	var names []string
	for n := range file.Structs {
		names = append(names, prefix+n)
	}
	for n, td := range file.Typedefs {
		if td.Target.Kind == schema.StructKind {
			names = append(names, prefix+n)
		}
	}
	slices.Sort(names)
	if hint := diag.DidYouMean(name, names); hint != "" || len(names) == 0 {
		return nil, fail("no struct %q%s", name, hint)
	}
	return nil, fail("no struct %q (structs: %s)", name, strings.Join(names, ", "))
}

// decodeThrift reads data as a value of t and returns its canonical JSON.
func decodeThrift(t *schema.Struct, data []byte, encoding string) ([]byte, error) {
	v, err := readThrift(t, data, encoding)
	if err != nil {
		return nil, err
	}
	// The JSON encoder checks what the reader leaves to it: required
	// fields, union members, finite doubles.
	out, errs := encodeRoot(v)
	if len(errs) > 0 {
		de := &DecodeError{}
		for _, e := range errs {
			de.Problems = append(de.Problems, e.err.Error())
		}
		return nil, de
	}
	return out, nil
}

// readThrift reads data as a value of t, checking the wire types against
// the schema.
func readThrift(t *schema.Struct, data []byte, encoding string) (*Struct, error) {
	buf := &thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(data)} // reads leave data as it is
	p, err := newProtocol(encoding, buf)
	if err != nil {
		return nil, err
	}
	r := &thriftReader{ctx: context.Background(), p: p}
	v, verr := r.structValue(t)
	if verr != nil {
		return nil, &DecodeError{[]string{verr.at(t.Name).Error()}}
	}
	if n := buf.Len(); n > 0 {
		return nil, &DecodeError{[]string{fmt.Sprintf("%s: unexpected data after the value (%d more bytes)", t.Name, n)}}
	}
	return v, nil
}

// wireType is the Thrift type a value of t is written as.
func wireType(t *schema.Type) thrift.TType {
	switch t.Kind {
	case schema.Bool:
		return thrift.BOOL
	case schema.I8:
		return thrift.I08
	case schema.I16:
		return thrift.I16
	case schema.I32, schema.EnumKind:
		return thrift.I32
	case schema.I64:
		return thrift.I64
	case schema.Double:
		return thrift.DOUBLE
	case schema.String, schema.Binary:
		return thrift.STRING
	case schema.List:
		return thrift.LIST
	case schema.Set:
		return thrift.SET
	case schema.Map:
		return thrift.MAP
	case schema.StructKind:
		return thrift.STRUCT
	}
	panic(fmt.Sprintf("unexpected kind %d", t.Kind))
}

var wireNames = map[thrift.TType]string{
	thrift.BOOL: "bool", thrift.I08: "i8", thrift.I16: "i16", thrift.I32: "i32", thrift.I64: "i64",
	thrift.DOUBLE: "double", thrift.STRING: "string", thrift.STRUCT: "struct", thrift.MAP: "map",
	thrift.SET: "set", thrift.LIST: "list", thrift.UUID: "uuid",
}

// wireName names a Thrift wire type.
func wireName(tt thrift.TType) string {
	if n, ok := wireNames[tt]; ok {
		return n
	}
	return fmt.Sprintf("unknown wire type %d", tt)
}

// wantWire describes the wire type of t, with t itself when it says more
// ("i32 (enum Priority)").
func wantWire(t *schema.Type) string {
	w := wireName(wireType(t))
	switch t.Kind {
	case schema.EnumKind:
		return w + " (enum " + t.Enum.Name + ")"
	case schema.StructKind:
		return w + " " + t.Struct.Name
	case schema.Binary:
		return w + " (binary)"
	}
	return w
}

// protoError turns an error of the protocol into a value error.
func protoError(err error) *valueError {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf("unexpected end of data")
	}
	return errorf("%v", err)
}

// A thriftWriter writes values through a Thrift protocol, driven by their
// schema types.
type thriftWriter struct {
	ctx   context.Context
	p     thrift.TProtocol
	depth int
}

func (w *thriftWriter) structValue(s *Struct) *valueError {
	if w.depth++; w.depth > MaxDepth {
		return errorf("%s", depthMsg)
	}
	defer func() { w.depth-- }()
	if s.t.Type == schema.Union {
		if n := len(s.setFields()); n != 1 {
			return errorf("union takes exactly one member, got %d", n)
		}
	}
	if err := w.p.WriteStructBegin(w.ctx, s.t.Name); err != nil {
		return protoError(err)
	}
	for _, f := range s.t.FieldsByID() {
		v := s.fields[f.Index]
		if v == nil {
			if f.Required == schema.Required {
				return (&valueError{msg: "missing required field", decl: &f.Pos}).at("." + f.Name)
			}
			continue
		}
		if err := w.p.WriteFieldBegin(w.ctx, f.Name, wireType(f.Type), f.ID); err != nil {
			return protoError(err).at("." + f.Name)
		}
		if err := w.value(f.Type, v); err != nil {
			if err.decl == nil {
				err.decl = &f.Pos
			}
			return err.at("." + f.Name)
		}
		if err := w.p.WriteFieldEnd(w.ctx); err != nil {
			return protoError(err).at("." + f.Name)
		}
	}
	if err := w.p.WriteFieldStop(w.ctx); err != nil {
		return protoError(err)
	}
	if err := w.p.WriteStructEnd(w.ctx); err != nil {
		return protoError(err)
	}
	return nil
}

// value writes v as a value of type t.
func (w *thriftWriter) value(t *schema.Type, v starlark.Value) *valueError {
	var err error
	switch t.Kind {
	case schema.Bool:
		b, ok := v.(starlark.Bool)
		if !ok {
			return wantMismatch(v, t)
		}
		err = w.p.WriteBool(w.ctx, bool(b))
	case schema.I8, schema.I16, schema.I32, schema.I64:
		i, ok := v.(starlark.Int)
		if !ok {
			return wantMismatch(v, t)
		}
		lo, hi, _ := t.Kind.IntRange()
		n, ok := i.Int64()
		if !ok || n < lo || n > hi {
			return errorf("got %s, want %s (range %d..%d)", i, t, lo, hi)
		}
		switch t.Kind {
		case schema.I8:
			err = w.p.WriteByte(w.ctx, int8(n))
		case schema.I16:
			err = w.p.WriteI16(w.ctx, int16(n))
		case schema.I32:
			err = w.p.WriteI32(w.ctx, int32(n))
		default:
			err = w.p.WriteI64(w.ctx, n)
		}
	case schema.Double:
		f, verr := toDouble(v, t)
		if verr != nil {
			return verr
		}
		err = w.p.WriteDouble(w.ctx, float64(f))
	case schema.String:
		s, ok := v.(starlark.String)
		if !ok {
			return wantMismatch(v, t)
		}
		if err := checkUTF8(string(s)); err != nil {
			return err
		}
		err = w.p.WriteString(w.ctx, string(s))
	case schema.Binary:
		switch x := v.(type) {
		case starlark.Bytes:
			err = w.p.WriteBinary(w.ctx, []byte(x))
		case starlark.String:
			err = w.p.WriteBinary(w.ctx, []byte(x))
		default:
			return wantMismatch(v, t)
		}
	case schema.EnumKind:
		x, ok := v.(*Enum)
		if !ok || x.item.Enum != t.Enum {
			return wantMismatch(v, t)
		}
		err = w.p.WriteI32(w.ctx, x.item.Value)
	case schema.StructKind:
		x, ok := v.(*Struct)
		if !ok || x.t != t.Struct {
			return wantMismatch(v, t)
		}
		return w.structValue(x)
	case schema.List, schema.Set, schema.Map:
		if w.depth++; w.depth > MaxDepth {
			return errorf("%s", depthMsg)
		}
		defer func() { w.depth-- }()
		return w.container(t, v)
	default:
		return wantMismatch(v, t)
	}
	if err != nil {
		return protoError(err)
	}
	return nil
}

// container writes a list, set or map.
func (w *thriftWriter) container(t *schema.Type, v starlark.Value) *valueError {
	var err error
	switch t.Kind {
	case schema.List:
		l, ok := v.(*starlark.List)
		if !ok {
			return wantMismatch(v, t)
		}
		if err := w.p.WriteListBegin(w.ctx, wireType(t.Elem), l.Len()); err != nil {
			return protoError(err)
		}
		for i := range l.Len() {
			if err := w.value(t.Elem, l.Index(i)); err != nil {
				return err.at(fmt.Sprintf("[%d]", i))
			}
		}
		err = w.p.WriteListEnd(w.ctx)
	case schema.Set:
		l, ok := v.(*starlark.List)
		if !ok {
			return wantMismatch(v, t)
		}
		elems := sortedSet(t.Elem, l)
		if err := w.p.WriteSetBegin(w.ctx, wireType(t.Elem), len(elems)); err != nil {
			return protoError(err)
		}
		for _, e := range elems {
			if err := w.value(t.Elem, e.v); err != nil {
				return err.at(fmt.Sprintf("[%d]", e.index))
			}
		}
		err = w.p.WriteSetEnd(w.ctx)
	case schema.Map:
		d, ok := v.(*starlark.Dict)
		if !ok {
			return wantMismatch(v, t)
		}
		items := sortedMap(t.Key, d)
		if err := w.p.WriteMapBegin(w.ctx, wireType(t.Key), wireType(t.Elem), len(items)); err != nil {
			return protoError(err)
		}
		for _, kv := range items {
			seg := "[" + kv[0].String() + "]"
			if err := w.value(t.Key, kv[0]); err != nil {
				return err.at(seg + " (key)")
			}
			if err := w.value(t.Elem, kv[1]); err != nil {
				return err.at(seg)
			}
		}
		err = w.p.WriteMapEnd(w.ctx)
	default:
		return wantMismatch(v, t)
	}
	if err != nil {
		return protoError(err)
	}
	return nil
}

// A thriftReader reads values through a Thrift protocol, driven by their
// schema types, into the values the compiler builds.
type thriftReader struct {
	ctx   context.Context
	p     thrift.TProtocol
	depth int
	byID  map[*schema.Struct]map[int16]*schema.Field
}

// field returns the field of t with the given ID, or nil.
func (r *thriftReader) field(t *schema.Struct, id int16) *schema.Field {
	m := r.byID[t]
	if m == nil {
		if r.byID == nil {
			r.byID = map[*schema.Struct]map[int16]*schema.Field{}
		}
		m = make(map[int16]*schema.Field, len(t.Fields))
		for _, f := range t.Fields {
			m[f.ID] = f
		}
		r.byID[t] = m
	}
	return m[id]
}

func (r *thriftReader) structValue(t *schema.Struct) (*Struct, *valueError) {
	if r.depth++; r.depth > MaxDepth {
		return nil, errorf("%s", depthMsg)
	}
	defer func() { r.depth-- }()
	if _, err := r.p.ReadStructBegin(r.ctx); err != nil {
		return nil, protoError(err)
	}
	s := newStruct(t, origin{})
	for {
		_, tt, id, err := r.p.ReadFieldBegin(r.ctx)
		if err != nil {
			return nil, protoError(err)
		}
		if tt == thrift.STOP {
			break
		}
		f := r.field(t, id)
		if _, ok := wireNames[tt]; !ok {
			seg := fmt.Sprintf(".%d (a field not in the schema)", id)
			if f != nil {
				seg = "." + f.Name
			}
			return nil, errorf("got %s", wireName(tt)).at(seg)
		}
		if f == nil {
			if err := r.p.Skip(r.ctx, tt); err != nil {
				return nil, protoError(err).at(fmt.Sprintf(".%d (a field not in the schema)", id))
			}
		} else {
			if want := wireType(f.Type); tt != want {
				return nil, errorf("got wire type %s, want %s", wireName(tt), wantWire(f.Type)).at("." + f.Name)
			}
			v, verr := r.value(f.Type)
			if verr != nil {
				return nil, verr.at("." + f.Name)
			}
			s.fields[f.Index] = v
		}
		if err := r.p.ReadFieldEnd(r.ctx); err != nil {
			return nil, protoError(err)
		}
	}
	if err := r.p.ReadStructEnd(r.ctx); err != nil {
		return nil, protoError(err)
	}
	return s, nil
}

// checkElem checks the wire type of the elements (or keys, or values) of a
// container; an empty container's element types are not checked, since the
// compact protocol does not write those of an empty map.
func checkElem(what string, got thrift.TType, size int, t *schema.Type, container *schema.Type) *valueError {
	if size == 0 || got == wireType(t) {
		return nil
	}
	if _, ok := wireNames[got]; !ok {
		return errorf("got %s of %s, want %s", what, wireName(got), container)
	}
	return errorf("got %s of wire type %s, want %s", what, wireName(got), container)
}

// value reads a value of type t.
func (r *thriftReader) value(t *schema.Type) (starlark.Value, *valueError) {
	ctx, p := r.ctx, r.p
	switch t.Kind {
	case schema.Bool:
		b, err := p.ReadBool(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.Bool(b), nil
	case schema.I8:
		n, err := p.ReadByte(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.MakeInt(int(n)), nil
	case schema.I16:
		n, err := p.ReadI16(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.MakeInt(int(n)), nil
	case schema.I32:
		n, err := p.ReadI32(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.MakeInt(int(n)), nil
	case schema.I64:
		n, err := p.ReadI64(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.MakeInt64(n), nil
	case schema.Double:
		f, err := p.ReadDouble(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.Float(f), nil
	case schema.String:
		s, err := p.ReadString(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		if err := checkUTF8(s); err != nil {
			return nil, err
		}
		return starlark.String(s), nil
	case schema.Binary:
		b, err := p.ReadBinary(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		return starlark.Bytes(b), nil
	case schema.EnumKind:
		n, err := p.ReadI32(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		it := t.Enum.ItemByValue(n)
		if it == nil {
			return nil, errorf("got %d, want a value of enum %s", n, t.Enum.Name)
		}
		return &Enum{item: it}, nil
	case schema.StructKind:
		s, err := r.structValue(t.Struct)
		if err != nil {
			return nil, err
		}
		return s, nil
	case schema.List, schema.Set, schema.Map:
		if r.depth++; r.depth > MaxDepth {
			return nil, errorf("%s", depthMsg)
		}
		defer func() { r.depth-- }()
		return r.container(t)
	}
	return nil, errorf("cannot read a value of type %s", t)
}

// container reads a list, set or map.
func (r *thriftReader) container(t *schema.Type) (starlark.Value, *valueError) {
	ctx, p := r.ctx, r.p
	switch t.Kind {
	case schema.List, schema.Set:
		read, end, what := p.ReadListBegin, p.ReadListEnd, "list elements"
		if t.Kind == schema.Set {
			read, end, what = p.ReadSetBegin, p.ReadSetEnd, "set elements"
		}
		et, n, err := read(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		if err := checkElem(what, et, n, t.Elem, t); err != nil {
			return nil, err
		}
		elems := make([]starlark.Value, 0, thrift.PreallocSize(n))
		for i := range n {
			v, err := r.value(t.Elem)
			if err != nil {
				return nil, err.at(fmt.Sprintf("[%d]", i))
			}
			elems = append(elems, v)
		}
		if err := end(ctx); err != nil {
			return nil, protoError(err)
		}
		return starlark.NewList(elems), nil
	case schema.Map:
		kt, vt, n, err := p.ReadMapBegin(ctx)
		if err != nil {
			return nil, protoError(err)
		}
		if err := checkElem("map keys", kt, n, t.Key, t); err != nil {
			return nil, err
		}
		if err := checkElem("map values", vt, n, t.Elem, t); err != nil {
			return nil, err
		}
		d := starlark.NewDict(thrift.PreallocSize(n))
		for i := range n {
			k, err := r.value(t.Key)
			if err != nil {
				return nil, err.at(fmt.Sprintf("[key %d]", i))
			}
			seg := "[" + k.String() + "]"
			v, err := r.value(t.Elem)
			if err != nil {
				return nil, err.at(seg)
			}
			if err := d.SetKey(k, v); err != nil {
				return nil, errorf("%v", err).at(seg)
			}
		}
		if err := p.ReadMapEnd(ctx); err != nil {
			return nil, protoError(err)
		}
		return d, nil
	}
	return nil, errorf("cannot read a value of type %s", t)
}
