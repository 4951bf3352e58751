package compiler

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"

	"go.uber.org/thriftrw/ast"
	"go.uber.org/thriftrw/idl"

	"github.com/cfg-dev/cfg/repo"
)

// Deps returns the files the source file at p depends on, transitively,
// read statically: load() statements of Starlark files, include statements
// of Thrift files, and the validator file beside every schema reached
// (validators run on every config that uses the schema's types). Nothing is
// executed. The result is sorted and does not contain p.
func (c *Compiler) Deps(p string) ([]string, error) {
	seen := map[string]bool{p: true}
	queue := []string{p}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		direct, err := c.directDeps(cur)
		if err != nil {
			return nil, err
		}
		for _, d := range direct {
			if !seen[d] {
				seen[d] = true
				queue = append(queue, d)
			}
		}
	}
	delete(seen, p)
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

func (c *Compiler) directDeps(p string) ([]string, error) {
	switch repo.Classify(p) {
	case repo.Config, repo.Module, repo.Validator:
		pf, err := c.parse(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil // reported by the compile that loads it
		}
		if err != nil {
			return nil, nil // a syntax error: the file has no readable deps
		}
		var out []string
		for _, l := range pf.loads {
			if l.path != "" {
				out = append(out, l.path)
			}
		}
		return out, nil
	case repo.Schema:
		var out []string
		if _, err := fs.Stat(c.fsys, validatorPath(p)); err == nil {
			out = append(out, validatorPath(p))
		}
		src, err := fs.ReadFile(c.fsys, p)
		if err != nil {
			return out, nil
		}
		prog, err := idl.Parse(src)
		if err != nil {
			return out, nil
		}
		for _, h := range prog.Headers {
			if inc, ok := h.(*ast.Include); ok {
				out = append(out, path.Join(path.Dir(p), inc.Path))
			}
		}
		return out, nil
	}
	return nil, nil
}

// Affected returns the configs and raw configs that the given source paths
// stand for: a config or raw config stands for itself, any other file for
// every config that depends on it.
func (c *Compiler) Affected(tree *repo.Tree, targets []string) ([]string, error) {
	want := map[string]bool{}
	var others []string
	for _, t := range targets {
		if _, err := fs.Stat(c.fsys, t); err != nil {
			return nil, fmt.Errorf("%s: no such file in the repository", t)
		}
		switch repo.Classify(t) {
		case repo.Config, repo.Raw:
			want[t] = true
		default:
			others = append(others, t)
		}
	}
	if len(others) > 0 {
		for _, cfg := range tree.Configs {
			deps, err := c.Deps(cfg)
			if err != nil {
				return nil, err
			}
			for _, o := range others {
				if _, ok := slices.BinarySearch(deps, o); ok {
					want[cfg] = true
				}
			}
		}
	}
	out := make([]string, 0, len(want))
	for p := range want {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}
