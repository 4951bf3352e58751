package compiler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
)

// Result summarizes a Build.
type Result struct {
	Outputs  []*Output // one per compiled config or raw config
	Compiled int       // outputs that succeeded
	Failed   int       // outputs with diagnostics
	Written  []string  // materialized files written (new or changed)
	Removed  []string  // orphaned materialized files deleted
	Bytes    int64     // bytes of materialized output produced
	Elapsed  time.Duration
}

// Diags returns the diagnostics of every output, sorted by position.
func (r *Result) Diags() diag.List {
	var l diag.List
	for _, o := range r.Outputs {
		l = append(l, o.Diags...)
	}
	l.Sort()
	return l
}

// Build compiles the repository at root and writes its materialized configs.
// With no targets it compiles every config and raw config and deletes
// orphaned materialized files; otherwise it compiles the given source paths
// (relative to root), where a module, schema or validator stands for the
// configs that depend on it. A config that fails leaves its materialized
// file as it was. The error is for I/O problems; problems in the input are
// in the outputs' diagnostics.
func Build(ctx context.Context, root string, opts Options, targets ...string) (*Result, error) {
	start := time.Now()
	fsys := os.DirFS(root)
	tree, err := repo.Scan(fsys)
	if err != nil {
		return nil, err
	}
	c := New(fsys, opts)
	all := append(slices.Clone(tree.Configs), tree.Raw...)
	slices.Sort(all)
	paths := all
	if len(targets) > 0 {
		if paths, err = c.Affected(tree, targets); err != nil {
			return nil, err
		}
	}
	res := &Result{Outputs: make([]*Output, len(paths))}
	written := make([]bool, len(paths))
	var mu sync.Mutex
	var writeErr error
	w := repo.NewWriter(root)
	c.compileEach(ctx, paths, func(i int, o *Output) {
		res.Outputs[i] = o
		if len(o.Diags) > 0 {
			return
		}
		changed, err := w.WriteIfChanged(o.Path, o.Data)
		if err != nil {
			mu.Lock()
			writeErr = cmp.Or(writeErr, err)
			mu.Unlock()
		}
		written[i] = changed
	})
	if writeErr != nil {
		return res, writeErr
	}
	for i, o := range res.Outputs {
		if len(o.Diags) > 0 {
			res.Failed++
			continue
		}
		res.Compiled++
		res.Bytes += int64(len(o.Data))
		if written[i] {
			res.Written = append(res.Written, o.Path)
		}
	}
	if len(targets) == 0 {
		if res.Removed, err = removeOrphans(root, fsys, all); err != nil {
			return res, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// removeOrphans deletes materialized files whose source is gone.
func removeOrphans(root string, fsys fs.FS, sources []string) ([]string, error) {
	want := map[string]bool{}
	for _, p := range sources {
		want[repo.MaterializedPath(p)] = true
	}
	have, err := repo.ListMaterialized(fsys)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", repo.MaterializedDir, err)
	}
	var removed []string
	for _, p := range have {
		if want[p] {
			continue
		}
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(p))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
