package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotRepository: the config repository is not inside a git work tree.
	ErrNotRepository = errors.New("not in a git repository")
	// ErrNoCommits: HEAD names a branch that has no commits yet.
	ErrNoCommits = errors.New("no commits yet")
	// ErrUnknownRevision: a revision that names no commit.
	ErrUnknownRevision = errors.New("unknown revision")
	// ErrNothingToCommit: the given paths do not change the HEAD tree.
	ErrNothingToCommit = errors.New("nothing to commit")
	// ErrNoAuthor: no commit author is configured.
	ErrNoAuthor = errors.New("no commit author: set user.name and user.email with git config, or CFG_AUTHOR_NAME and CFG_AUTHOR_EMAIL")
)

// Repo is the git repository holding a config repository.
type Repo struct {
	git       *git.Repository
	wt        *git.Worktree
	top       string // the git work tree, absolute, symbolic links resolved
	prefix    string // the config repository root relative to top; "" when they are the same
	gitDir    string // the work tree's git directory (HEAD, index)
	commonDir string // the directory of refs and objects (the git directory, except in linked work trees)
	lock      *Lock  // the commit lock, while this Repo holds it
}

// Open opens the git repository whose work tree holds the config repository
// at root, looking for .git in root and the directories above it.
func Open(root string) (*Repo, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	g, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("%s: %w", root, ErrNotRepository)
	}
	if errors.Is(err, git.ErrUnsupportedExtensionRepositoryFormatVersion) {
		return nil, fmt.Errorf("opening git repository at %s: %w (cfg reads git with go-git, which does not take this extension; git sparse-checkout turns on worktreeConfig)", root, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening git repository at %s: %w", root, err)
	}
	wt, err := g.Worktree()
	if err != nil {
		return nil, fmt.Errorf("opening git work tree at %s: %w", root, err)
	}
	top := wt.Filesystem.Root()
	if resolved, err := filepath.EvalSymlinks(top); err == nil {
		top = resolved
	}
	rel, err := filepath.Rel(top, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s is outside the git work tree %s", root, top)
	}
	prefix := filepath.ToSlash(rel)
	if prefix == "." {
		prefix = ""
	}
	gitDir, commonDir, err := findGitDirs(wt.Filesystem.Root())
	if err != nil {
		return nil, err
	}
	return &Repo{git: g, wt: wt, top: top, prefix: prefix, gitDir: gitDir, commonDir: commonDir}, nil
}

// readExclude reads the patterns of info/exclude in the git directory
// commonDir, for the status of the working tree only. go-git's status
// reads .gitignore files but not this file: its work tree file system
// refuses every path into .git.
func readExclude(commonDir string) ([]gitignore.Pattern, error) {
	data, err := os.ReadFile(filepath.Join(commonDir, "info", "exclude"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the git ignore patterns: %w", err)
	}
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
			ps = append(ps, gitignore.ParsePattern(line, nil))
		}
	}
	return ps, nil
}

// WorkTree returns the absolute path of the git work tree.
func (r *Repo) WorkTree() string { return r.top }

// Prefix returns the config repository root relative to the git work tree,
// slash-separated; it is "" when the two are the same directory.
func (r *Repo) Prefix() string { return r.prefix }

// GitPath turns a path relative to the config repository root into one
// relative to the git work tree.
func (r *Repo) GitPath(p string) string {
	if r.prefix == "" {
		return p
	}
	return path.Join(r.prefix, p)
}

// RepoPath turns a path relative to the git work tree into one relative to
// the config repository root; ok is false for paths outside the config
// repository.
func (r *Repo) RepoPath(gitPath string) (p string, ok bool) {
	if r.prefix == "" {
		return gitPath, true
	}
	return strings.CutPrefix(gitPath, r.prefix+"/")
}

