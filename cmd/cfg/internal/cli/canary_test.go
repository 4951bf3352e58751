package cli

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/gitrepo"
)

// canaryRepo makes a git repository of examples/canary, committed with cfg
// commit, puts the example's good change to demo/service in the working
// tree, and reads it as cfg canary does: the candidate, and the commits
// that land and revert it.
func canaryRepo(t *testing.T) (dir string, cand *canaryCandidate, commits *canaryCommits) {
	t.Helper()
	return canaryRepoWith(t, "")
}

// canaryRepoWith is canaryRepo with settings as the repository's cfg.json,
// if not empty.
func canaryRepoWith(t *testing.T, settings string) (dir string, cand *canaryCandidate, commits *canaryCommits) {
	t.Helper()
	t.Setenv("CFG_AUTHOR_NAME", "Ann")
	t.Setenv("CFG_AUTHOR_EMAIL", "ann@example.com")
	dir = t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "source"), os.DirFS("../../../../examples/canary/source")); err != nil {
		t.Fatal(err)
	}
	if settings != "" {
		writeAtomic(t, dir, "cfg.json", settings)
	}
	if _, err := git.PlainInit(dir, false); err != nil {
		t.Fatal(err)
	}
	if code, _, errb := runCfg(dir, "commit", "-m", "initial"); code != ExitOK {
		t.Fatalf("initial commit: exit %d\n%s", code, errb)
	}
	good, err := os.ReadFile("../../../../examples/canary/changes/good.cconf")
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, dir, "source/demo/service.cconf", string(good))

	f, _, errb := testFactory(dir, false)
	cmd := &cobra.Command{}
	cmd.Flags().String("root", "", "")
	cmd.SetContext(context.Background())
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ws.git()
	if err != nil {
		t.Fatal(err)
	}
	cand, err = readCandidate(f, cmd, ws, g, &CanaryOptions{Spec: "demo/canary", Format: "text"})
	if err != nil {
		t.Fatalf("readCandidate: %v\n%s", err, errb)
	}
	commits = &canaryCommits{ws: ws, g: g, cand: cand, author: gitrepo.Signature{Name: "Ann", Email: "ann@example.com"},
		landMessage: "canary: land demo/service", revertSubject: "canary: revert demo/service", id: "canary-1"}
	return dir, cand, commits
}

