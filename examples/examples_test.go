// Package examples holds runnable config repositories; its test compiles
// every one of them and fails on any drift.
package examples

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

func exampleRoots(t *testing.T) []string {
	t.Helper()
	roots, err := filepath.Glob("*/source")
	if err != nil || len(roots) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for i, r := range roots {
		roots[i] = filepath.Dir(r)
	}
	return roots
}

// readTree returns every file under dir by slash path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestExamplesValidate runs the CI gate on every example as committed.
func TestExamplesValidate(t *testing.T) {
	for _, root := range exampleRoots(t) {
		t.Run(root, func(t *testing.T) {
			r, err := repo.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rep, err := validate.Run(context.Background(), r.FS(), nil, compiler.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Diags) > 0 {
				t.Errorf("cfg validate reports problems (run cfg compile --root examples/%s):\n%s", root, rep.Diags.Error())
			}
		})
	}
}

// TestExamplesCompile compiles every example from its sources alone, with
// one worker and with eight, and compares the output byte for byte with
// the committed materialized configs.
func TestExamplesCompile(t *testing.T) {
	for _, root := range exampleRoots(t) {
		t.Run(root, func(t *testing.T) {
			want := readTree(t, filepath.Join(root, "materialized_configs"))
			for _, jobs := range []int{1, 8} {
				dir := t.TempDir()
				if err := os.CopyFS(filepath.Join(dir, "source"), os.DirFS(filepath.Join(root, "source"))); err != nil {
					t.Fatal(err)
				}
				res, err := compiler.Build(context.Background(), dir, compiler.Options{Jobs: jobs})
				if err != nil {
					t.Fatal(err)
				}
				if d := res.Diags(); len(d) > 0 {
					t.Fatalf("-j %d: %s", jobs, d.Error())
				}
				got := readTree(t, filepath.Join(dir, "materialized_configs"))
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("-j %d: compiled output differs from the committed materialized configs (-committed +compiled):\n%s", jobs, diff)
				}
			}
		})
	}
}
