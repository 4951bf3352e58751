package gitrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Signature is who made a commit, and when.
type Signature struct {
	Name  string    `json:"name"`
	Email string    `json:"email"`
	When  time.Time `json:"date"`
}

// String formats s as "Name <email>".
func (s Signature) String() string { return s.Name + " <" + s.Email + ">" }

// object returns s as go-git stores it, without the characters that would
// break the commit header.
func (s Signature) object() object.Signature {
	clean := strings.NewReplacer("<", "", ">", "", "\n", "")
	return object.Signature{Name: clean.Replace(s.Name), Email: clean.Replace(s.Email), When: s.When}
}

var signatureRE = regexp.MustCompile(`^\s*([^<>\n]*?)\s*<([^<>\s]+)>\s*$`)

// ParseSignature parses "Name <email>".
func ParseSignature(s string) (Signature, error) {
	m := signatureRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" {
		return Signature{}, fmt.Errorf("author %q: want \"Name <email>\"", s)
	}
	return Signature{Name: m[1], Email: m[2]}, nil
}

// Identity returns the configured commit author. Name and email are each
// taken from the first of CFG_AUTHOR_NAME and CFG_AUTHOR_EMAIL,
// GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, and the git configuration
// (author.name and author.email, then user.name and user.email, from the
// repository, global and system configuration). When either is missing it
// returns an error wrapping ErrNoAuthor.
func (r *Repo) Identity() (Signature, error) {
	cfg, err := r.git.ConfigScoped(config.SystemScope)
	if err != nil {
		return Signature{}, fmt.Errorf("reading git configuration: %w", err)
	}
	sig := Signature{
		Name:  firstNonEmpty(os.Getenv("CFG_AUTHOR_NAME"), os.Getenv("GIT_AUTHOR_NAME"), cfg.Author.Name, cfg.User.Name),
		Email: firstNonEmpty(os.Getenv("CFG_AUTHOR_EMAIL"), os.Getenv("GIT_AUTHOR_EMAIL"), cfg.Author.Email, cfg.User.Email),
	}
	if sig.Name == "" || sig.Email == "" {
		return Signature{}, ErrNoAuthor
	}
	return sig, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// mergeHead is the reference git keeps while a merge is in progress.
const mergeHead plumbing.ReferenceName = "MERGE_HEAD"

// CommitOptions describe a commit.
type CommitOptions struct {
	Message string
	// Author defaults to Identity. The committer is Identity when one is
	// configured, and the author otherwise. A zero When is the current time.
	Author *Signature
}

// Commit makes one commit on the current branch (or the detached HEAD)
// holding exactly the given paths as they are in the working tree: a path
// whose file exists is added or updated, a path whose file is gone is
// deleted. Paths are relative to the config repository root. Everything
// else in the new commit is as in HEAD: whatever else the index holds is
// neither committed nor unstaged, and other files in the work tree are not
// touched (git commit --only). The index entries of the given paths are
// updated to the committed content. It returns the new commit's hash;
// ErrNothingToCommit when the paths do not change the HEAD tree. It works in
// a repository without commits, and refuses to commit during a merge.
func (r *Repo) Commit(paths []string, opts CommitOptions) (string, error) {
	msg := strings.TrimSpace(opts.Message)
	if msg == "" {
		return "", errors.New("empty commit message")
	}
	msg += "\n"
	committer, idErr := r.Identity()
	var author Signature
	switch {
	case opts.Author != nil:
		author = *opts.Author
	case idErr != nil:
		return "", idErr
	default:
		author = committer
	}
	if idErr != nil {
		committer = author
	}
	now := time.Now()
	if author.When.IsZero() {
		author.When = now
	}
	committer.When = now

	if _, err := r.git.Storer.Reference(mergeHead); err == nil {
		return "", errors.New("a merge is in progress: conclude it with git first")
	}
	head, err := r.head()
	if err != nil {
		return "", err
	}
	var base *object.Tree
	if head != nil {
		if base, err = head.Tree(); err != nil {
			return "", fmt.Errorf("reading tree of %s: %w", head.Hash, err)
		}
	}
	idx, err := r.git.Storer.Index()
	if err != nil {
		return "", fmt.Errorf("reading git index: %w", err)
	}

	// Store the blobs and note the new tree entries (nil: deleted) and
	// index entries.
	changes := map[string]*object.TreeEntry{}
	staged := map[string]*index.Entry{}
	for _, p := range paths {
		if !fs.ValidPath(p) || p == "." {
			return "", fmt.Errorf("commit path %q: not a file path inside the config repository", p)
		}
		gp := r.GitPath(p)
		e, ie, err := r.storeFile(gp)
		if err != nil {
			return "", err
		}
		changes[gp] = e
		staged[gp] = ie
	}
	treeHash, _, err := r.writeTree(base, changes)
	if err != nil {
		return "", err
	}
	var parents []plumbing.Hash
	if head != nil {
		if treeHash == head.TreeHash {
			return "", ErrNothingToCommit
		}
		parents = []plumbing.Hash{head.Hash}
	}
	c := &object.Commit{
		Author:       author.object(),
		Committer:    committer.object(),
		Message:      msg,
		TreeHash:     treeHash,
		ParentHashes: parents,
	}
	obj := r.git.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", fmt.Errorf("encoding commit: %w", err)
	}
	hash, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return "", fmt.Errorf("writing commit: %w", err)
	}
	if err := r.advanceHead(hash, head); err != nil {
		return "", err
	}

	// The index now agrees with the commit for the committed paths: their
	// entries (conflict stages included) are replaced.
	kept := idx.Entries[:0]
	for _, e := range idx.Entries {
		if _, ok := staged[e.Name]; !ok {
			kept = append(kept, e)
		}
	}
	idx.Entries = kept
	for gp, ie := range staged {
		if ie != nil {
			ie.Name = gp
			idx.Entries = append(idx.Entries, ie)
		}
	}
	if err := r.git.Storer.SetIndex(idx); err != nil {
		return hash.String(), fmt.Errorf("commit %s made, but writing the git index: %w", hash, err)
	}
	return hash.String(), nil
}

