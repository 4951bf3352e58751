package schema

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/cfg-dev/cfg/diag"
)

// Loader loads .thrift files from a filesystem rooted at the repository.
// It is safe for concurrent use; every file is converted once.
type Loader struct {
	fsys fs.FS

	mu       sync.Mutex
	files    map[string]*File
	errs     map[string]error
	structs  map[declKey]*Struct
	enums    map[declKey]*Enum
	services map[declKey]bool
}

type declKey struct{ file, name string }

// NewLoader returns a loader reading from fsys, whose root is the repository
// root; paths given to Load are slash-separated and relative to it.
func NewLoader(fsys fs.FS) *Loader {
	return &Loader{
		fsys:     fsys,
		files:    map[string]*File{},
		errs:     map[string]error{},
		structs:  map[declKey]*Struct{},
		enums:    map[declKey]*Enum{},
		services: map[declKey]bool{},
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

func (l *Loader) load(p string) (*File, error) {
	// Parse every file of the include tree not loaded yet, includes
	// first, then link them in that order.
	var order []string
	asts := map[string]*astFile{}
	if err := l.parseTree(p, asts, &order, nil, nil); err != nil {
		return nil, err
	}
	var linked []string
	for _, q := range order {
		if err := l.link(q, asts[q]); err != nil {
			l.forget(append(linked, q))
			return nil, err
		}
		linked = append(linked, q)
	}
	return l.files[p], nil
}

// forget drops the files of a tree that failed.
func (l *Loader) forget(paths []string) {
	for _, p := range paths {
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

// parseTree parses p and, recursively, the files it includes, and appends
// them to order includes first. stack holds the includes being followed.
func (l *Loader) parseTree(p string, asts map[string]*astFile, order *[]string, from *diag.Pos, stack []string) error {
	if i := slicesIndex(stack, p); i >= 0 {
		return diag.List{diag.Errorf(*from, "include cycle: %s", strings.Join(append(stack[i:], p), " -> "))}
	}
	if _, ok := asts[p]; ok || l.files[p] != nil {
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
	f, err := parseIDL(p, src)
	if err != nil {
		return err
	}
	asts[p] = f
	for _, inc := range f.includes {
		pos := diag.Pos{File: p, Line: inc.line, Col: inc.col}
		q, err := IncludePath(p, inc.path)
		if err != nil {
			return diag.List{diag.Errorf(pos, "%v", err)}
		}
		if err := l.parseTree(q, asts, order, &pos, append(stack, p)); err != nil {
			return err
		}
	}
	*order = append(*order, p)
	return nil
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// Includes returns the paths of the files the IDL source of the schema at
// p includes, resolved by IncludePath; those that do not resolve are left
// out. It is for reading dependencies without loading: errors are left to
// Load.
func Includes(p string, src []byte) []string {
	f, err := parseIDL(p, src)
	if err != nil {
		return nil
	}
	var out []string
	for _, inc := range f.includes {
		if q, err := IncludePath(p, inc.path); err == nil {
			out = append(out, q)
		}
	}
	return out
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
