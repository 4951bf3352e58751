package validate

import (
	"context"
	"testing"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// BenchmarkRun measures cfg validate on a compiled 1,000-config synthetic
// repository without drift, with one worker: every config compiled in
// memory, validators run, every materialized file compared. Next to
// compiler's BenchmarkCompileAll (the same compile, comparing nothing) it
// shows what the comparison costs.
func BenchmarkRun(b *testing.B) {
	root := b.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 1000, Modules: 20, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if _, err := compiler.Build(context.Background(), root, compiler.Options{}); err != nil {
		b.Fatal(err)
	}
	r, err := repo.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for b.Loop() {
		rep, err := Run(context.Background(), r.FS(), nil, compiler.Options{Jobs: 1})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Diags) > 0 {
			b.Fatal(rep.Diags.Error())
		}
	}
}
