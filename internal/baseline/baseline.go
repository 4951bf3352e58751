// Package baseline runs a config repository's programs with plain
// go.starlark.net and untyped constructors, writing the same JSON files as
// the cfg compiler: the floor that type checking and validation are measured
// against.
//
// Loading a .thrift file yields, for each struct, union and exception, a
// builtin that records its keyword arguments in call order; for each enum, a
// namespace whose attributes are the item names as strings; and the
// constants with scalar values. Nothing is checked: no field names, types,
// ranges, required fields or validators. Loading a .cinc file executes it once
// per Run and shares its frozen globals. The exported value is written as
// JSON with struct fields in keyword order, two-space indent, no HTML
// escaping and a trailing newline.
package baseline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Stats reports what Run did.
type Stats struct {
	Configs int           // configs compiled and written
	Bytes   int64         // bytes of JSON written
	Elapsed time.Duration // wall time of the whole run
}

// fileOptions are the Starlark dialect options; the defaults of the
// specification, as the compiler uses.
var fileOptions = &syntax.FileOptions{}

// Run executes every .cconf file under root/source with jobs workers (all
// CPUs if jobs < 1) and writes root/materialized_configs/<name>.json. It
// returns an error listing the configs that failed; the others are written.
func Run(root string, jobs int) (Stats, error) {
	return run(root, jobs, true)
}

// RunInMemory is Run without writing files: it encodes every config and
// discards the bytes, to measure the compile apart from the file system.
func RunInMemory(root string, jobs int) (Stats, error) {
	return run(root, jobs, false)
}

func run(root string, jobs int, write bool) (Stats, error) {
	start := time.Now()
	if jobs < 1 {
		jobs = runtime.NumCPU()
	}
	src := filepath.Join(root, "source")
	var names []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".cconf") {
			rel, _ := filepath.Rel(src, p)
			names = append(names, strings.TrimSuffix(filepath.ToSlash(rel), ".cconf"))
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("finding configs: %w", err)
	}
	slices.Sort(names)

	r := &runner{
		src:     src,
		out:     filepath.Join(root, "materialized_configs"),
		modules: map[string]*entry{},
		schemas: map[string]*schemaEntry{},
		dirs:    map[string]bool{},
		write:   write,
	}
	var (
		next    atomic.Int64
		written atomic.Int64
		bytes   atomic.Int64
		mu      sync.Mutex
		errs    []error
		wg      sync.WaitGroup
	)
	for range min(jobs, max(len(names), 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) {
					return
				}
				n, err := r.compile(names[i])
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				written.Add(1)
				bytes.Add(int64(n))
			}
		})
	}
	wg.Wait()
	st := Stats{Configs: int(written.Load()), Bytes: bytes.Load(), Elapsed: time.Since(start)}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
		}
		return st, errors.Join(errs...)
	}
	return st, nil
}

type runner struct {
	src, out string

	mu      sync.Mutex
	modules map[string]*entry       // .cinc, by path under source/
	schemas map[string]*schemaEntry // .thrift, by path under source/
	dirs    map[string]bool         // output directories made
	write   bool                    // write the outputs
}

// exportKey is the thread-local key of the exported value.
const exportKey = "baseline.export"

var exportBuiltin = starlark.NewBuiltin("export", func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	p, ok := th.Local(exportKey).(*starlark.Value)
	if !ok {
		return nil, fmt.Errorf("export: only in a .cconf file")
	}
	if *p != nil {
		return nil, fmt.Errorf("export: called more than once")
	}
	*p = v
	return starlark.None, nil
})

var configPredeclared = starlark.StringDict{"export": exportBuiltin}

// compile runs the config name and writes its JSON, returning its size.
func (r *runner) compile(name string) (int, error) {
	file := name + ".cconf"
	src, err := os.ReadFile(filepath.Join(r.src, filepath.FromSlash(file)))
	if err != nil {
		return 0, err
	}
	var exported starlark.Value
	th := r.thread(name, file, new(cycleChecker))
	th.SetLocal(exportKey, &exported)
	if _, err := starlark.ExecFileOptions(fileOptions, th, "source/"+file, src, configPredeclared); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if exported == nil {
		return 0, fmt.Errorf("%s: export was not called", name)
	}
	data, err := Encode(exported)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if !r.write {
		return len(data), nil
	}
	out := filepath.Join(r.out, filepath.FromSlash(name)+".json")
	if err := r.mkdir(filepath.Dir(out)); err != nil {
		return 0, err
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return 0, err
	}
	return len(data), nil
}

func (r *runner) mkdir(dir string) error {
	r.mu.Lock()
	done := r.dirs[dir]
	r.mu.Unlock()
	if done {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.mu.Lock()
	r.dirs[dir] = true
	r.mu.Unlock()
	return nil
}

// thread returns a thread executing file (a path under source/), whose
// loads resolve against it.
func (r *runner) thread(name, file string, cc *cycleChecker) *starlark.Thread {
	return &starlark.Thread{
		Name:  name,
		Print: func(_ *starlark.Thread, msg string) { fmt.Fprintln(os.Stderr, msg) },
		Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
			target, ok := strings.CutPrefix(module, "//")
			if !ok {
				target = path.Join(path.Dir(file), module)
			}
			switch path.Ext(target) {
			case ".thrift":
				return r.schema(target)
			case ".cinc":
				return r.module(cc, target)
			}
			return nil, fmt.Errorf("cannot load %q: only .thrift and .cinc files are loadable", module)
		},
	}
}

// Module loading: a concurrency-safe, duplicate-suppressing cache with load
// cycle detection, after go.starlark.net's ExampleThread_Load_parallel.

type entry struct {
	owner   atomic.Pointer[cycleChecker] // the loader while loading
	globals starlark.StringDict
	err     error
	ready   chan struct{}
}

// A cycleChecker is one logical thread of loading: a config and the modules
// it loads, transitively.
type cycleChecker struct {
	waitsFor atomic.Pointer[entry]
}

func (r *runner) module(cc *cycleChecker, file string) (starlark.StringDict, error) {
	r.mu.Lock()
	e := r.modules[file]
	if e != nil {
		r.mu.Unlock()
		// Another loader may be executing it: wait, unless that would
		// close a cycle in the waits-for graph.
		for x := e; x != nil; {
			owner := x.owner.Load()
			if owner == nil {
				break
			}
			if owner == cc {
				return nil, fmt.Errorf("cannot load %s: cycle in load graph", file)
			}
			x = owner.waitsFor.Load()
		}
		cc.waitsFor.Store(e)
		<-e.ready
		cc.waitsFor.Store(nil)
		return e.globals, e.err
	}
	e = &entry{ready: make(chan struct{})}
	e.owner.Store(cc)
	r.modules[file] = e
	r.mu.Unlock()

	src, err := os.ReadFile(filepath.Join(r.src, filepath.FromSlash(file)))
	if err == nil {
		th := r.thread(file, file, cc)
		e.globals, err = starlark.ExecFileOptions(fileOptions, th, "source/"+file, src, nil)
	}
	if err != nil {
		e.err = fmt.Errorf("cannot load %s: %w", file, err)
	}
	e.owner.Store(nil)
	close(e.ready)
	return e.globals, e.err
}
