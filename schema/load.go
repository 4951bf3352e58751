package schema

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/thriftrw/ast"
	"go.uber.org/thriftrw/compile"
	"go.uber.org/thriftrw/idl"

	"github.com/cfg-dev/cfg/diag"
)

// Loader loads .thrift files from a filesystem rooted at the repository.
// It is safe for concurrent use; every file is converted once.
type Loader struct {
	fsys fs.FS

	mu      sync.Mutex
	files   map[string]*File
	errs    map[string]error
	structs map[declKey]*Struct
	enums   map[declKey]*Enum
}

type declKey struct{ file, name string }

// NewLoader returns a loader reading from fsys, whose root is the repository
// root; paths given to Load are slash-separated and relative to it.
func NewLoader(fsys fs.FS) *Loader {
	return &Loader{
		fsys:    fsys,
		files:   map[string]*File{},
		errs:    map[string]error{},
		structs: map[declKey]*Struct{},
		enums:   map[declKey]*Enum{},
	}
}

// Load returns the file at p (e.g. "source/schemas/job.thrift") with its
// includes. Errors are diag.List values positioned in the IDL.
func (l *Loader) Load(p string) (*File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.files[p]; f != nil {
		return f, nil
	}
	if err := l.errs[p]; err != nil {
		return nil, err
	}
	f, err := l.load(p)
	if err != nil {
		l.errs[p] = err
		return nil, err
	}
	return f, nil
}

// thriftFS adapts an fs.FS to thriftrw's compile.FS. Absolute paths are the
// repository-relative paths with a leading slash.
type thriftFS struct{ fsys fs.FS }

func (t thriftFS) Read(name string) ([]byte, error) {
	return fs.ReadFile(t.fsys, strings.TrimPrefix(name, "/"))
}

func (t thriftFS) Abs(p string) (string, error) { return path.Join("/", p), nil }

func (l *Loader) load(p string) (*File, error) {
	// Parse every file of the include tree first: thriftrw's parse errors
	// carry line and column, its link errors only a line.
	progs := map[string]*ast.Program{}
	if err := l.parseTree(p, progs, nil); err != nil {
		return nil, err
	}
	m, err := compile.Compile("/"+p, compile.Filesystem(thriftFS{l.fsys}), compile.NonStrict())
	if err != nil {
		return nil, compileDiag(p, err, progs)
	}
	// Declare every struct and enum of the tree first, so that fields can
	// refer to types of any file, then fill them in.
	var mods []*compile.Module
	_ = m.Walk(func(m *compile.Module) error {
		if l.files[rel(m.ThriftPath)] == nil {
			mods = append(mods, m)
		}
		return nil
	})
	for _, m := range mods {
		l.declare(m, progs[rel(m.ThriftPath)])
	}
	for _, pass := range []func(*compile.Module, *ast.Program) error{l.defineFields, l.defineValues} {
		for _, m := range mods {
			if err := pass(m, progs[rel(m.ThriftPath)]); err != nil {
				l.forget(mods)
				return nil, err
			}
		}
	}
	for _, m := range mods {
		f := l.files[rel(m.ThriftPath)]
		for name, inc := range m.Includes {
			f.Includes[name] = l.files[rel(inc.Module.ThriftPath)]
		}
	}
	return l.files[p], nil
}

// forget drops the partly converted files of a tree that failed.
func (l *Loader) forget(mods []*compile.Module) {
	for _, m := range mods {
		p := rel(m.ThriftPath)
		if f := l.files[p]; f != nil {
			for name := range f.Structs {
				delete(l.structs, declKey{p, name})
			}
			for name := range f.Enums {
				delete(l.enums, declKey{p, name})
			}
		}
		delete(l.files, p)
	}
}

func rel(abs string) string { return strings.TrimPrefix(abs, "/") }

