package compiler

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"

	"github.com/cfg-dev/cfg/repo"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenFS builds a repository from the source/ files of an archive.
func goldenFS(ar *txtar.Archive) fstest.MapFS {
	fsys := fstest.MapFS{}
	for _, f := range ar.Files {
		if strings.HasPrefix(f.Name, repo.SourceDir+"/") {
			fsys[f.Name] = &fstest.MapFile{Data: f.Data}
		}
	}
	return fsys
}

// compileArchive compiles every config and raw config of the archive and
// returns the expected-output sections: one per materialized file, and a
// "diagnostics" section when something failed.
func compileArchive(t *testing.T, fsys fstest.MapFS, jobs int) []txtar.File {
	t.Helper()
	tree, err := repo.Scan(fsys)
	if err != nil {
		t.Fatal(err)
	}
	paths := append(slices.Clone(tree.Configs), tree.Raw...)
	slices.Sort(paths)
	var files []txtar.File
	var diags bytes.Buffer
	for _, o := range New(fsys, Options{Jobs: jobs, MaxSteps: 1_000_000}).CompileAll(context.Background(), paths) {
		if len(o.Diags) > 0 {
			for _, d := range o.Diags {
				diags.WriteString(d.Long() + "\n")
			}
			continue
		}
		files = append(files, txtar.File{Name: o.Path, Data: o.Data})
	}
	if diags.Len() > 0 {
		files = append(files, txtar.File{Name: "diagnostics", Data: diags.Bytes()})
	}
	return files
}

func TestGolden(t *testing.T) {
	archives, _ := filepath.Glob("testdata/golden/*.txtar")
	if len(archives) == 0 {
		t.Fatal("no golden archives")
	}
	for _, name := range archives {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(name)
			if err != nil {
				t.Fatal(err)
			}
			got := compileArchive(t, goldenFS(ar), 4)
			var want []txtar.File
			var sources []txtar.File
			for _, f := range ar.Files {
				if strings.HasPrefix(f.Name, repo.SourceDir+"/") {
					sources = append(sources, f)
				} else {
					want = append(want, f)
				}
			}
			if *update {
				ar.Files = append(sources, got...)
				if err := os.WriteFile(name, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(toMap(want), toMap(got)); diff != "" {
				t.Errorf("outputs differ from %s (-want +got; go test -update rewrites):\n%s", name, diff)
			}
		})
	}
}

// TestDeterministic checks that outputs do not depend on the number of
// workers or on the run.
func TestDeterministic(t *testing.T) {
	archives, _ := filepath.Glob("testdata/golden/*.txtar")
	for _, name := range archives {
		ar, err := txtar.ParseFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fsys := goldenFS(ar)
		first := toMap(compileArchive(t, fsys, 1))
		for _, jobs := range []int{8, 1, 3} {
			if diff := cmp.Diff(first, toMap(compileArchive(t, fsys, jobs))); diff != "" {
				t.Errorf("%s: -j %d differs from -j 1:\n%s", name, jobs, diff)
			}
		}
	}
}

func toMap(files []txtar.File) map[string]string {
	m := map[string]string{}
	for _, f := range files {
		m[f.Name] = string(f.Data)
	}
	return m
}
