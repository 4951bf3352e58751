package gitrepo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/index"
)

// StateError is the refusal to commit in a repository where a git
// operation is under way (a merge, cherry-pick, revert, rebase, am or
// bisect), where files have unresolved conflicts, or whose HEAD is
// detached: a commit then would drop the operation's state, commit
// conflict markers, or be on no branch.
type StateError struct {
	// State names it: "merge", "cherry-pick", "revert", "sequencer",
	// "rebase", "am", "bisect", "unmerged", "detached".
	State string
	// File is the file or directory of the git directory that shows the
	// operation ("MERGE_HEAD", "rebase-merge").
	File string
	// Unmerged lists the files with conflicts (index entries at a stage
	// other than 0), relative to the git work tree, sorted.
	Unmerged []string
	// Commit is the detached HEAD's commit.
	Commit string
}

// the states of StateError.State, with what git calls them and how to leave
// them.
var states = []struct {
	state, file, what, leave string
}{
	{"merge", "MERGE_HEAD", "a merge is in progress", "conclude it with git commit, or abort it with git merge --abort"},
	{"cherry-pick", "CHERRY_PICK_HEAD", "a cherry-pick is in progress", "conclude it with git cherry-pick --continue, or abort it with git cherry-pick --abort"},
	{"revert", "REVERT_HEAD", "a revert is in progress", "conclude it with git revert --continue, or abort it with git revert --abort"},
	{"am", "rebase-apply/applying", "git am is in progress", "conclude it with git am --continue, or abort it with git am --abort"},
	{"rebase", "rebase-merge", "a rebase is in progress", "conclude it with git rebase --continue, or abort it with git rebase --abort"},
	{"rebase", "rebase-apply", "a rebase is in progress", "conclude it with git rebase --continue, or abort it with git rebase --abort"},
	{"sequencer", "sequencer", "a cherry-pick or revert of several commits is in progress", "conclude it with git cherry-pick --continue (or git revert --continue), or abort it with --abort"},
	{"bisect", "BISECT_START", "a bisect is in progress", "end it with git bisect reset"},
}

// Message formats the error with the unmerged files' paths passed through
// path (which turns a path relative to the git work tree into one to show).
func (e *StateError) Message(path func(string) string) string {
	var unmerged string
	if len(e.Unmerged) > 0 {
		shown := make([]string, len(e.Unmerged))
		for i, p := range e.Unmerged {
			shown[i] = path(p)
		}
		unmerged = strings.Join(shown, ", ")
	}
	if e.State == "detached" {
		return fmt.Sprintf("HEAD is detached at %.12s: a commit would be on no branch (switch to a branch with git switch NAME)", e.Commit)
	}
	if e.State == "unmerged" {
		return fmt.Sprintf("files with unresolved conflicts: %s: resolve each conflict and mark the file resolved with git add", unmerged)
	}
	for _, s := range states {
		if s.state == e.State && s.file == e.File {
			msg := s.what + " (" + s.file + " in the git directory)"
			if unmerged != "" {
				msg += ", with unresolved conflicts in " + unmerged
			}
			return msg + ": " + s.leave
		}
	}
	return e.State
}

func (e *StateError) Error() string { return e.Message(func(p string) string { return p }) }

// CheckState returns a *StateError when committing now would be wrong: a
// git operation is under way (a merge, cherry-pick, revert, rebase, am or
// bisect), some files have unresolved conflicts, or HEAD is detached
// (unless allowDetached).
func (r *Repo) CheckState(allowDetached bool) error {
	idx, _, err := r.readIndex()
	if err != nil {
		return err
	}
	head, err := r.Head()
	if err != nil {
		return err
	}
	return r.checkState(idx, head, allowDetached)
}

func (r *Repo) checkState(idx *index.Index, head Head, allowDetached bool) error {
	var unmerged []string
	for _, e := range idx.Entries {
		// Stage 0 is a resolved entry (go-git's index.Merged is 1, the
		// common ancestor's stage, despite its name).
		if e.Stage != 0 {
			unmerged = append(unmerged, e.Name)
		}
	}
	slices.Sort(unmerged)
	unmerged = slices.Compact(unmerged)
	for _, s := range states {
		_, err := os.Lstat(filepath.Join(r.gitDir, filepath.FromSlash(s.file)))
		if err == nil {
			return &StateError{State: s.state, File: s.file, Unmerged: unmerged}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checking for %s: %w", s.file, err)
		}
	}
	if len(unmerged) > 0 {
		return &StateError{State: "unmerged", Unmerged: unmerged}
	}
	if head.Branch == "" && !allowDetached {
		return &StateError{State: "detached", Commit: head.Commit}
	}
	return nil
}

// readIndex reads the git index and the time it was written; a repository
// without one has an empty index.
func (r *Repo) readIndex() (*index.Index, time.Time, error) {
	idx := &index.Index{Version: 2}
	f, err := os.Open(filepath.Join(r.gitDir, "index"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the git index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the git index: %w", err)
	}
	if err := index.NewDecoder(bufio.NewReader(f)).Decode(idx); err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the git index: %w", err)
	}
	return idx, fi.ModTime(), nil
}