// Resolve returns the full hash of the commit rev names.
func (r *Repo) Resolve(rev string) (string, error) {
	c, err := r.commit(rev)
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

// commit returns the commit rev names.
func (r *Repo) commit(rev string) (*object.Commit, error) {
	if rev == "HEAD" {
		c, err := r.head()
		if err == nil && c == nil {
			err = fmt.Errorf("%s: %w", rev, ErrNoCommits)
		}
		return c, err
	}
	// A full hash names its commit (git prefers an object to a ref of the
	// same name): read it at once, rather than looking for refs so named
	// and reading the commit twice, as ResolveRevision does.
	if isFullHash(rev) {
		if c, err := r.git.CommitObject(plumbing.NewHash(rev)); err == nil {
			return c, nil
		}
	}
	h, err := r.git.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) || errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("%q: %w", rev, ErrUnknownRevision)
		}
		return nil, fmt.Errorf("%q: %w: %v", rev, ErrUnknownRevision, err)
	}
	c, err := r.git.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", h, err)
	}
	return c, nil
}

// isFullHash reports whether s is a full hash: 40 lowercase hex digits.
func isFullHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// head returns the HEAD commit, or nil when the branch has no commits yet.
func (r *Repo) head() (*object.Commit, error) {
	h, err := r.Head()
	if err != nil || h.Commit == "" {
		return nil, err
	}
	return r.commitObject(plumbing.NewHash(h.Commit))
}

// commitObject reads the commit h, looking again at the repository's packs
// if it is not found (another process may have packed it since the
// repository was opened).
func (r *Repo) commitObject(h plumbing.Hash) (*object.Commit, error) {
	c, err := r.git.CommitObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		r.refresh()
		c, err = r.git.CommitObject(h)
	}
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", h, err)
	}
	return c, nil
}

// refresh makes the next reads see objects other processes added to the
// repository since it was opened (go-git indexes pack files once).
func (r *Repo) refresh() {
	if s, ok := r.git.Storer.(*filesystem.Storage); ok {
		s.Reindex()
	}
}

// subtree returns the tree of the config repository root in commit c, or
// nil when c is nil or does not hold the directory.
func (r *Repo) subtree(c *object.Commit) (*object.Tree, error) {
	if c == nil {
		return nil, nil
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", c.Hash, err)
	}
	if r.prefix == "" {
		return t, nil
	}
	sub, err := t.Tree(r.prefix)
	if errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s in %s: %w", r.prefix, c.Hash, err)
	}
	return sub, nil
}

// ReadFile returns the content of the file at p (relative to the config
// repository root) in revision rev. A file rev does not have is an error
// wrapping fs.ErrNotExist.
func (r *Repo) ReadFile(rev, p string) ([]byte, error) {
	c, err := r.commit(rev)
	if err != nil {
		return nil, err
	}
	t, err := r.subtree(c)
	if err != nil {
		return nil, err
	}
	fsys := &treeFS{tree: t}
	return fsys.ReadFile(p)
}

// FilesAt returns the files at paths (relative to the config repository
// root) as commit rev holds them, with their data and mode (regular,
// executable or symbolic link), or as a File of Kind Deleted where rev
// holds no file; the zero rev "" is the branch before its first commit,
// which holds none. Committing them with CommitFiles puts the paths back as
// rev has them, without reading or writing the work tree.
func (r *Repo) FilesAt(rev string, paths []string) ([]File, error) {
	var t *object.Tree
	if rev != "" {
		c, err := r.commit(rev)
		if err != nil {
			return nil, err
		}
		if t, err = c.Tree(); err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", c.Hash, err)
		}
	}
	out := make([]File, 0, len(paths))
	for _, p := range paths {
		if !fs.ValidPath(p) || p == "." {
			return nil, fmt.Errorf("path %q: not a file path inside the config repository", p)
		}
		b, err := treeBlob(t, r.GitPath(p), r.git.TreeObject)
		if err != nil {
			return nil, err
		}
		f := File{Path: p, Kind: Deleted}
		switch b.mode {
		case filemode.Regular, filemode.Deprecated, filemode.Executable, filemode.Symlink:
			if f.Data, err = blobData(r, b.hash); err != nil {
				return nil, fmt.Errorf("reading %s in %.12s: %w", p, rev, err)
			}
			f.Kind, f.Executable, f.Symlink = Modified, b.mode == filemode.Executable, b.mode == filemode.Symlink
		}
		out = append(out, f)
	}
	return out, nil
}

