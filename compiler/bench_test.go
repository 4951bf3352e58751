package compiler

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// BenchmarkBuild measures a cold compile (validators included, outputs
// written) of a 1,000-config synthetic repository. scripts/bench.sh runs the
// larger comparison with the untyped baseline.
func BenchmarkBuild(b *testing.B) {
	root := b.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 1000, Modules: 20, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	for _, jobs := range []int{1, 2} {
		b.Run(map[int]string{1: "j1", 2: "j2"}[jobs], func(b *testing.B) {
			var bytes int64
			for b.Loop() {
				b.StopTimer()
				if err := os.RemoveAll(filepath.Join(root, "materialized_configs")); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := Build(context.Background(), root, Options{Jobs: jobs})
				if err != nil {
					b.Fatal(err)
				}
				if res.Failed > 0 {
					b.Fatal(res.Diags().Error())
				}
				bytes = res.Bytes
			}
			b.SetBytes(bytes)
		})
	}
}

// BenchmarkCompileAll measures compiling the same repository in memory,
// without writing: the cost of the language, type checks and validators.
func BenchmarkCompileAll(b *testing.B) {
	root := b.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 1000, Modules: 20, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	r, err := repo.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	fsys := r.FS()
	tree, err := repo.Scan(fsys)
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	for b.Loop() {
		bytes = 0
		for _, o := range New(fsys, Options{Jobs: 1}).CompileAll(context.Background(), tree.Configs) {
			if len(o.Diags) > 0 {
				b.Fatal(o.Diags.Error())
			}
			bytes += int64(len(o.Data))
		}
	}
	b.SetBytes(bytes)
}

// BenchmarkNoopBuild measures an incremental compile of a 10,000-config
// repository in which nothing changed.
func BenchmarkNoopBuild(b *testing.B) {
	root := b.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 10000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if _, err := Build(context.Background(), root, Options{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := Build(context.Background(), root, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Compiled != 0 {
			b.Fatalf("no-op build compiled %d configs", res.Compiled)
		}
	}
}