// parseTree parses p and, recursively, the files it includes.
func (l *Loader) parseTree(p string, progs map[string]*ast.Program, from *diag.Pos) error {
	if _, ok := progs[p]; ok || l.files[p] != nil {
		return nil
	}
	src, err := fs.ReadFile(l.fsys, p)
	if err != nil {
		pos := diag.Pos{File: p}
		if from != nil {
			pos = *from
		}
		if errors.Is(err, fs.ErrNotExist) {
			return diag.List{diag.Errorf(pos, "cannot read schema %q: file does not exist", p)}
		}
		var problem interface{ Problem() string } // a symbolic link
		var pe *fs.PathError
		switch {
		case errors.As(err, &problem):
			return diag.List{diag.Errorf(pos, "cannot read schema %q: %s", p, problem.Problem())}
		case errors.As(err, &pe) && pe.Path == p:
			err = pe.Err
		}
		return diag.List{diag.Errorf(pos, "cannot read schema %q: %v", p, err)}
	}
	if d := diag.CheckNUL(p, src); d != nil {
		return diag.List{d}
	}
	prog, err := idl.Parse(src)
	if err != nil {
		var pe *idl.ParseError
		if errors.As(err, &pe) {
			var list diag.List
			for _, e := range pe.Errors {
				// thriftrw reports some errors (reserved words) with a
				// negative column: keep the line only.
				list = append(list, diag.Errorf(diag.Pos{File: p, Line: e.Pos.Line, Col: max(e.Pos.Column, 0)}, "%v", e.Err))
			}
			return list
		}
		return diag.List{diag.Errorf(diag.Pos{File: p}, "%v", err)}
	}
	progs[p] = prog
	for _, h := range prog.Headers {
		inc, ok := h.(*ast.Include)
		if !ok {
			continue
		}
		pos := diag.Pos{File: p, Line: inc.Line, Col: inc.Column}
		q, err := IncludePath(p, inc.Path)
		if err != nil {
			return diag.List{diag.Errorf(pos, "%v", err)}
		}
		if err := l.parseTree(q, progs, &pos); err != nil {
			return err
		}
	}
	return nil
}

// IncludePath resolves the Thrift include inc of the file at the
// repository path from as load() resolves a path: relative to the including
// file, and inside the tree that holds it (source/, or the schemas that ship
// with cfg). An include that leaves it, such as "../../.git/config", is an
// error, and so is one of a file that is not a .thrift file.
func IncludePath(from, inc string) (string, error) {
	top, _, _ := strings.Cut(from, "/")
	p := path.Join(path.Dir(from), inc)
	if !strings.HasPrefix(p, top+"/") {
		return "", fmt.Errorf("include %q: outside %s/ (includes resolve like load(): inside %s/ only)", inc, top, top)
	}
	if path.Ext(p) != ".thrift" {
		return "", fmt.Errorf("include %q: only .thrift files can be included", inc)
	}
	return p, nil
}

var (
	linePattern   = regexp.MustCompile(` on line (\d+)`)
	pathPattern   = regexp.MustCompile(`cannot compile "(/[^"]+\.thrift)": `)
	targetPattern = regexp.MustCompile(`cannot compile "([^"/]+)": `)
	refPattern    = regexp.MustCompile(`reference "([^"]+)"`)
	scopePattern  = regexp.MustCompile(` in "[^"]+"`)
)

// compileDiag positions a thriftrw link error. Its message nests the path
// of the file, the name of the definition and sometimes a line; the
// innermost of each is used, and the column is that of the unresolved
// reference or of the definition.
func compileDiag(p string, err error, progs map[string]*ast.Program) error {
	msg := err.Error()
	pos := diag.Pos{File: p}
	if ms := pathPattern.FindAllStringSubmatch(msg, -1); len(ms) > 0 {
		pos.File = rel(ms[len(ms)-1][1])
	}
	var target string
	if ms := targetPattern.FindAllStringSubmatch(msg, -1); len(ms) > 0 {
		target = ms[len(ms)-1][1]
	}
	if prog := progs[pos.File]; prog != nil && target != "" {
		for _, d := range prog.Definitions {
			if d.Info().Name == target {
				pos.Line, pos.Col = d.Info().Line, d.Info().Column
			}
		}
	}
	if ms := linePattern.FindAllStringSubmatch(msg, -1); len(ms) > 0 {
		pos.Line, _ = strconv.Atoi(ms[len(ms)-1][1])
		pos.Col = 0
		if ref := refPattern.FindStringSubmatch(msg); ref != nil {
			pos.Col = columnOf(progs, pos, ref[1])
		}
	}
	msg = pathPattern.ReplaceAllString(msg, "")
	msg = targetPattern.ReplaceAllString(msg, "$1: ")
	msg = linePattern.ReplaceAllString(msg, "")
	msg = scopePattern.ReplaceAllString(msg, "")
	if target != "" {
		msg = strings.Replace(msg, target+": "+target+": ", target+": ", 1)
	}
	return diag.List{diag.Errorf(pos, "%s", msg)}
}

// columnOf finds the column of name on the line of pos, or 0.
func columnOf(progs map[string]*ast.Program, pos diag.Pos, name string) int {
	col := 0
	if prog := progs[pos.File]; prog != nil {
		ast.Walk(ast.VisitorFunc(func(_ ast.Walker, n ast.Node) {
			if col != 0 {
				return
			}
			switch ref := n.(type) {
			case ast.TypeReference:
				if ref.Name == name && ref.Line == pos.Line {
					col = ref.Column
				}
			case ast.ConstantReference:
				if ref.Name == name && ref.Line == pos.Line {
					col = ref.Column
				}
			}
		}), prog)
	}
	return col
}

