package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io/fs"
	"slices"
	"sync"
	"time"

	"go.starlark.net/syntax"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/schema"
)

// fileState is what the compiler knows of one source file: its content hash
// and the files it depends on directly. The size and modification time let
// a later run reuse it without reading the file (as git's index does).
type fileState struct {
	Size    int64    `json:"size"`
	ModTime int64    `json:"mtime"`
	Hash    string   `json:"hash"`
	Deps    []string `json:"deps,omitempty"`
}

// scanFiles returns the state of every file under source/. A file whose size
// and modification time match prev is not read again.
func (c *Compiler) scanFiles(tree *repo.Tree, prev map[string]fileState) (map[string]fileState, error) {
	var all []string
	for _, l := range [][]string{tree.Configs, tree.Modules, tree.Schemas, tree.Validators, tree.Raw} {
		all = append(all, l...)
	}
	states := make([]fileState, len(all))
	errs := make([]error, len(all))
	parallel(c.opts.Jobs, len(all), func(i int) { states[i], errs[i] = c.scanFile(all[i], prev) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A file changed in the last moments could change again within the same
	// timestamp tick without its size changing; the next run reads it again.
	racy := time.Now().Add(-2 * time.Second).UnixNano()
	out := make(map[string]fileState, len(all))
	for i, p := range all {
		if states[i].ModTime > racy {
			states[i].Size = -1
		}
		out[p] = states[i]
	}
	return out, nil
}

func (c *Compiler) scanFile(p string, prev map[string]fileState) (fileState, error) {
	fi, err := fs.Stat(c.fsys, p)
	if err != nil {
		return fileState{}, err
	}
	st := fileState{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	if old, ok := prev[p]; ok && old.Size == st.Size && old.ModTime == st.ModTime && old.Hash != "" {
		st.Hash, st.Deps = old.Hash, old.Deps
		return st, nil
	}
	src, err := fs.ReadFile(c.fsys, p)
	if err != nil {
		return fileState{}, err
	}
	st.Hash = hashBytes(src)
	st.Deps = c.directDeps(p, src)
	return st, nil
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// directDeps reads the files p depends on from its content, without
// executing anything: load() statements of Starlark files, include
// statements of Thrift files, and, for a schema, the validator file beside
// it (its checks run on every config that uses the schema's types). A file
// that does not parse has no dependencies; compiling it reports why.
func (c *Compiler) directDeps(p string, src []byte) []string {
	var out []string
	switch repo.Classify(p) {
	case repo.Config, repo.Module, repo.Validator:
		parse := func() (*parsedFile, error) { return parseSource(p, src) }
		pf, err := parse()
		if repo.Classify(p) != repo.Config {
			// Kept for the compile; a config's tree is not (see parse).
			pf, err = c.parsed.get(p, parse)
		}
		if err != nil {
			return nil
		}
		for _, l := range pf.loads {
			if l.path != "" {
				out = append(out, l.path)
			}
		}
	case repo.Schema:
		out = append(out, validatorPath(p))
		out = append(out, schema.Includes(p, src)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// parseSource parses a Starlark file and collects its load statements.
func parseSource(p string, src []byte) (*parsedFile, error) {
	if d := diag.CheckText(p, src); d != nil {
		return nil, &moduleError{diags: diag.List{d}}
	}
	f, err := fileOptions.Parse(p, src, 0)
	if err != nil {
		return nil, err
	}
	pf := &parsedFile{f: f}
	for _, stmt := range f.Stmts {
		if l, ok := stmt.(*syntax.LoadStmt); ok {
			ref := loadRef{module: l.ModuleName(), pos: l.Load}
			ref.path, _ = resolveLoad(p, ref.module)
			pf.loads = append(pf.loads, ref)
		}
	}
	return pf, nil
}

// Graph is the static dependency graph of a repository: which source files
// each file loads, includes or is checked by, and the reverse.
type Graph struct {
	tree  *repo.Tree
	files map[string]fileState
	rev   map[string][]string

	mu      sync.Mutex
	digests map[string]string // closure digests, see key
}

// NewGraph reads the dependency graph of the repository.
func (c *Compiler) NewGraph(tree *repo.Tree) (*Graph, error) {
	files, err := c.scanFiles(tree, nil)
	if err != nil {
		return nil, err
	}
	return newGraph(tree, files), nil
}

func newGraph(tree *repo.Tree, files map[string]fileState) *Graph {
	g := &Graph{tree: tree, files: files, rev: map[string][]string{}, digests: map[string]string{}}
	for p, st := range files {
		for _, d := range st.Deps {
			g.rev[d] = append(g.rev[d], p)
		}
	}
	return g
}

// Deps returns what p depends on, transitively, sorted. Files that are
// depended on but do not exist (a validator a schema does not have, a load
// of a missing module) are left out.
func (g *Graph) Deps(p string) []string {
	return g.walk(p, func(q string) []string { return g.files[q].Deps }, true)
}

// RDeps returns the files that depend on p, transitively, sorted.
func (g *Graph) RDeps(p string) []string {
	return g.walk(p, func(q string) []string { return g.rev[q] }, true)
}

func (g *Graph) walk(p string, next func(string) []string, existing bool) []string {
	seen := map[string]bool{p: true}
	queue := []string{p}
	var out []string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, d := range next(cur) {
			if seen[d] {
				continue
			}
			seen[d] = true
			queue = append(queue, d)
			if _, ok := g.files[d]; ok || !existing {
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Affected returns the configs and raw configs that changes to the given
// source paths affect: a config or raw config itself, and every config that
// depends on a changed module, schema or validator. Paths may name deleted
// files.
func (g *Graph) Affected(paths []string) []string {
	want := map[string]bool{}
	for _, p := range paths {
		if k := repo.Classify(p); k == repo.Config || k == repo.Raw {
			if _, ok := g.files[p]; ok {
				want[p] = true
			}
		}
		for _, r := range g.walk(p, func(q string) []string { return g.rev[q] }, false) {
			if repo.Classify(r) == repo.Config {
				if _, ok := g.files[r]; ok {
					want[r] = true
				}
			}
		}
	}
	out := make([]string, 0, len(want))
	for p := range want {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// key identifies everything a config's output depends on: the compiler's
// identity (salt), and the content of every file in its dependency closure
// (files that do not exist count as absent). It combines the closure
// digests of the config's direct dependencies, each computed once per run.
func (g *Graph) key(salt, p string) string {
	h := sha256.New()
	writeEntry(h, salt, g.files[p].Hash)
	writeEntry(h, p, g.files[p].Hash)
	for _, d := range g.files[p].Deps {
		writeEntry(h, d, g.closureDigest(d))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// closureDigest hashes the content of p and of everything it depends on.
func (g *Graph) closureDigest(p string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.digests[p]; ok {
		return d
	}
	h := sha256.New()
	writeEntry(h, p, g.hash(p))
	for _, d := range g.walk(p, func(q string) []string { return g.files[q].Deps }, false) {
		writeEntry(h, d, g.hash(d))
	}
	d := hex.EncodeToString(h.Sum(nil)[:16])
	g.digests[p] = d
	return d
}

func (g *Graph) hash(p string) string {
	if st, ok := g.files[p]; ok {
		return st.Hash
	}
	return "absent"
}

func writeEntry(h hash.Hash, name, value string) {
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(value))
	h.Write([]byte{'\n'})
}
