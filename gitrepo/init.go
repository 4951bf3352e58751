package gitrepo

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// DefaultBranch is the branch of a repository Init makes.
const DefaultBranch = "main"

// Init makes dir a git repository (non-bare, its branch DefaultBranch)
// unless dir is already in a git work tree, and reports whether it made
// one. The work tree found, or made, is returned as an absolute path.
func Init(dir string) (top string, made bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	g, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err == nil {
		wt, err := g.Worktree()
		if err != nil {
			return "", false, fmt.Errorf("opening git work tree at %s: %w", dir, err)
		}
		return wt.Filesystem.Root(), false, nil
	}
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		return "", false, fmt.Errorf("opening git repository at %s: %w", dir, err)
	}
	_, err = git.PlainInitWithOptions(abs, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(DefaultBranch)},
	})
	if err != nil {
		return "", false, fmt.Errorf("making a git repository at %s: %w", dir, err)
	}
	return abs, true, nil
}