// commitOf reads a commit of the repository at dir, and its files.
func commitOf(t *testing.T, dir, hash string) (*object.Commit, map[string]string) {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	iter, err := c.Files()
	if err != nil {
		t.Fatal(err)
	}
	err = iter.ForEach(func(f *object.File) error {
		s, err := f.Contents()
		files[f.Name] = s
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, files
}

// The landing commits exactly the files cfg canary compiled and validated
// at its start, on the commit it started from, whatever the working tree
// holds by then; the revert commits the files of that commit on the
// landing commit. Neither reads or writes the working tree: a
// materialized_configs/ that has become a link to a directory outside the
// repository is not written through.
func TestCanaryLandAndRevert(t *testing.T) {
	dir, cand, commits := canaryRepo(t)
	_, before := commitOf(t, dir, cand.base.Commit)
	canaried := map[string]string{}
	for _, c := range cand.changes {
		canaried[c.Path] = string(c.Data)
	}
	if len(canaried) != 2 || !strings.Contains(canaried["materialized_configs/demo/service.json"], "now a little faster") {
		t.Fatalf("candidate changes: %v", canaried)
	}

	// Edited after the canary read it, and materialized_configs/ replaced
	// by a link to a directory outside the repository.
	writeAtomic(t, dir, "source/demo/service.cconf", "edited later\n")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.CopyFS(outside, os.DirFS(filepath.Join(dir, "materialized_configs"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "materialized_configs"), filepath.Join(t.TempDir(), "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "materialized_configs")); err != nil {
		t.Fatal(err)
	}
	outsideBefore := readDir(t, outside)

	landed, err := commits.land(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, files := commitOf(t, dir, landed)
	if len(c.ParentHashes) != 1 || c.ParentHashes[0].String() != cand.base.Commit {
		t.Errorf("the landing commit's parents are %v, want %s", c.ParentHashes, cand.base.Commit)
	}
	for p, data := range before {
		want, changed := canaried[p]
		if !changed {
			want = data
		}
		if files[p] != want {
			t.Errorf("the landing commit holds %s:\n%s\nwant\n%s", p, files[p], want)
		}
	}

	reverted, err := commits.revert(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, files = commitOf(t, dir, reverted)
	base, _ := commitOf(t, dir, cand.base.Commit)
	if len(c.ParentHashes) != 1 || c.ParentHashes[0].String() != landed || c.TreeHash != base.TreeHash {
		t.Errorf("the revert has parents %v and tree %s, want %s and the tree of the base %s", c.ParentHashes, c.TreeHash, landed, base.TreeHash)
	}
	if len(files) != len(before) {
		t.Errorf("the revert holds %d files, the base %d", len(files), len(before))
	}
	if !strings.Contains(c.Message, "this reverts commit "+landed) {
		t.Errorf("the revert's message: %q", c.Message)
	}
	if got := readDir(t, outside); !maps.Equal(got, outsideBefore) {
		t.Errorf("the directory outside the repository changed:\n%v\nwas\n%v", got, outsideBefore)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "source/demo/service.cconf")); string(data) != "edited later\n" {
		t.Errorf("the working tree's source is %q, want the edit kept", data)
	}
}

// In a repository that publishes the Thrift encodings (cfg.json), the
// candidate and the landing commit hold the changed config in each of
// them, as cfg compile writes them.
func TestCanaryLandsEncodings(t *testing.T) {
	dir, cand, commits := canaryRepoWith(t, `{"encodings": ["json", "thrift-binary", "thrift-compact"]}`)
	var paths []string
	for _, c := range cand.changes {
		paths = append(paths, c.Path)
	}
	slices.Sort(paths)
	want := []string{"materialized_configs/demo/service.json", "materialized_configs/demo/service.thrift-binary", "materialized_configs/demo/service.thrift-compact", "source/demo/service.cconf"}
	if !slices.Equal(paths, want) {
		t.Fatalf("candidate changes %q, want %q", paths, want)
	}
	landed, err := commits.land(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, files := commitOf(t, dir, landed)
	if code, _, errb := runCfg(dir, "compile"); code != ExitOK {
		t.Fatalf("cfg compile: exit %d\n%s", code, errb)
	}
	for _, p := range want {
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || files[p] != string(data) {
			t.Errorf("the landing commit's %s (%d bytes) is not what cfg compile writes (%d bytes, %v)", p, len(files[p]), len(data), err)
		}
	}
	// What the canary pushes is the config's JSON, not an encoding.
	if !cand.candidate.Compiled || string(cand.candidate.Data) != files["materialized_configs/demo/service.json"] {
		t.Errorf("the candidate pushed: compiled %v, %q; want the JSON", cand.candidate.Compiled, cand.candidate.Data)
	}
}

// A landing on a branch that moved since cfg canary read the working tree
// commits nothing and says so with a canary.NotLandedError; so does a
// revert on a branch that moved since the landing, which says how to
// revert by hand.
func TestCanaryBranchMovedCommits(t *testing.T) {
	dir, cand, commits := canaryRepo(t)
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	moveBranch := func() string {
		t.Helper()
		wt, err := r.Worktree()
		if err != nil {
			t.Fatal(err)
		}
		h, err := wt.Commit("meanwhile", &git.CommitOptions{AllowEmptyCommits: true, Author: &object.Signature{Name: "Bob", Email: "bob@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	head := func() string {
		t.Helper()
		ref, err := r.Head()
		if err != nil {
			t.Fatal(err)
		}
		return ref.Hash().String()
	}

	meanwhile := moveBranch()
	_, err = commits.land(context.Background())
	var nl *canary.NotLandedError
	want := "nothing committed: the branch moved while the canary ran (master at " + meanwhile[:12] + " now, not at " + cand.base.Commit[:12] + "); run cfg canary again"
	if !errors.As(err, &nl) || err.Error() != want {
		t.Errorf("landing on a moved branch: %v, want a NotLandedError %q", err, want)
	}
	if got := head(); got != meanwhile {
		t.Errorf("HEAD is %s, want %s", got, meanwhile)
	}

	// From the moved branch, landed; then the branch moves again.
	cand.base.Commit = meanwhile
	landed, err := commits.land(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	again := moveBranch()
	_, err = commits.revert(context.Background())
	want = "nothing committed: the branch moved after commit " + landed[:12] + " landed (master at " + again[:12] + " now, not at " + landed[:12] + "): revert it with git revert " + landed
	if err == nil || err.Error() != want {
		t.Errorf("reverting on a moved branch: %v, want %q", err, want)
	}
	if got := head(); got != again {
		t.Errorf("HEAD is %s, want %s", got, again)
	}
}

// readDir returns every file under dir, by path.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cfg canary refuses to start while git is in the middle of an operation,
// as cfg commit does: it could not land.
func TestCanaryRefusesGitState(t *testing.T) {
	dir, cand, _ := canaryRepo(t)
	if err := os.WriteFile(filepath.Join(dir, ".git", "MERGE_HEAD"), []byte(cand.base.Commit+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CFG_TOKEN", "t")
	code, stdout, stderr := runCfg(dir, "canary", "--spec", "demo/canary", "--daemon", "http://127.0.0.1:1")
	want := "cfg: cannot canary: a merge is in progress (MERGE_HEAD in the git directory): conclude it with git commit, or abort it with git merge --abort\n"
	if code != ExitInput || stdout != "" || !strings.HasSuffix(stderr, want) {
		t.Errorf("cfg canary during a merge: exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, ExitInput, want)
	}
}
