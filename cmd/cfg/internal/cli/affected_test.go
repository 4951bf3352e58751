package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// TestAffectedAgrees checks on a generated repository that cfg affected,
// cfg rdeps and the incremental compile agree on which configs a change
// affects: edits to two modules, a schema's validator and one config.
func TestAffectedAgrees(t *testing.T) {
	root := t.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 300, Modules: 12, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := compiler.Build(context.Background(), root, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	r, err := git.PlainInit(root, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	if err := os.WriteFile(filepath.Join(root, ".gitignore"), []byte(".cfg/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := wt.AddGlob("."); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Commit("generated", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Unix(0, 0)}}); err != nil {
		t.Fatal(err)
	}

	users, err := synth.ModuleUsers(root)
	if err != nil {
		t.Fatal(err)
	}
	var modules []string
	for m := range users {
		modules = append(modules, m)
	}
	slices.Sort(modules)
	tree, err := repo.Scan(os.DirFS(root))
	if err != nil {
		t.Fatal(err)
	}
	changed := []string{
		"source/" + modules[0], "source/" + modules[len(modules)/2],
		tree.Validators[0], tree.Configs[len(tree.Configs)-1],
	}
	for _, p := range changed {
		f, err := os.OpenFile(filepath.Join(root, p), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "\n# edited\n")
		f.Close()
	}

	run := func(args ...string) string {
		f, out, errb := testFactory(root, false)
		if code := Run(context.Background(), f, args); code != ExitOK {
			t.Fatalf("cfg %s: exit %d: %s", strings.Join(args, " "), code, errb)
		}
		return out.String()
	}
	var affected struct {
		Changed []string `json:"changed"`
		Configs []struct {
			Source string `json:"source"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(run("affected", "--format", "json")), &affected); err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	if diff := cmp.Diff(changed, affected.Changed); diff != "" {
		t.Errorf("changed files (-want +got):\n%s", diff)
	}
	var fromAffected []string
	for _, c := range affected.Configs {
		fromAffected = append(fromAffected, c.Source)
	}

	// The configs among the reverse dependencies of each changed file.
	set := map[string]bool{}
	for _, p := range changed {
		var rd struct {
			Files []string `json:"files"`
		}
		if err := json.Unmarshal([]byte(run("rdeps", "--format", "json", p)), &rd); err != nil {
			t.Fatal(err)
		}
		for _, f := range append(rd.Files, p) {
			if repo.Classify(f) == repo.Config {
				set[f] = true
			}
		}
	}
	var fromRDeps []string
	for p := range set {
		fromRDeps = append(fromRDeps, p)
	}
	slices.Sort(fromRDeps)

	res, err := compiler.Build(context.Background(), root, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var compiled []string
	for _, o := range res.Outputs {
		compiled = append(compiled, o.Source)
	}
	slices.Sort(compiled)

	if len(compiled) < 20 || len(compiled) == len(tree.Configs) {
		t.Fatalf("the change should affect some configs but not all: %d of %d", len(compiled), len(tree.Configs))
	}
	if diff := cmp.Diff(fromRDeps, fromAffected); diff != "" {
		t.Errorf("cfg affected vs cfg rdeps (-rdeps +affected):\n%s", diff)
	}
	if diff := cmp.Diff(fromRDeps, compiled); diff != "" {
		t.Errorf("incremental compile vs cfg rdeps (-rdeps +compiled):\n%s", diff)
	}
}
