package gitrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrNotAncestor: a commit is not on the first-parent history of another
// (the branch was rewritten, or the commit is gone).
var ErrNotAncestor = errors.New("not on the first-parent history")

// History reads the committed history of a repository, as the distribution
// daemon's tailer does: branch heads, first-parent commits, and the files a
// commit changed under a directory, with their contents. Unlike Repo it also
// opens bare repositories (a mirror kept up to date with git fetch), whose
// config repository root is the top of their tree. A History is not safe
// for concurrent use.
type History struct {
	r    *Repo
	objs *objects
	// The files of objects/pack when refreshPacks last read the packs, if it
	// could list them.
	packs     []string
	packsRead bool
}

// OpenHistory opens the repository holding the config repository at root:
// a work tree (root is then any directory in it, as for Open) or a bare
// repository (root is then the repository itself).
func OpenHistory(root string) (*History, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	g, err := git.PlainOpen(abs)
	if err == nil {
		if cfg, err := g.Config(); err == nil && cfg.Core.IsBare {
			return newHistory(&Repo{git: g, top: abs, gitDir: abs, commonDir: abs}), nil
		}
	}
	r, err := Open(root)
	if err != nil {
		return nil, err
	}
	return newHistory(r), nil
}

func newHistory(r *Repo) *History {
	h := &History{r: r}
	h.objs = newObjects(filepath.Join(r.commonDir, "objects"), r.git.Storer, h.refreshPacks)
	return h
}

// Repo returns the repository, for the Repo methods that read commits
// (ReadFile, FS, Resolve, Log). It is nil for a bare repository.
func (h *History) Repo() *Repo {
	if h.r.wt == nil {
		return nil
	}
	return h.r
}

// BranchFiles returns the files where git keeps the head of branch, in
// the repository's common git directory (the main repository's, for a
// linked work tree): its ref file, "" for a name that would leave
// refs/heads, and packed-refs. BranchHead reads them.
func (h *History) BranchFiles(branch string) (ref, packed string) {
	packed = filepath.Join(h.r.commonDir, "packed-refs")
	if filepath.IsLocal(filepath.FromSlash(branch)) && !strings.Contains(branch, "..") {
		ref = filepath.Join(h.r.commonDir, "refs", "heads", filepath.FromSlash(branch))
	}
	return ref, packed
}

// refreshPacks makes go-git see the pack files written since it last
// looked (a fetch or a gc wrote one; go-git indexes packs once), and
// reports whether it had to: it reads the packs' indexes again only when
// the set of pack files changed, as reading them costs as much as the
// repository holds. objects calls it when go-git does not find an object,
// so that reading the loose objects of a commit, which are found without
// it, costs nothing more.
func (h *History) refreshPacks() bool {
	packs, err := os.ReadDir(filepath.Join(h.r.commonDir, "objects", "pack"))
	var names []string
	for _, e := range packs {
		names = append(names, e.Name())
	}
	if err == nil && h.packsRead && slices.Equal(names, h.packs) {
		return false
	}
	h.packs, h.packsRead = names, err == nil // unknown: look again next time
	h.r.refresh()
	return true
}

// HeadBranch returns the short name of the branch HEAD points to ("main").
func (h *History) HeadBranch() (string, error) {
	ref, err := h.r.git.Reference(plumbing.HEAD, false)
	if err != nil {
		return "", fmt.Errorf("reading HEAD: %w", err)
	}
	if ref.Type() != plumbing.SymbolicReference || !ref.Target().IsBranch() {
		return "", errors.New("HEAD is detached: name a branch")
	}
	return ref.Target().Short(), nil
}

// BranchHead returns the full hash of the commit at the head of branch (a
// short name: "main", "release/2"). A branch that does not exist (or has no
// commits yet) is an error wrapping ErrNoCommits.
func (h *History) BranchHead(branch string) (string, error) {
	if hash, ok := h.looseRef(branch); ok {
		return hash, nil
	}
	ref, err := h.r.git.Reference(plumbing.NewBranchReferenceName(branch), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", fmt.Errorf("branch %q: %w", branch, ErrNoCommits)
	}
	if err != nil {
		return "", fmt.Errorf("reading branch %q: %w", branch, err)
	}
	return ref.Hash().String(), nil
}

// looseRef reads the head of branch from its file under refs/heads, as
// git writes it (the hash and a newline); ok is false when there is no
// such file or it holds anything else (a symbolic ref), which go-git then
// reads, with packed-refs.
func (h *History) looseRef(branch string) (hash string, ok bool) {
	ref, _ := h.BranchFiles(branch)
	if ref == "" {
		return "", false
	}
	data, err := readFile(ref)
	if err != nil {
		return "", false
	}
	hash = strings.TrimSuffix(string(data), "\n")
	return hash, isFullHash(hash)
}