// declare creates the File, its structs and its enums (without fields).
func (l *Loader) declare(m *compile.Module, prog *ast.Program) {
	p := rel(m.ThriftPath)
	f := &File{
		Path:      p,
		Structs:   map[string]*Struct{},
		Enums:     map[string]*Enum{},
		Typedefs:  map[string]*Typedef{},
		Constants: map[string]*Constant{},
		Includes:  map[string]*File{},
	}
	l.files[p] = f
	for _, d := range prog.Definitions {
		pos := diag.Pos{File: p, Line: d.Info().Line, Col: d.Info().Column}
		switch d := d.(type) {
		case *ast.Struct:
			s := &Struct{Name: d.Name, File: p, Pos: pos, byName: map[string]*Field{}}
			switch d.Type {
			case ast.UnionType:
				s.Type = Union
			case ast.ExceptionType:
				s.Type = Exception
			}
			f.Structs[d.Name] = s
			l.structs[declKey{p, d.Name}] = s
		case *ast.Enum:
			spec := m.Types[d.Name].(*compile.EnumSpec)
			e := &Enum{Name: d.Name, File: p, Pos: pos, byName: map[string]*EnumItem{}, byValue: map[int32]*EnumItem{}}
			for i, it := range spec.Items {
				item := &EnumItem{Enum: e, Name: it.Name, Value: it.Value}
				if i < len(d.Items) {
					item.Pos = diag.Pos{File: p, Line: d.Items[i].Line, Col: d.Items[i].Column}
				}
				e.Items = append(e.Items, item)
				e.byName[it.Name] = item
				if e.byValue[it.Value] == nil {
					e.byValue[it.Value] = item
				}
			}
			f.Enums[d.Name] = e
			l.enums[declKey{p, d.Name}] = e
		}
	}
}

// defineFields fills in the fields of structs (without defaults, which may
// refer to structs of any file).
func (l *Loader) defineFields(m *compile.Module, prog *ast.Program) error {
	p := rel(m.ThriftPath)
	f := l.files[p]
	for _, d := range prog.Definitions {
		d, ok := d.(*ast.Struct)
		if !ok {
			continue
		}
		s := f.Structs[d.Name]
		spec := m.Types[d.Name].(*compile.StructSpec)
		for i, fs := range spec.Fields {
			af := d.Fields[i]
			fld := &Field{ID: fs.ID, Name: fs.Name, Index: i, Pos: diag.Pos{File: p, Line: af.Line, Col: af.Column}}
			var err error
			if fld.Type, err = l.typeOf(fs.Type); err != nil {
				return diag.List{diag.Errorf(fld.Pos, "%s.%s: %v", d.Name, fs.Name, err)}
			}
			switch af.Requiredness {
			case ast.Required:
				fld.Required = Required
			case ast.Optional:
				fld.Required = Optional
			}
			s.Fields = append(s.Fields, fld)
			s.byName[fld.Name] = fld
		}
	}
	return nil
}

// defineValues fills in field defaults, typedefs and constants.
func (l *Loader) defineValues(m *compile.Module, prog *ast.Program) error {
	p := rel(m.ThriftPath)
	f := l.files[p]
	for _, d := range prog.Definitions {
		pos := diag.Pos{File: p, Line: d.Info().Line, Col: d.Info().Column}
		switch d := d.(type) {
		case *ast.Struct:
			s := f.Structs[d.Name]
			spec := m.Types[d.Name].(*compile.StructSpec)
			for i, fs := range spec.Fields {
				if fs.Default == nil {
					continue
				}
				fld := s.Fields[i]
				v, err := l.constOf(fs.Default, fld.Type)
				if err != nil {
					return diag.List{diag.Errorf(fld.Pos, "%s.%s: default: %v", d.Name, fs.Name, err)}
				}
				fld.Default = v
			}
		case *ast.Typedef:
			t, err := l.typeOf(m.Types[d.Name])
			if err != nil {
				return diag.List{diag.Errorf(pos, "typedef %s: %v", d.Name, err)}
			}
			f.Typedefs[d.Name] = &Typedef{Name: d.Name, Target: t, Pos: pos}
		case *ast.Constant:
			c := m.Constants[d.Name]
			t, err := l.typeOf(c.Type)
			if err != nil {
				return diag.List{diag.Errorf(pos, "const %s: %v", d.Name, err)}
			}
			v, err := l.constOf(c.Value, t)
			if err != nil {
				return diag.List{diag.Errorf(pos, "const %s: %v", d.Name, err)}
			}
			f.Constants[d.Name] = &Constant{Name: d.Name, Type: t, Value: v, Pos: pos}
		}
	}
	return nil
}

