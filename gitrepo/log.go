package gitrepo

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Commit describes a commit.
type Commit struct {
	Hash      string    `json:"hash"`
	Author    Signature `json:"author"`
	Committer Signature `json:"committer"`
	Message   string    `json:"message"` // without its final newline
}

func newCommit(c *object.Commit) Commit {
	sig := func(s object.Signature) Signature { return Signature{Name: s.Name, Email: s.Email, When: s.When} }
	return Commit{Hash: c.Hash.String(), Author: sig(c.Author), Committer: sig(c.Committer), Message: strings.TrimRight(c.Message, "\n")}
}

// Log returns the commits reachable from HEAD that changed any of the files
// at paths (relative to the config repository root): added, modified or
// deleted them. Commits come newest first (by commit time), at most limit
// of them unless limit is 0. As in git log, a merge is listed only when the
// files differ from every parent. A repository without commits has an empty
// log.
func (r *Repo) Log(paths []string, limit int) ([]Commit, error) {
	head, err := r.head()
	if err != nil || head == nil {
		return nil, err
	}
	gps := make([]string, len(paths))
	for i, p := range paths {
		gps[i] = r.GitPath(p)
	}
	// Compare each commit's blobs at paths with its parents' rather than
	// use LogOptions.PathFilter, which diffs whole trees of commits that
	// follow each other in the walk, parents or not.
	// Each commit's state is needed as a parent, then as the current
	// commit: keep it in between.
	seen := map[plumbing.Hash][]blob{}
	state := func(c *object.Commit) ([]blob, error) {
		if s, ok := seen[c.Hash]; ok {
			return s, nil
		}
		t, err := c.Tree()
		if err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", c.Hash, err)
		}
		out := make([]blob, len(gps))
		for i, gp := range gps {
			if out[i], err = treeBlob(t, gp, r.git.TreeObject); err != nil {
				return nil, err
			}
		}
		seen[c.Hash] = out
		return out, nil
	}
	equal := func(a, b []blob) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	iter, err := r.git.Log(&git.LogOptions{From: head.Hash, Order: git.LogOrderCommitterTime})
	if err != nil {
		return nil, fmt.Errorf("git log: %w", err)
	}
	defer iter.Close()
	var out []Commit
	err = iter.ForEach(func(c *object.Commit) error {
		cur, err := state(c)
		if err != nil {
			return err
		}
		delete(seen, c.Hash)
		changed := true
		if c.NumParents() == 0 {
			changed = !equal(cur, make([]blob, len(gps)))
		}
		err = c.Parents().ForEach(func(p *object.Commit) error {
			prev, err := state(p)
			if err != nil {
				return err
			}
			if equal(cur, prev) {
				changed = false
				return storer.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if changed {
			out = append(out, newCommit(c))
			if limit > 0 && len(out) == limit {
				return storer.ErrStop
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("git log: %w", err)
	}
	return out, nil
}
