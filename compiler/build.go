package compiler

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
)

// Result summarizes a Build.
type Result struct {
	Outputs  []*Output // one per config or raw config compiled (not those up to date); without Data, which is in the files
	Compiled int       // outputs that succeeded
	Failed   int       // outputs with diagnostics
	UpToDate int       // configs skipped because nothing they depend on changed
	Written  []string  // materialized files written (new or changed)
	Removed  []string  // orphaned materialized files deleted
	Bytes    int64     // bytes of materialized output produced
	Elapsed  time.Duration
	// Snapshot holds the files the build read and left, with
	// Options.Snapshot; nil otherwise.
	Snapshot *Snapshot
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
// With no targets it considers every config and raw config and deletes
// orphaned materialized files; otherwise it considers the given source paths
// (relative to root), where a module, schema or validator stands for the
// configs that depend on it. Builds are incremental: a config is compiled
// only if a file in its dependency closure changed since the last build (or
// its materialized file did); see the cache in .cfg/. A config that fails
// leaves its materialized file as it was. The error is for I/O problems and
// for a repository cfg refuses to write to (a *repo.LinkError, a
// *repo.SettingsError); problems in the input are in the outputs'
// diagnostics.
//
// All file access goes through repo.Repo: no link is followed, and before
// anything is written or removed every place written or removed is checked
// not to be or to lie behind a link. The encodings written beside the JSON
// are those of the repository's settings (repo.SettingsFile), whatever
// opts.Emit says; files of an encoding the repository does not publish are
// never removed (cfg validate reports them).
//
// With Options.Snapshot, every source file (and repo.SettingsFile) is read
// once, at the start, and the compile uses those bytes only; the Result's
// Snapshot holds them and the materialized files as the build left them.
func Build(ctx context.Context, root string, opts Options, targets ...string) (*Result, error) {
	start := time.Now()
	r, err := repo.Open(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fsys := r.FS()
	src := fsys // where sources are read
	var snap *Snapshot
	if opts.Snapshot {
		if snap, err = readSources(fsys, cmp.Or(opts.Jobs, runtime.NumCPU())); err != nil {
			return nil, err
		}
		src = snap
	}
	settings, err := repo.ReadSettings(src)
	if err != nil {
		return nil, err
	}
	opts.Emit = settings.Thrift()
	tree, err := repo.Scan(src)
	if err != nil {
		return nil, err
	}
	// A full build removes orphans: list them now, which also refuses a
	// link anywhere under materialized_configs/ before anything is written.
	var have []string
	if len(targets) == 0 {
		if have, err = repo.ListMaterialized(fsys); err != nil {
			return nil, err
		}
	}
	c := New(src, opts)
	cache := loadCache(r)
	if opts.Rebuild {
		cache = emptyCache()
	}
	files, err := c.scanFiles(tree, cache.Files)
	if err != nil {
		return nil, err
	}
	g := newGraph(tree, files)
	all := tree.Sources()
	candidates := all
	if len(targets) > 0 {
		for _, t := range targets {
			if _, err := fs.Stat(src, t); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: no such file in the repository", t)
			} else if err != nil {
				return nil, err
			}
		}
		candidates = g.Affected(targets)
	}

	res := &Result{}
	next := emptyCache()
	next.Files = files
	for _, p := range all {
		if st, ok := cache.Outputs[p]; ok {
			next.Outputs[p] = st
		}
	}
	salt := identity() + " emit=" + strings.Join(opts.Emit, ",")
	keys := make([]string, len(candidates))
	upToDate := make([]bool, len(candidates))
	parallel(c.opts.Jobs, len(candidates), func(i int) {
		p := candidates[i]
		keys[i] = g.key(salt, p)
		if prev, ok := cache.Outputs[p]; ok && prev.Key == keys[i] {
			mp := repo.MaterializedPath(p)
			st, ok := statOutput(fsys, mp)
			upToDate[i] = ok && st.Size == prev.Size && st.ModTime == prev.ModTime
			for _, enc := range opts.Emit {
				if _, ok := statOutput(fsys, repo.EncodedPath(mp, enc)); !ok && repo.Classify(p) == repo.Config {
					upToDate[i] = false
				}
			}
		}
	})
	keyOf := map[string]string{}
	var paths []string
	for i, p := range candidates {
		if upToDate[i] {
			res.UpToDate++
			continue
		}
		paths = append(paths, p)
		keyOf[p] = keys[i]
	}

	// Nothing is written before every file that may be is known not to be
	// a link, nor to lie behind one: a full build listed every file under
	// materialized_configs/; a build of targets checks their outputs.
	check := []string{repo.TypesFile, cachePath}
	for _, p := range paths {
		if len(targets) == 0 {
			break
		}
		mp := repo.MaterializedPath(p)
		check = append(check, mp)
		for _, enc := range opts.Emit {
			check = append(check, repo.EncodedPath(mp, enc))
		}
	}
	if err := r.CheckWritable(check...); err != nil {
		return nil, err
	}

	res.Outputs = make([]*Output, len(paths))
	written := make([][]string, len(paths))
	var mu sync.Mutex
	var writeErr error
	produced := map[string][]byte{} // with a snapshot: the outputs, by path
	c.CompileEachLent(ctx, paths, func(i int, o *Output) {
		res.Outputs[i] = o
		if len(o.Diags) > 0 {
			mu.Lock()
			delete(next.Outputs, o.Source)
			mu.Unlock()
			return
		}
		var wrote []string
		changed, err := r.WriteIfChanged(o.Path, o.Data)
		if changed {
			wrote = append(wrote, o.Path)
		}
		for _, enc := range opts.Emit {
			if b, ok := o.Encoded[enc]; ok && err == nil {
				ep := repo.EncodedPath(o.Path, enc)
				if changed, err = r.WriteIfChanged(ep, b); changed {
					wrote = append(wrote, ep)
				}
			}
		}
		encoded := o.Encoded
		o.Encoded = nil
		st, ok := statOutput(fsys, o.Path)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || !ok {
			writeErr = cmp.Or(writeErr, err, fmt.Errorf("%s: not written", o.Path))
			return
		}
		written[i] = wrote
		if snap != nil {
			produced[o.Path] = bytes.Clone(o.Data) // lent
			for _, enc := range opts.Emit {
				if b, ok := encoded[enc]; ok {
					produced[repo.EncodedPath(o.Path, enc)] = b
				}
			}
		}
		st.Key, st.Type = keyOf[o.Source], o.Type
		next.Outputs[o.Source] = st
		res.Bytes += int64(len(o.Data))
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
		res.Written = append(res.Written, written[i]...)
	}
	types, wrote, err := writeTypes(r, fsys, tree, next)
	if err != nil {
		return res, err
	}
	if wrote {
		res.Written = append(res.Written, repo.TypesFile)
	}
	if types != nil {
		produced[repo.TypesFile] = types
	}
	if len(targets) == 0 {
		if res.Removed, err = removeOrphans(r, have, all, settings); err != nil {
			return res, err
		}
	}
	if !next.sameAs(cache) {
		if err := next.save(r); err != nil {
			return res, fmt.Errorf("writing the compile cache: %w", err)
		}
	}
	if snap != nil {
		if err := snap.addOutputs(fsys, produced); err != nil {
			return res, err
		}
		res.Snapshot = snap
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// writeTypes brings repo.TypesFile up to date: the type of every config
// compiled now or before (a config that failed keeps its previous output,
// and so its previous type). It returns the file's content (nil when there
// is none) and whether it wrote it.
func writeTypes(w *repo.Repo, fsys fs.FS, tree *repo.Tree, cache *cacheData) ([]byte, bool, error) {
	var prev map[string]string
	if data, err := fs.ReadFile(fsys, repo.TypesFile); err == nil {
		prev, _ = repo.DecodeTypes(data)
	}
	types := map[string]string{}
	for _, p := range tree.Configs {
		name := repo.ConfigName(p)
		if st, ok := cache.Outputs[p]; ok && st.Type != "" {
			types[name] = st.Type
		} else if t, ok := prev[name]; ok {
			types[name] = t
		}
	}
	if len(types) == 0 && prev == nil {
		return nil, false, nil
	}
	data := repo.EncodeTypes(types)
	wrote, err := w.WriteIfChanged(repo.TypesFile, data)
	return data, wrote, err
}

// removeOrphans deletes the materialized files in have whose source is
// gone, and encodings of configs that the repository publishes no more
// configs in. Files of an encoding the repository does not publish are
// left alone: deleting published data takes a person, and cfg validate
// reports them.
func removeOrphans(r *repo.Repo, have, sources []string, settings *repo.Settings) ([]string, error) {
	want := map[string]bool{}
	for _, p := range sources {
		mp := repo.MaterializedPath(p)
		want[mp] = true
		if repo.Classify(p) == repo.Config {
			for _, enc := range settings.Thrift() {
				want[repo.EncodedPath(mp, enc)] = true
			}
		}
	}
	var removed []string
	for _, p := range have {
		if want[p] {
			continue
		}
		if enc := repo.EncodingOf(p); enc != "" && !settings.Publishes(enc) {
			continue
		}
		if err := r.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