// ChangeKind says how a file changed.
type ChangeKind int

// The kinds of change.
const (
	Added ChangeKind = iota + 1
	Modified
	Deleted
)

// String returns "added", "modified" or "deleted".
func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Modified:
		return "modified"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Letter returns the letter git status uses for k: A, M or D.
func (k ChangeKind) Letter() string { return strings.ToUpper(k.String()[:1]) }

// MarshalText encodes k as its String.
func (k ChangeKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Change is a file that differs between two states of the repository.
type Change struct {
	Path string     `json:"path"` // relative to the config repository root, slash-separated
	Kind ChangeKind `json:"change"`
}

// Paths returns the paths of changes.
func Paths(changes []Change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.Path
	}
	return out
}

// WorkingChanges returns the files of the config repository whose content in
// the working tree differs from HEAD: modified, added (staged or untracked,
// but not ignored) and deleted files, sorted by path. The index does not
// matter: a file staged and then changed back is not a change. In a
// repository without commits every file that is not ignored is added.
func (r *Repo) WorkingChanges() ([]Change, error) {
	head, err := r.head()
	if err != nil {
		return nil, err
	}
	return r.workingChanges(head, nil)
}

// WorkingChangesSince returns the files of the config repository whose
// content in the working tree differs from revision rev: what was committed
// since rev and what is not committed yet, together, sorted by path. A file
// changed since rev and changed back is not a change.
func (r *Repo) WorkingChangesSince(rev string) ([]Change, error) {
	base, err := r.commit(rev)
	if err != nil {
		return nil, err
	}
	committed, err := r.ChangesSince(rev)
	if err != nil {
		return nil, err
	}
	return r.workingChanges(base, Paths(committed))
}

