package gitrepo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// Git keeps some files per work tree (HEAD, the index, MERGE_HEAD) in the
// work tree's git directory, and the rest (refs, packed-refs, objects) in
// the common directory that every work tree of a repository shares; the two
// are the same directory except in a work tree added with git worktree add.
// cfg reads and updates HEAD and branch heads itself, the way git does,
// rather than through go-git, which rewrites a ref file in place (a reader
// can find it empty) and ignores git's lock files.

// findGitDirs returns the git directory and the common directory of the
// work tree at top.
func findGitDirs(top string) (gitDir, commonDir string, err error) {
	dot := filepath.Join(top, ".git")
	fi, err := os.Stat(dot)
	if err != nil {
		return "", "", fmt.Errorf("finding the git directory: %w", err)
	}
	gitDir = dot
	if !fi.IsDir() {
		// A linked work tree or a submodule: ".git" is a file naming the
		// git directory.
		data, err := os.ReadFile(dot)
		if err != nil {
			return "", "", fmt.Errorf("finding the git directory: %w", err)
		}
		p, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "gitdir:")
		if !ok {
			return "", "", fmt.Errorf("%s: got %q, want \"gitdir: PATH\"", dot, data)
		}
		gitDir = strings.TrimSpace(p)
		if !filepath.IsAbs(gitDir) {
			gitDir = filepath.Join(top, gitDir)
		}
	}
	commonDir = gitDir
	if data, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		commonDir = strings.TrimSpace(string(data))
		if !filepath.IsAbs(commonDir) {
			commonDir = filepath.Join(gitDir, commonDir)
		}
	}
	return filepath.Clean(gitDir), filepath.Clean(commonDir), nil
}

// refFile returns the file holding the loose ref name: HEAD and other
// per-work-tree refs are in the git directory, refs/... in the common one.
func (r *Repo) refFile(name string) string {
	dir := r.commonDir
	if !strings.HasPrefix(name, "refs/") || strings.HasPrefix(name, "refs/bisect/") || strings.HasPrefix(name, "refs/worktree/") || strings.HasPrefix(name, "refs/rewritten/") {
		dir = r.gitDir
	}
	return filepath.Join(dir, filepath.FromSlash(name))
}

// refValue is what a ref holds: another ref's name (a symbolic ref such as
// HEAD on a branch) or a commit. The zero refValue is a ref that does not
// exist.
type refValue struct {
	target string
	hash   plumbing.Hash
}

func (v refValue) exists() bool { return v.target != "" || !v.hash.IsZero() }

// errRefBeingWritten: a loose ref file is empty or cut short. Git never
// leaves one so (it writes a lock file and renames it into place), but
// other programs (go-git among them) rewrite ref files in place.
var errRefBeingWritten = errors.New("empty or partly written (is another program writing it?)")

// readRef reads the ref name as git stores it: its loose file, or else its
// line in packed-refs. A ref found in neither does not exist: only a file
// that is absent counts as absent; an empty or malformed one is retried for
// a moment (a writer may be rewriting it in place) and is then an error,
// never a ref that does not exist.
func (r *Repo) readRef(name string) (refValue, error) {
	var v refValue
	var err error
	for delay := time.Millisecond; ; delay *= 2 {
		v, err = r.readRefOnce(name)
		if !errors.Is(err, errRefBeingWritten) || delay > 100*time.Millisecond {
			break
		}
		time.Sleep(delay)
	}
	if err != nil {
		return refValue{}, fmt.Errorf("reading %s: %w", name, err)
	}
	return v, nil
}

func (r *Repo) readRefOnce(name string) (refValue, error) {
	data, err := os.ReadFile(r.refFile(name))
	switch {
	case err == nil:
		return parseRef(data)
	case !errors.Is(err, fs.ErrNotExist):
		return refValue{}, err
	case !strings.HasPrefix(name, "refs/"):
		return refValue{}, nil // HEAD and its kind are never packed
	}
	return r.packedRef(name)
}

// parseRef parses a loose ref file: "ref: NAME\n" or a hash and "\n".
func parseRef(data []byte) (refValue, error) {
	s := strings.TrimSpace(string(data))
	if target, ok := strings.CutPrefix(s, "ref:"); ok && strings.HasSuffix(string(data), "\n") {
		if target = strings.TrimSpace(target); target != "" {
			return refValue{target: target}, nil
		}
	}
	if isHash(s) {
		return refValue{hash: plumbing.NewHash(s)}, nil
	}
	if s == "" || !strings.HasSuffix(string(data), "\n") {
		return refValue{}, errRefBeingWritten
	}
	return refValue{}, fmt.Errorf("got %q, want a commit hash", s)
}

func isHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// packedRef reads ref name from packed-refs (which git replaces whole, by
// renaming, so it is never seen half written).
func (r *Repo) packedRef(name string) (refValue, error) {
	f, err := os.Open(filepath.Join(r.commonDir, "packed-refs"))
	if errors.Is(err, fs.ErrNotExist) {
		return refValue{}, nil
	}
	if err != nil {
		return refValue{}, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' || line[0] == '^' {
			continue
		}
		hash, ref, ok := strings.Cut(line, " ")
		if ok && ref == name {
			if !isHash(hash) {
				return refValue{}, fmt.Errorf("packed-refs: %s: got %q, want a commit hash", name, hash)
			}
			return refValue{hash: plumbing.NewHash(hash)}, nil
		}
	}
	if err := s.Err(); err != nil {
		return refValue{}, fmt.Errorf("reading packed-refs: %w", err)
	}
	return refValue{}, nil
}

// Head is where HEAD points: a branch (or no branch, when HEAD is detached)
// and the commit there.
type Head struct {
	// Branch is the ref HEAD names ("refs/heads/main"); "" when HEAD is
	// detached.
	Branch string
	// Commit is the full hash of the commit; "" when the branch has no
	// commits yet.
	Commit string
}

// BranchName returns the branch's short name ("main"), or "HEAD" when
// HEAD is detached.
func (h Head) BranchName() string {
	if h.Branch == "" {
		return "HEAD"
	}
	return strings.TrimPrefix(h.Branch, "refs/heads/")
}

// String describes h: "main at 0123456789ab", "main (no commits)",
// "detached HEAD at 0123456789ab".
func (h Head) String() string {
	name := h.BranchName()
	if h.Branch == "" {
		name = "detached HEAD"
	}
	if h.Commit == "" {
		return name + " (no commits)"
	}
	return fmt.Sprintf("%s at %.12s", name, h.Commit)
}

// Head reads HEAD and the commit it leads to, as git does: a branch whose
// ref is in neither its loose file nor packed-refs has no commits, and a
// ref file caught in the middle of being rewritten is an error, never a
// branch without commits.
func (r *Repo) Head() (Head, error) {
	v, err := r.readRef("HEAD")
	if err != nil {
		return Head{}, err
	}
	switch {
	case !v.exists():
		return Head{}, fmt.Errorf("reading HEAD: %s does not exist", r.refFile("HEAD"))
	case v.target == "":
		return Head{Commit: v.hash.String()}, nil
	}
	b, err := r.readRef(v.target)
	if err != nil {
		return Head{}, err
	}
	if b.target != "" {
		return Head{}, fmt.Errorf("reading %s: a symbolic ref to %s, want a branch", v.target, b.target)
	}
	h := Head{Branch: v.target}
	if b.exists() {
		h.Commit = b.hash.String()
	}
	return h, nil
}
