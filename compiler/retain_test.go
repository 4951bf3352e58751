package compiler

import (
	"context"
	"runtime"
	"testing"
	"weak"

	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// TestConfigTreesNotRetained attacks the bound on a compile's memory: a
// compile holds the syntax trees of the configs being compiled, not of
// every config of the repository. A config's tree is unreachable once the
// config is compiled, and neither reading the dependency graph nor
// compiling leaves a config's tree in the compiler's cache of parsed files
// (only modules and validators, shared by configs, are kept).
func TestConfigTreesNotRetained(t *testing.T) {
	root := t.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 60, Modules: 5, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fsys := r.FS()
	tree, err := repo.Scan(fsys)
	if err != nil {
		t.Fatal(err)
	}
	c := New(fsys, Options{Jobs: 2})
	if _, err := c.scanFiles(tree, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range c.CompileAll(context.Background(), tree.Configs) {
		if len(o.Diags) > 0 {
			t.Fatalf("%s: %v", o.Source, o.Diags)
		}
	}
	c.parsed.mu.Lock()
	for p := range c.parsed.m {
		if repo.Classify(p) == repo.Config {
			t.Errorf("the tree of config %q is kept after the compile", p)
		}
	}
	c.parsed.mu.Unlock()

	p := tree.Configs[0]
	pf, err := c.parse(p)
	if err != nil {
		t.Fatal(err)
	}
	w := weak.Make(pf.f)
	pf = nil
	if o := c.Compile(p); len(o.Diags) > 0 {
		t.Fatalf("%s: %v", p, o.Diags)
	}
	runtime.GC()
	if w.Value() != nil {
		t.Errorf("the syntax tree of %q is reachable after it was compiled", p)
	}
	runtime.KeepAlive(c)
}
