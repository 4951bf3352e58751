package compiler

import (
	"errors"
	"fmt"
	"io/fs"
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
func (c *Compiler) loadValidators(schemaPath string, j *job) (*validatorFile, error) {
	return c.validators.get(schemaPath, func() (*validatorFile, error) {
		p := validatorPath(schemaPath)
		if _, err := fs.Stat(c.fsys, p); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		} else if err != nil {
			// A validator that cannot be read (a link) fails every config
			// of the schema rather than being skipped.
			return nil, &moduleError{diags: c.diagnose(err)}
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
		if _, err := c.execModule(p, starlark.StringDict{validatorRegistryName: add}, j); err != nil {
			var me *moduleError
			if errors.As(err, &me) {
				return nil, me
			}
			return nil, &moduleError{diags: diag.List{diag.Errorf(diag.Pos{File: p}, "%v", err)}}
		}
		return vf, nil
	})
}

// runValidators runs every check registered for the type of every struct
// value inside v, and reports all failures.
func (c *Compiler) runValidators(p string, v *Struct, exportPos syntax.Position, j *job) diag.List {
	w := &validatorWalk{c: c, config: p, job: j, exportPos: exportPos, checks: map[*schema.Struct][]check{}}
	w.path = append(w.path, pathSeg{name: v.t.Name})
	w.walk(&schema.Type{Kind: schema.StructKind, Struct: v.t}, v)
	if lim := j.limit(); lim != nil {
		return diag.List{diag.Errorf(posOf(exportPos), "%s (while running validators)", lim.msg)}
	}
	return w.diags
}

// validatorWalk visits every struct value of one exported config.
type validatorWalk struct {
	c         *Compiler
	config    string
	job       *job
	exportPos syntax.Position
	thread    *starlark.Thread
	checks    map[*schema.Struct][]check // per type, looked up once per config
	path      []pathSeg
	diags     diag.List
}

func (w *validatorWalk) checksFor(t *schema.Struct) []check {
	if cs, ok := w.checks[t]; ok {
		return cs
	}
	vf, err := w.c.loadValidators(t.File, w.job)
	for err != nil && isLimit(err) && w.job.limit() == nil {
		vf, err = w.c.loadValidators(t.File, w.job) // stopped while another config ran it
	}
	var cs []check
	switch {
	case err != nil:
		w.diags = append(w.diags, w.c.diagnose(err)...)
	case vf != nil:
		cs = vf.checks[t]
	}
	w.checks[t] = cs
	return cs
}

func (w *validatorWalk) visit(s *Struct) {
	for _, chk := range w.checksFor(s.t) {
		if w.thread == nil {
			w.thread = w.c.newThread(w.config, w.job)
		}
		_, err := starlark.Call(w.thread, chk.fn, starlark.Tuple{s}, nil)
		if err == nil {
			continue
		}
		pos, notes := s.origin.place(w.exportPos)
		msg := err.Error()
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			msg = strings.TrimPrefix(ee.Msg, "fail: ")
		}
		d := diag.Errorf(pos, "%s: validator failed: %s", formatPath(w.path), msg)
		d.Notes = notes
		if ee != nil {
			inner := w.c.evalDiag(ee)
			d.Notes = append(d.Notes, diag.Note{Pos: inner.Pos, Msg: "check failed here"})
			d.Stack = inner.Stack
		}
		d.Notes = append(d.Notes, diag.Note{Pos: posOf(chk.pos), Msg: "check registered here"})
		w.diags = append(w.diags, d)
	}
}

func (w *validatorWalk) walk(t *schema.Type, v starlark.Value) {
	switch t.Kind {
	case schema.StructKind:
		s := v.(*Struct)
		w.visit(s)
		for i, f := range s.t.Fields {
			if fv := s.fields[i]; fv != nil && needsWalk(f.Type) {
				w.path = append(w.path, pathSeg{field: f.Name})
				w.walk(f.Type, fv)
				w.path = w.path[:len(w.path)-1]
			}
		}
	case schema.List, schema.Set:
		l := v.(*starlark.List)
		for i := range l.Len() {
			w.path = append(w.path, pathSeg{index: i})
			w.walk(t.Elem, l.Index(i))
			w.path = w.path[:len(w.path)-1]
		}
	case schema.Map:
		for _, kv := range v.(*starlark.Dict).Items() {
			w.path = append(w.path, pathSeg{key: kv[0]})
			w.walk(t.Elem, kv[1])
			w.path = w.path[:len(w.path)-1]
		}
	}
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
