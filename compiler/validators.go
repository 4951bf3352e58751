package compiler

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/schema"
)

// validatorFile holds the checks a .thrift-cvalidator file registered.
type validatorFile struct {
	checks map[*schema.Struct][]check
}

type check struct {
	fn  starlark.Callable
	pos syntax.Position // the add_validator call
}

const validatorRegistryName = "add_validator"

// validatorPath is the validator file of the schema at p.
func validatorPath(schemaPath string) string { return schemaPath + "-cvalidator" }

// loadValidators executes the validator file beside the schema at p, once
// per run. It returns nil when there is none.
func (c *Compiler) loadValidators(schemaPath string) (*validatorFile, error) {
	return c.validators.get(schemaPath, func() (*validatorFile, error) {
		p := validatorPath(schemaPath)
		if _, err := fs.Stat(c.fsys, p); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		vf := &validatorFile{checks: map[*schema.Struct][]check{}}
		add := starlark.NewBuiltin(validatorRegistryName, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var typ, fn starlark.Value
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &typ, &fn); err != nil {
				return nil, err
			}
			st, ok := typ.(*StructType)
			if !ok {
				return nil, fmt.Errorf("add_validator: got %s, want a struct type loaded from a .thrift file", describe(typ))
			}
			callable, ok := fn.(starlark.Callable)
			if !ok {
				return nil, fmt.Errorf("add_validator: got %s, want a function", describe(fn))
			}
			if st.t.File != schemaPath {
				return nil, fmt.Errorf("add_validator: %s is declared in %s; register its checks in %s", st.t.Name, displayPath(st.t.File), displayPath(validatorPath(st.t.File)))
			}
			vf.checks[st.t] = append(vf.checks[st.t], check{callable, thread.CallFrame(1).Pos})
			return starlark.None, nil
		})
		if _, err := c.execModule(p, starlark.StringDict{validatorRegistryName: add}); err != nil {
			var me *moduleError
			if errors.As(err, &me) {
				return nil, me
			}
			return nil, &moduleError{diag.List{diag.Errorf(diag.Pos{File: p}, "%v", err)}}
		}
		return vf, nil
	})
}

// runValidators runs every check registered for the type of every struct
// value inside v, and reports all failures.
func (c *Compiler) runValidators(p string, v *Struct, exportPos syntax.Position) diag.List {
	var diags diag.List
	var thread *starlark.Thread
	var path []string
	var walk func(t *schema.Type, v starlark.Value)
	visitStruct := func(s *Struct) {
		vf, err := c.loadValidators(s.t.File)
		if err != nil {
			diags = append(diags, c.diagnose(err)...)
			return
		}
		if vf == nil {
			return
		}
		for _, chk := range vf.checks[s.t] {
			if thread == nil {
				thread = c.newThread(p)
			}
			if _, err := starlark.Call(thread, chk.fn, starlark.Tuple{s}, nil); err != nil {
				pos, notes := s.origin.place(exportPos)
				msg := err.Error()
				var ee *starlark.EvalError
				if errors.As(err, &ee) {
					msg = strings.TrimPrefix(ee.Msg, "fail: ")
				}
				d := diag.Errorf(pos, "%s: validator failed: %s", strings.Join(path, ""), msg)
				d.Notes = notes
				if ee != nil {
					inner := c.evalDiag(ee)
					d.Notes = append(d.Notes, diag.Note{Pos: inner.Pos, Msg: "check failed here"})
					d.Stack = inner.Stack
				}
				d.Notes = append(d.Notes, diag.Note{Pos: posOf(chk.pos), Msg: "check registered here"})
				diags = append(diags, d)
			}
		}
	}
	walk = func(t *schema.Type, v starlark.Value) {
		switch t.Kind {
		case schema.StructKind:
			s := v.(*Struct)
			visitStruct(s)
			for i, f := range s.t.Fields {
				if fv := s.fields[i]; fv != nil && needsWalk(f.Type) {
					path = append(path, "."+f.Name)
					walk(f.Type, fv)
					path = path[:len(path)-1]
				}
			}
		case schema.List, schema.Set:
			l := v.(*starlark.List)
			for i := range l.Len() {
				path = append(path, "["+strconv.Itoa(i)+"]")
				walk(t.Elem, l.Index(i))
				path = path[:len(path)-1]
			}
		case schema.Map:
			for _, kv := range v.(*starlark.Dict).Items() {
				path = append(path, "["+kv[0].String()+"]")
				walk(t.Elem, kv[1])
				path = path[:len(path)-1]
			}
		}
	}
	path = append(path, v.t.Name)
	walk(&schema.Type{Kind: schema.StructKind, Struct: v.t}, v)
	return diags
}

// needsWalk reports whether values of t can hold structs.
func needsWalk(t *schema.Type) bool {
	switch t.Kind {
	case schema.StructKind:
		return true
	case schema.List, schema.Set, schema.Map:
		return needsWalk(t.Elem)
	}
	return false
}
