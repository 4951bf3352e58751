package gitrepo

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

// commitWithParents commits the whole work tree with the given parents.
func (r *testRepo) commitWithParents(msg string, parents ...plumbing.Hash) plumbing.Hash {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: r.sig(), Parents: parents, AllowEmptyCommits: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func openHistory(t *testing.T, root string) *History {
	t.Helper()
	h, err := OpenHistory(root)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// files renders files as "kind path data" lines.
func files(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s %q", f.Kind, f.Path, f.Data))
	}
	return out
}

func TestHistory(t *testing.T) {
	r := newTestRepo(t)
	r.write(
		"cfg/materialized_configs/a.json", "a1",
		"cfg/materialized_configs/dir/b.txt", "b1",
		"cfg/materialized_configs/.hidden", "h",
		"cfg/source/a.cconf", "src",
		"other/materialized_configs/x.json", "not ours",
	)
	c1 := r.commitAll("one")
	r.write("cfg/materialized_configs/a.json", "a2", "cfg/source/a.cconf", "src2")
	c2 := r.commitAll("two")
	// A side branch off c1, merged into c2.
	r.write("cfg/materialized_configs/a.json", "a1", "cfg/materialized_configs/dir/b.txt", "", "cfg/materialized_configs/c.json", "c")
	f1 := r.commitWithParents("side", c1)
	r.write("cfg/materialized_configs/a.json", "a2")
	m := r.commitWithParents("merge", c2, f1)
	r.write("cfg/README", "only outside materialized_configs")
	c3 := r.commitAll("three")

	h := openHistory(t, r.root)
	gitDir := filepath.Join(r.top, ".git")
	if ref, packed := h.BranchFiles("release/2"); h.Repo() == nil || ref != filepath.Join(gitDir, "refs", "heads", "release", "2") || packed != filepath.Join(gitDir, "packed-refs") {
		t.Errorf("Repo() = %v, BranchFiles(release/2) = %q, %q for a work tree at %s", h.Repo(), ref, packed, r.top)
	}
	branch, err := h.HeadBranch()
	if err != nil {
		t.Fatal(err)
	}
	head, err := h.BranchHead(branch)
	if err != nil || head != c3.String() {
		t.Errorf("BranchHead(%q) = %s, %v; want %s", branch, head, err, c3)
	}
	if _, err := h.BranchHead("nope"); !errors.Is(err, ErrNoCommits) || err.Error() != `branch "nope": no commits yet` {
		t.Errorf("BranchHead(nope): %v", err)
	}

	got, err := h.FirstParentsSince(c1.String(), c3.String())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{c2.String(), m.String(), c3.String()}, got); diff != "" {
		t.Errorf("FirstParentsSince(c1, c3) (-want +got):\n%s", diff)
	}
	if got, err := h.FirstParentsSince(c3.String(), c3.String()); err != nil || len(got) != 0 {
		t.Errorf("FirstParentsSince(c3, c3) = %v, %v; want nothing", got, err)
	}
	if _, err := h.FirstParentsSince(f1.String(), c3.String()); !errors.Is(err, ErrNotAncestor) {
		t.Errorf("FirstParentsSince(side commit, c3): %v, want ErrNotAncestor", err)
	}

	tests := []struct {
		rev  plumbing.Hash
		want []string
	}{
		{c1, []string{`added materialized_configs/a.json "a1"`, `added materialized_configs/dir/b.txt "b1"`}},
		{c2, []string{`modified materialized_configs/a.json "a2"`}},
		{f1, []string{`added materialized_configs/c.json "c"`, `deleted materialized_configs/dir/b.txt ""`}},
		// A merge: what it changed against its first parent.
		{m, []string{`added materialized_configs/c.json "c"`, `deleted materialized_configs/dir/b.txt ""`}},
		{c3, nil},
	}
	for _, tt := range tests {
		fs, err := h.CommitChanges(tt.rev.String(), "materialized_configs")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, files(fs)); diff != "" {
			t.Errorf("CommitChanges(%.7s) (-want +got):\n%s", tt.rev, diff)
		}
	}

	fs, err := h.Files(c3.String(), "materialized_configs")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`added materialized_configs/a.json "a2"`, `added materialized_configs/c.json "c"`}, files(fs)); diff != "" {
		t.Errorf("Files(c3) (-want +got):\n%s", diff)
	}
	if fs, err := h.Files(c3.String(), "nope"); err != nil || fs != nil {
		t.Errorf("Files of a missing directory = %v, %v", fs, err)
	}
	info, err := h.CommitInfo(c2.String())
	if err != nil || info.Message != "two" {
		t.Errorf("CommitInfo(c2) = %+v, %v", info, err)
	}
}

