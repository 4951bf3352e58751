package gitrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

// looseFile is the file of the loose object h in the repository at top.
func looseFile(top string, h plumbing.Hash) string {
	hex := h.String()
	return filepath.Join(top, ".git", "objects", hex[:2], hex[2:])
}

// TestHistoryReadsNewPacks: objects that reach the repository in a pack
// after the History was opened (a fetch, a gc) are read, also once a
// later gc removed the pack they were first read from: go-git indexes
// packs once, and is told to look again when it does not find an object.
func TestHistoryReadsNewPacks(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/materialized_configs/a.json", "a1")
	c1 := r.commitAll("one")
	h := openHistory(t, r.root)
	_, err := h.CommitChanges(c1.String(), "materialized_configs")
	if err != nil {
		t.Fatal(err)
	}
	for i, data := range []string{"a2", "a3"} {
		r.write("cfg/materialized_configs/a.json", data, "cfg/materialized_configs/b.json", data)
		c := r.commitAll(data)
		r.gitOK("gc", "-q")                                // a pack of every object, the loose ones and the last pack removed
		if r.git, err = git.PlainOpen(r.top); err != nil { // for the next commitAll
			t.Fatal(err)
		}
		if _, err := os.Stat(looseFile(r.top, c)); !os.IsNotExist(err) {
			t.Fatalf("commit %d is still a loose object after git gc (%v)", i+2, err)
		}
		fs, err := h.CommitChanges(c.String(), "materialized_configs")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{`modified materialized_configs/a.json "` + data + `"`, `added materialized_configs/b.json "` + data + `"`}
		if i > 0 {
			want[1] = `modified materialized_configs/b.json "` + data + `"`
		}
		if diff := cmp.Diff(want, files(fs)); diff != "" {
			t.Errorf("after gc %d: CommitChanges (-want +got):\n%s", i+1, diff)
		}
		// The first commit's file, read from the pack of the last gc.
		if got, err := h.ReadFile(c1.String(), "materialized_configs/a.json"); err != nil || string(got) != "a1" {
			t.Errorf("after gc %d: ReadFile of the first commit: %q, %v", i+1, got, err)
		}
	}
}

// TestHistoryRefusesDamagedObjects: a loose object whose file holds
// another object, or is cut short, is an error naming it, never another
// content served as its own.
func TestHistoryRefusesDamagedObjects(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/materialized_configs/a.json", "a1")
	r.commitAll("one")
	r.write("cfg/materialized_configs/a.json", "a2")
	c2 := r.commitAll("two")
	a1 := plumbing.ComputeHash(plumbing.BlobObject, []byte("a1"))
	a2 := plumbing.ComputeHash(plumbing.BlobObject, []byte("a2"))
	other, err := os.ReadFile(looseFile(r.top, a1))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"another object": other, "cut short": other[:len(other)/2]} {
		t.Run(name, func(t *testing.T) {
			f := looseFile(r.top, a2)
			os.Chmod(f, 0o644)
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			h := openHistory(t, r.root)
			fs, err := h.CommitChanges(c2.String(), "materialized_configs")
			if err == nil || !strings.Contains(err.Error(), a2.String()) {
				t.Errorf("CommitChanges of a commit whose file's object is damaged: %v, %v; want an error naming %s", files(fs), err, a2)
			}
			if got, err := h.ReadFile(c2.String(), "materialized_configs/a.json"); err == nil {
				t.Errorf("ReadFile of a damaged object: %q, want an error", got)
			}
		})
	}
}

// TestBranchHeadRefs: a branch head is read from its ref file, and from
// packed-refs once git pack-refs moved it there.
func TestBranchHeadRefs(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/a", "1")
	c1 := r.commitAll("one")
	r.gitOK("branch", "release/2")
	h := openHistory(t, r.root)
	for _, branch := range []string{"master", "release/2"} {
		if got, err := h.BranchHead(branch); err != nil || got != c1.String() {
			t.Errorf("BranchHead(%q) from its ref file: %s, %v; want %s", branch, got, err, c1)
		}
	}
	r.gitOK("pack-refs", "--all")
	if _, err := os.Stat(filepath.Join(r.top, ".git", "refs", "heads", "release", "2")); !os.IsNotExist(err) {
		t.Fatalf("the ref file is still there after git pack-refs --all (%v)", err)
	}
	for _, branch := range []string{"master", "release/2"} {
		if got, err := h.BranchHead(branch); err != nil || got != c1.String() {
			t.Errorf("BranchHead(%q) from packed-refs: %s, %v; want %s", branch, got, err, c1)
		}
	}
	for _, branch := range []string{"nope", "../HEAD", "release/../master"} {
		if got, err := h.BranchHead(branch); err == nil {
			t.Errorf("BranchHead(%q): %s, want an error", branch, got)
		}
	}
}