// storeFile stores the file at git path gp of the work tree as a blob and
// returns its tree entry and the index entry to record; both are nil when
// there is no file there.
func (r *Repo) storeFile(gp string) (*object.TreeEntry, *index.Entry, error) {
	name := filepath.Join(r.top, filepath.FromSlash(gp))
	fi, err := os.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, nil // the file was replaced by a directory
	}
	mode, err := filemode.NewFromOSFileMode(fi.Mode())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var data []byte
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(name)
		if err != nil {
			return nil, nil, err
		}
		data = []byte(target)
	} else if data, err = os.ReadFile(name); err != nil {
		return nil, nil, err
	}
	obj := r.git.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return nil, nil, err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	h, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("storing %s: %w", gp, err)
	}
	// Size and time let git and go-git skip rehashing an unchanged file; a
	// size taken from what was read keeps a file changed meanwhile dirty.
	ie := &index.Entry{Hash: h, Mode: mode, ModifiedAt: fi.ModTime(), Size: uint32(len(data))}
	return &object.TreeEntry{Name: path.Base(gp), Mode: mode, Hash: h}, ie, nil
}

// writeTree stores the tree that is base (nil: empty) with changes applied:
// changes maps paths relative to base to new entries, nil for a deletion.
// It returns the tree's hash and its number of entries; directories left
// empty are dropped.
func (r *Repo) writeTree(base *object.Tree, changes map[string]*object.TreeEntry) (plumbing.Hash, int, error) {
	entries := map[string]object.TreeEntry{}
	if base != nil {
		for _, e := range base.Entries {
			entries[e.Name] = e
		}
	}
	files := map[string]*object.TreeEntry{}
	dirs := map[string]map[string]*object.TreeEntry{}
	for p, e := range changes {
		first, rest, nested := strings.Cut(p, "/")
		if !nested {
			files[first] = e
			continue
		}
		if dirs[first] == nil {
			dirs[first] = map[string]*object.TreeEntry{}
		}
		dirs[first][rest] = e
	}
	// Deletions first, then directories, then new files: a file replaced by
	// a directory and a directory replaced by a file both come out right.
	for name, e := range files {
		if e == nil {
			delete(entries, name)
		}
	}
	for name, sub := range dirs {
		var subBase *object.Tree
		if e, ok := entries[name]; ok && e.Mode == filemode.Dir {
			t, err := r.git.TreeObject(e.Hash)
			if err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("reading tree %s: %w", e.Hash, err)
			}
			subBase = t
		}
		h, n, err := r.writeTree(subBase, sub)
		if err != nil {
			return plumbing.ZeroHash, 0, err
		}
		if n == 0 {
			delete(entries, name)
		} else {
			entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
		}
	}
	for name, e := range files {
		if e != nil {
			entries[name] = object.TreeEntry{Name: name, Mode: e.Mode, Hash: e.Hash}
		}
	}
	t := &object.Tree{}
	for _, e := range entries {
		t.Entries = append(t.Entries, e)
	}
	// Git orders tree entries by name, a directory's name as if it ended in "/".
	sortName := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(t.Entries, func(a, b object.TreeEntry) int { return strings.Compare(sortName(a), sortName(b)) })
	obj := r.git.Storer.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("encoding tree: %w", err)
	}
	if r.git.Storer.HasEncodedObject(obj.Hash()) == nil {
		return obj.Hash(), len(t.Entries), nil
	}
	h, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("writing tree: %w", err)
	}
	return h, len(t.Entries), nil
}

// advanceHead points the current branch (or a detached HEAD) at commit,
// provided it still points at parent (nil: the branch has no commits).
func (r *Repo) advanceHead(commit plumbing.Hash, parent *object.Commit) error {
	head, err := r.git.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return fmt.Errorf("reading HEAD: %w", err)
	}
	name := plumbing.HEAD
	if head.Type() == plumbing.SymbolicReference {
		name = head.Target()
	}
	var old *plumbing.Reference
	if parent != nil {
		old = plumbing.NewHashReference(name, parent.Hash)
	}
	if err := r.git.Storer.CheckAndSetReference(plumbing.NewHashReference(name, commit), old); err != nil {
		return fmt.Errorf("updating %s to %s: %w", name, commit, err)
	}
	return nil
}