// workingChanges compares the working tree with commit base (nil: no
// commit) at the paths that differ from HEAD in the working tree or the
// index, and at the given extra paths (relative to the config repository).
func (r *Repo) workingChanges(base *object.Commit, extra []string) ([]Change, error) {
	excludes, err := readExclude(r.commonDir)
	if err != nil {
		return nil, err
	}
	r.wt.Excludes = excludes
	st, err := r.wt.Status()
	if err != nil {
		return nil, fmt.Errorf("git status: %w", err)
	}
	var baseTree *object.Tree
	if base != nil {
		if baseTree, err = base.Tree(); err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", base.Hash, err)
		}
	}
	candidates := map[string]bool{}
	for gp, fst := range st {
		if fst.Staging != git.Unmodified || fst.Worktree != git.Unmodified {
			candidates[gp] = true
		}
	}
	for _, p := range extra {
		candidates[r.GitPath(p)] = true
	}
	var out []Change
	for gp := range candidates {
		p, ok := r.RepoPath(gp)
		if !ok {
			continue
		}
		old, err := treeBlob(baseTree, gp, r.git.TreeObject)
		if err != nil {
			return nil, err
		}
		cur, err := r.worktreeBlob(gp)
		if err != nil {
			return nil, err
		}
		switch {
		case old.mode == filemode.Submodule:
			// Submodules are not config files.
		case old.exists() && !cur.exists():
			out = append(out, Change{Path: p, Kind: Deleted})
		case !old.exists() && cur.exists():
			out = append(out, Change{Path: p, Kind: Added})
		case old.exists() && old != cur:
			out = append(out, Change{Path: p, Kind: Modified})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// ChangesSince returns the files of the config repository that differ
// between revision rev and HEAD (committed changes only), sorted by path.
// Renames are a deletion and an addition.
func (r *Repo) ChangesSince(rev string) ([]Change, error) {
	from, err := r.commit(rev)
	if err != nil {
		return nil, err
	}
	to, err := r.head()
	if err != nil {
		return nil, err
	}
	fromTree, err := r.subtree(from)
	if err != nil {
		return nil, err
	}
	toTree, err := r.subtree(to)
	if err != nil {
		return nil, err
	}
	changes, err := object.DiffTree(fromTree, toTree)
	if err != nil {
		return nil, fmt.Errorf("comparing %s with HEAD: %w", rev, err)
	}
	var out []Change
	for _, ch := range changes {
		switch {
		case ch.From.Name == "":
			out = append(out, Change{Path: ch.To.Name, Kind: Added})
		case ch.To.Name == "":
			out = append(out, Change{Path: ch.From.Name, Kind: Deleted})
		default:
			out = append(out, Change{Path: ch.To.Name, Kind: Modified})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// blob identifies the content of a file as git stores it; the zero blob is
// a file that does not exist.
type blob struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

func (b blob) exists() bool { return b.mode != filemode.Empty }

// treeBlob returns the blob at git path gp in t (nil: an empty tree),
// reading its subtrees with tree.
func treeBlob(t *object.Tree, gp string, tree func(plumbing.Hash) (*object.Tree, error)) (blob, error) {
	parts := strings.Split(gp, "/")
	for i, name := range parts {
		if t == nil {
			return blob{}, nil
		}
		var e *object.TreeEntry
		for j := range t.Entries {
			if t.Entries[j].Name == name {
				e = &t.Entries[j]
				break
			}
		}
		switch {
		case e == nil:
			return blob{}, nil
		case i == len(parts)-1:
			if e.Mode == filemode.Dir {
				return blob{}, nil
			}
			return blob{hash: e.Hash, mode: e.Mode}, nil
		case e.Mode != filemode.Dir:
			return blob{}, nil // a file where gp needs a directory
		}
		sub, err := tree(e.Hash)
		if err != nil {
			return blob{}, fmt.Errorf("reading %s: %w", gp, err)
		}
		t = sub
	}
	return blob{}, nil
}

// worktreeBlob hashes the file at git path gp in the work tree the way git
// would store it.
func (r *Repo) worktreeBlob(gp string) (blob, error) {
	b, _, err := r.worktreeFile(gp)
	return b, err
}

// worktreeFile is worktreeBlob that also returns the file's information,
// taken before it was read.
//
// As for git, a path with a symbolic link on the way to it (a directory
// replaced by a link) holds no file: the link is not followed.
func (r *Repo) worktreeFile(gp string) (blob, os.FileInfo, error) {
	name := filepath.Join(r.top, filepath.FromSlash(gp))
	for dir := path.Dir(gp); dir != "."; dir = path.Dir(dir) {
		fi, err := os.Lstat(filepath.Join(r.top, filepath.FromSlash(dir)))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return blob{}, nil, nil
		}
	}
	fi, err := os.Lstat(name)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return blob{}, nil, nil
	}
	if err != nil {
		return blob{}, nil, err
	}
	b, err := hashFile(name, fi)
	return b, fi, err
}

func hashFile(name string, fi os.FileInfo) (blob, error) {
	if fi.IsDir() {
		return blob{}, nil // a directory: no file here (or a submodule)
	}
	mode, err := filemode.NewFromOSFileMode(fi.Mode())
	if err != nil {
		return blob{}, fmt.Errorf("%s: %w", name, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(name)
		if err != nil {
			return blob{}, err
		}
		return blob{hash: plumbing.ComputeHash(plumbing.BlobObject, []byte(target)), mode: mode}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return blob{}, err
	}
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, fi.Size())
	if n, err := io.Copy(h, f); err != nil {
		return blob{}, fmt.Errorf("reading %s: %w", name, err)
	} else if n != fi.Size() {
		return blob{}, fmt.Errorf("reading %s: file changed while it was read", name)
	}
	return blob{hash: h.Sum(), mode: mode}, nil
}