func TestHistoryBare(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/materialized_configs/a.json", "a1")
	c1 := r.commitAll("one")
	bare := t.TempDir()
	if _, err := git.PlainClone(bare, true, &git.CloneOptions{URL: r.top}); err != nil {
		t.Fatal(err)
	}
	h := openHistory(t, bare)
	if ref, packed := h.BranchFiles("main"); h.Repo() != nil || ref != filepath.Join(bare, "refs", "heads", "main") || packed != filepath.Join(bare, "packed-refs") {
		t.Errorf("Repo() = %v, BranchFiles(main) = %q, %q for a bare repository %s", h.Repo(), ref, packed, bare)
	}
	branch, err := h.HeadBranch()
	if err != nil {
		t.Fatal(err)
	}
	head, err := h.BranchHead(branch)
	if err != nil || head != c1.String() {
		t.Fatalf("BranchHead = %s, %v; want %s", head, err, c1)
	}
	// The config repository root of a bare repository is its top.
	fs, err := h.Files(head, "cfg/materialized_configs")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{`added cfg/materialized_configs/a.json "a1"`}, files(fs)); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
}

// TestCommitChangesCost guards what reading a commit's changes costs, as
// the daemon reads them: a commit that
// changes one file allocates as much when the directories beside it hold
// 1,980 files, packed, as when they hold 9. Comparing every directory of
// the two trees, or reading the packs' indexes again, would cost in
// proportion to all of them.
func TestCommitChangesCost(t *testing.T) {
	allocs := func(beside int) float64 {
		r := newTestRepo(t)
		var pairs []string
		for f := range 10 {
			pairs = append(pairs, fmt.Sprintf("cfg/materialized_configs/d7/s/f%d.json", f), fmt.Sprintf(`{"f":%d}`, f))
		}
		for d := range 10 {
			for f := range beside {
				if d != 7 {
					pairs = append(pairs, fmt.Sprintf("cfg/materialized_configs/d%d/f%d.json", d, f), fmt.Sprintf(`{"f":%d}`, f))
				}
			}
		}
		r.write(pairs...)
		r.commitAll("all")
		r.gitOK("gc", "-q")
		g, err := git.PlainOpen(r.top) // go-git indexes packs once
		if err != nil {
			t.Fatal(err)
		}
		r.git = g
		r.write("cfg/materialized_configs/d7/s/f0.json", `{"f":"changed"}`)
		c := r.commitAll("one")
		h := openHistory(t, r.root)
		return testing.AllocsPerRun(20, func() {
			fs, err := h.CommitChanges(c.String(), "materialized_configs")
			if err != nil || len(fs) != 1 || fs[0].Path != "materialized_configs/d7/s/f0.json" {
				t.Fatalf("CommitChanges: %v, %v", files(fs), err)
			}
		})
	}
	small, big := allocs(1), allocs(220)
	t.Logf("the changes of a commit of one file: %.0f allocations with 9 files beside it, %.0f with 1,980", small, big)
	if big > small+10 {
		t.Errorf("the changes of a commit of one file: %.0f allocations with 1,980 files in the directories beside it, %.0f with 9: it reads more than what changed", big, small)
	}
}
