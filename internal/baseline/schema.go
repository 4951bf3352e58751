package baseline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.uber.org/thriftrw/ast"
	"go.uber.org/thriftrw/idl"
)

type schemaEntry struct {
	once    chan struct{}
	globals starlark.StringDict
	err     error
}

// schema returns the names a .thrift file defines, parsing it once per run.
func (r *runner) schema(file string) (starlark.StringDict, error) {
	r.mu.Lock()
	e := r.schemas[file]
	if e != nil {
		r.mu.Unlock()
		<-e.once
		return e.globals, e.err
	}
	e = &schemaEntry{once: make(chan struct{})}
	r.schemas[file] = e
	r.mu.Unlock()
	e.globals, e.err = loadSchema(filepath.Join(r.src, filepath.FromSlash(file)))
	if e.err != nil {
		e.err = fmt.Errorf("cannot load %s: %w", file, e.err)
	}
	close(e.once)
	return e.globals, e.err
}

func loadSchema(path string) (starlark.StringDict, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	prog, err := idl.Parse(src)
	if err != nil {
		return nil, err
	}
	g := starlark.StringDict{}
	for _, d := range prog.Definitions {
		switch d := d.(type) {
		case *ast.Struct:
			g[d.Name] = constructor(d.Name)
		case *ast.Enum:
			items := starlark.StringDict{}
			for _, it := range d.Items {
				items[it.Name] = starlark.String(it.Name)
			}
			g[d.Name] = &starlarkstruct.Module{Name: d.Name, Members: items}
		case *ast.Constant:
			if v := constant(d.Value); v != nil {
				g[d.Name] = v
			}
		}
	}
	g.Freeze()
	return g, nil
}

// constant converts a scalar IDL constant; others are left out.
func constant(v ast.ConstantValue) starlark.Value {
	switch v := v.(type) {
	case ast.ConstantBoolean:
		return starlark.Bool(v)
	case ast.ConstantInteger:
		return starlark.MakeInt64(int64(v))
	case ast.ConstantString:
		return starlark.String(v)
	case ast.ConstantDouble:
		return starlark.Float(v)
	}
	return nil
}

// constructor returns the untyped constructor of the struct name.
func constructor(name string) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) > 0 {
			return nil, fmt.Errorf("%s: unexpected positional arguments", name)
		}
		rec := &Record{typ: name, names: make([]string, len(kwargs)), values: make([]starlark.Value, len(kwargs))}
		for i, kv := range kwargs {
			rec.names[i] = string(kv[0].(starlark.String))
			rec.values[i] = kv[1]
		}
		return rec, nil
	})
}

// Record is an untyped struct value: its fields in the order they were set.
type Record struct {
	typ    string
	names  []string
	values []starlark.Value
	frozen bool
}

var (
	_ starlark.HasAttrs    = (*Record)(nil)
	_ starlark.HasSetField = (*Record)(nil)
)

func (r *Record) Type() string         { return r.typ }
func (r *Record) Truth() starlark.Bool { return true }
func (r *Record) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", r.typ)
}

func (r *Record) Freeze() {
	if !r.frozen {
		r.frozen = true
		for _, v := range r.values {
			v.Freeze()
		}
	}
}

func (r *Record) String() string {
	var b strings.Builder
	b.WriteString(r.typ)
	b.WriteByte('(')
	for i, n := range r.names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
		b.WriteString(" = ")
		b.WriteString(r.values[i].String())
	}
	b.WriteByte(')')
	return b.String()
}

// Attr returns the field name, or nil (no such attribute) if it was not set.
func (r *Record) Attr(name string) (starlark.Value, error) {
	for i, n := range r.names {
		if n == name {
			return r.values[i], nil
		}
	}
	return nil, nil
}

func (r *Record) AttrNames() []string { return append([]string(nil), r.names...) }

func (r *Record) SetField(name string, v starlark.Value) error {
	if r.frozen {
		return fmt.Errorf("cannot set .%s of frozen %s", name, r.typ)
	}
	for i, n := range r.names {
		if n == name {
			r.values[i] = v
			return nil
		}
	}
	r.names = append(r.names, name)
	r.values = append(r.values, v)
	return nil
}