// commit returns the commit rev names: a full hash is read with objs,
// anything else (and a hash of no commit, for its error) resolved by
// go-git.
func (h *History) commit(rev string) (*object.Commit, error) {
	if isFullHash(rev) {
		c, err := h.objs.commit(plumbing.NewHash(rev))
		if !errors.Is(err, plumbing.ErrObjectNotFound) {
			return c, err
		}
	}
	return h.r.commit(rev)
}

// parent returns the first parent of c, nil for a root commit.
func (h *History) parent(c *object.Commit) (*object.Commit, error) {
	if len(c.ParentHashes) == 0 {
		return nil, nil
	}
	p, err := h.objs.commit(c.ParentHashes[0])
	if err != nil {
		return nil, fmt.Errorf("reading first parent of %s: %w", c.Hash, err)
	}
	return p, nil
}

// FirstParentsSince returns the commits on the first-parent history of to
// that come after from, oldest first: what a branch at from gained when it
// moved to to. It is empty when from and to are the same commit, and an
// error wrapping ErrNotAncestor when from is not on that history.
func (h *History) FirstParentsSince(from, to string) ([]string, error) {
	fromHash := plumbing.NewHash(from)
	c, err := h.commit(to)
	if err != nil {
		return nil, err
	}
	var out []string
	for c.Hash != fromHash {
		out = append(out, c.Hash.String())
		if c, err = h.parent(c); err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("commit %.12s: %w of %.12s", from, ErrNotAncestor, to)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// File is a file of a commit, or a change a commit made or is to make to
// one.
type File struct {
	Path       string     // relative to the config repository root, slash-separated
	Kind       ChangeKind // Added for the files of Files
	Data       []byte     // the content; nil when Kind is Deleted
	Executable bool       // an executable file rather than a regular one
	Symlink    bool       // a symbolic link, whose destination is Data
}

// CommitInfo returns the commit rev names.
func (h *History) CommitInfo(rev string) (Commit, error) {
	c, err := h.commit(rev)
	if err != nil {
		return Commit{}, err
	}
	return newCommit(c), nil
}

// Files returns the files under dir (relative to the config repository
// root) in commit rev, sorted by path. Only regular and executable files
// count; files whose name starts with a dot are left out.
func (h *History) Files(rev, dir string) ([]File, error) {
	var out []File
	err := h.WalkFiles(rev, dir, func(f File) error {
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// WalkFiles calls fn with each file Files returns, one at a time and in
// the order of the commit's trees rather than by path, reading each
// file's data just before: a caller that lets go of each file holds one
// at a time, whatever the commit holds. It stops at the first error fn
// returns and returns it.
func (h *History) WalkFiles(rev, dir string, fn func(File) error) error {
	c, err := h.commit(rev)
	if err != nil {
		return err
	}
	t, err := h.dirTree(c, dir)
	if err != nil || t == nil {
		return err
	}
	// The tree is walked by hand: go-git's TreeWalker fails on names it
	// would not write to a file system (a newline, say), and one such name
	// committed with git must not stop the daemon; whoever reads the files
	// decides about their names.
	var walk func(t *object.Tree, prefix string) error
	walk = func(t *object.Tree, prefix string) error {
		for _, e := range t.Entries {
			name := path.Join(prefix, e.Name)
			switch {
			case hidden(e.Name):
			case e.Mode == filemode.Dir:
				sub, err := h.objs.tree(e.Hash)
				if err != nil {
					return fmt.Errorf("listing %s in %.12s: %w", path.Join(dir, name), c.Hash, err)
				}
				if err := walk(sub, name); err != nil {
					return err
				}
			case isFile(e.Mode):
				data, err := h.objs.blob(e.Hash)
				if err != nil {
					return fmt.Errorf("reading %s in %.12s: %w", path.Join(dir, name), c.Hash, err)
				}
				if err := fn(File{Path: path.Join(dir, name), Kind: Added, Data: data, Executable: e.Mode == filemode.Executable}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(t, "")
}

// CommitChanges returns the files under dir (relative to the config
// repository root) that commit rev added, modified or deleted compared with
// its first parent (with every file added for a root commit), sorted by
// path, with the new contents. A file that became or stopped being a
// regular file counts as added or deleted; files whose name starts with a
// dot are left out.
func (h *History) CommitChanges(rev, dir string) ([]File, error) {
	c, err := h.commit(rev)
	if err != nil {
		return nil, err
	}
	parent, err := h.parent(c)
	if err != nil {
		return nil, err
	}
	from, err := h.dirTree(parent, dir)
	if err != nil {
		return nil, err
	}
	to, err := h.dirTree(c, dir)
	if err != nil {
		return nil, err
	}
	var out []File
	if err := h.diffTrees(from, to, dir, &out); err != nil {
		return nil, fmt.Errorf("comparing %s in %.12s with its first parent: %w", dir, c.Hash, err)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// diffTrees appends to out the files that differ between trees from and
// to (either may be nil: no files), whose path is dir, with the data of
// those that to holds. It reads only the subtrees whose hashes differ, so
// that a commit costs what it changed, not what the repository holds.
// Files and directories whose names start with a dot are left out.
func (h *History) diffTrees(from, to *object.Tree, dir string, out *[]File) error {
	type pair struct{ from, to *object.TreeEntry }
	entries := map[string]*pair{}
	var names []string
	for i, t := range []*object.Tree{from, to} {
		if t == nil {
			continue
		}
		for j := range t.Entries {
			e := &t.Entries[j]
			p := entries[e.Name]
			if p == nil {
				p = &pair{}
				entries[e.Name] = p
				names = append(names, e.Name)
			}
			if i == 0 {
				p.from = e
			} else {
				p.to = e
			}
		}
	}
	for _, name := range names {
		p := entries[name]
		if hidden(name) || p.from != nil && p.to != nil && p.from.Hash == p.to.Hash && p.from.Mode == p.to.Mode {
			continue
		}
		full := path.Join(dir, name)
		// A directory on either side: compare its contents.
		var sub [2]*object.Tree
		for i, e := range []*object.TreeEntry{p.from, p.to} {
			if e != nil && e.Mode == filemode.Dir {
				t, err := h.objs.tree(e.Hash)
				if err != nil {
					return fmt.Errorf("reading tree %s: %w", full, err)
				}
				sub[i] = t
			}
		}
		if sub[0] != nil || sub[1] != nil {
			if err := h.diffTrees(sub[0], sub[1], full, out); err != nil {
				return err
			}
		}
		was := p.from != nil && isFile(p.from.Mode)
		is := p.to != nil && isFile(p.to.Mode)
		f := File{Path: full, Executable: is && p.to.Mode == filemode.Executable}
		switch {
		case was && is:
			f.Kind = Modified
		case is:
			f.Kind = Added
		case was:
			f.Kind = Deleted
		default:
			continue
		}
		if is {
			var err error
			if f.Data, err = h.objs.blob(p.to.Hash); err != nil {
				return fmt.Errorf("reading %s: %w", full, err)
			}
		}
		*out = append(*out, f)
	}
	return nil
}

// dirTree returns the tree of dir (relative to the config repository root)
// in commit c, or nil when c is nil or has no such directory.
func (h *History) dirTree(c *object.Commit, dir string) (*object.Tree, error) {
	if c == nil {
		return nil, nil
	}
	t, err := h.objs.tree(c.TreeHash)
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", c.Hash, err)
	}
	for _, name := range strings.Split(path.Join(h.r.prefix, dir), "/") {
		if name == "" || name == "." {
			continue
		}
		i := slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == name })
		if i < 0 || t.Entries[i].Mode != filemode.Dir {
			return nil, nil
		}
		if t, err = h.objs.tree(t.Entries[i].Hash); err != nil {
			return nil, fmt.Errorf("reading %s in %s: %w", path.Join(h.r.prefix, dir), c.Hash, err)
		}
	}
	return t, nil
}

func isFile(m filemode.FileMode) bool {
	return m == filemode.Regular || m == filemode.Executable || m == filemode.Deprecated
}

// ReadFile returns the file at p (relative to the config repository root) in
// commit rev; a missing file wraps fs.ErrNotExist.
func (h *History) ReadFile(rev, p string) ([]byte, error) {
	b, err := h.file(rev, p)
	if err != nil {
		return nil, err
	}
	return h.objs.blob(b.hash)
}

// FileHash returns the git object hash of the file at p (relative to the
// config repository root) in commit rev: two commits whose files have the
// same hash hold the same data. A missing file wraps fs.ErrNotExist.
func (h *History) FileHash(rev, p string) (string, error) {
	b, err := h.file(rev, p)
	if err != nil {
		return "", err
	}
	return b.hash.String(), nil
}

// file returns the blob of the file at p (relative to the config
// repository root) in commit rev; a missing file wraps fs.ErrNotExist.
func (h *History) file(rev, p string) (blob, error) {
	c, err := h.commit(rev)
	if err != nil {
		return blob{}, err
	}
	t, err := h.dirTree(c, "")
	if err != nil {
		return blob{}, err
	}
	b, err := treeBlob(t, p, h.objs.tree)
	if err != nil {
		return blob{}, err
	}
	if !b.exists() {
		return blob{}, fmt.Errorf("%s at %.12s: %w", p, rev, fs.ErrNotExist)
	}
	return b, nil
}

// hidden reports whether a path has a component starting with a dot.
func hidden(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") {
			return true
		}
	}
	return false
}