func (l *Loader) typeOf(spec compile.TypeSpec) (*Type, error) {
	switch s := compile.RootTypeSpec(spec).(type) {
	case *compile.BoolSpec:
		return &Type{Kind: Bool}, nil
	case *compile.I8Spec:
		return &Type{Kind: I8}, nil
	case *compile.I16Spec:
		return &Type{Kind: I16}, nil
	case *compile.I32Spec:
		return &Type{Kind: I32}, nil
	case *compile.I64Spec:
		return &Type{Kind: I64}, nil
	case *compile.DoubleSpec:
		return &Type{Kind: Double}, nil
	case *compile.StringSpec:
		return &Type{Kind: String}, nil
	case *compile.BinarySpec:
		return &Type{Kind: Binary}, nil
	case *compile.ListSpec:
		e, err := l.typeOf(s.ValueSpec)
		return &Type{Kind: List, Elem: e}, err
	case *compile.SetSpec:
		e, err := l.typeOf(s.ValueSpec)
		return &Type{Kind: Set, Elem: e}, err
	case *compile.MapSpec:
		k, err := l.typeOf(s.KeySpec)
		if err != nil {
			return nil, err
		}
		v, err := l.typeOf(s.ValueSpec)
		return &Type{Kind: Map, Key: k, Elem: v}, err
	case *compile.StructSpec:
		if st := l.structs[declKey{rel(s.ThriftFile()), s.Name}]; st != nil {
			return &Type{Kind: StructKind, Struct: st}, nil
		}
	case *compile.EnumSpec:
		if e := l.enums[declKey{rel(s.ThriftFile()), s.Name}]; e != nil {
			return &Type{Kind: EnumKind, Enum: e}, nil
		}
	}
	return nil, fmt.Errorf("unsupported type %s", spec.ThriftName())
}

// constOf converts a linked thriftrw constant to the Const form of t.
func (l *Loader) constOf(v compile.ConstantValue, t *Type) (Const, error) {
	switch v := v.(type) {
	case compile.ConstReference:
		ct, err := l.typeOf(v.Target.Type)
		if err != nil {
			return nil, err
		}
		return l.constOf(v.Target.Value, ct)
	case compile.ConstantBool:
		if t.Kind == Bool {
			return bool(v), nil
		}
	case compile.ConstantInt:
		switch t.Kind {
		case Double:
			return float64(v), nil
		case EnumKind:
			if it := t.Enum.ItemByValue(int32(v)); it != nil {
				return it, nil
			}
			return nil, fmt.Errorf("%d is not a value of %s", v, t.Enum.Name)
		case Bool:
			return v != 0, nil
		}
		if lo, hi, ok := t.Kind.IntRange(); ok {
			if int64(v) < lo || int64(v) > hi {
				return nil, fmt.Errorf("%d out of range for %s", v, t)
			}
			return int64(v), nil
		}
	case compile.ConstantDouble:
		if t.Kind == Double {
			return float64(v), nil
		}
	case compile.ConstantString:
		switch t.Kind {
		case String:
			return string(v), nil
		case Binary:
			return []byte(v), nil
		}
	case compile.EnumItemReference:
		if t.Kind == EnumKind {
			if it := t.Enum.Item(v.Item.Name); it != nil {
				return it, nil
			}
		}
	case compile.ConstantList:
		return l.constList([]compile.ConstantValue(v), t)
	case compile.ConstantSet:
		return l.constList([]compile.ConstantValue(v), t)
	case compile.ConstantMap:
		if t.Kind == Map {
			out := make([]ConstPair, 0, len(v))
			for _, kv := range v {
				k, err := l.constOf(kv.Key, t.Key)
				if err != nil {
					return nil, err
				}
				val, err := l.constOf(kv.Value, t.Elem)
				if err != nil {
					return nil, err
				}
				out = append(out, ConstPair{k, val})
			}
			return out, nil
		}
	case *compile.ConstantStruct:
		if t.Kind == StructKind {
			sc := &StructConst{Struct: t.Struct, Fields: map[string]Const{}}
			for name, fv := range v.Fields {
				fld := t.Struct.Field(name)
				if fld == nil {
					return nil, fmt.Errorf("%s has no field %q", t.Struct.Name, name)
				}
				c, err := l.constOf(fv, fld.Type)
				if err != nil {
					return nil, err
				}
				sc.Fields[name] = c
			}
			return sc, nil
		}
	}
	return nil, fmt.Errorf("constant %v does not fit %s", v, t)
}

func (l *Loader) constList(vs []compile.ConstantValue, t *Type) (Const, error) {
	if t.Kind != List && t.Kind != Set {
		return nil, fmt.Errorf("a list does not fit %s", t)
	}
	out := make([]Const, 0, len(vs))
	for _, e := range vs {
		c, err := l.constOf(e, t.Elem)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
