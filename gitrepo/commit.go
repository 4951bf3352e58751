package gitrepo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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

// ErrBranchMoved: the branch is not where the caller found it when it read
// the files to commit (another commit landed since, or HEAD was switched
// to another branch); nothing was committed. CommitFiles returns it as a
// *BranchMovedError.
var ErrBranchMoved = errors.New("the branch moved")

// BranchMovedError says where HEAD is and where the caller expected it.
type BranchMovedError struct {
	Now, Expected Head
}

func (e *BranchMovedError) Error() string {
	return fmt.Sprintf("the branch moved: %s", e.Detail())
}

// Detail describes the move: "main at 0123456789ab now, not at
// 89abcdef0123".
func (e *BranchMovedError) Detail() string {
	if e.Now.Branch != e.Expected.Branch {
		return fmt.Sprintf("HEAD is on %s now, not on %s", e.Now.BranchName(), e.Expected.BranchName())
	}
	was := "without commits"
	if e.Expected.Commit != "" {
		was = fmt.Sprintf("at %.12s", e.Expected.Commit)
	}
	return fmt.Sprintf("%s now, not %s", e.Now, was)
}

// Is makes a *BranchMovedError match ErrBranchMoved.
func (e *BranchMovedError) Is(target error) bool { return target == ErrBranchMoved }

// CommitOptions describe a commit.
type CommitOptions struct {
	Message string
	// Author defaults to Identity. The committer is Identity when one is
	// configured, and the author otherwise. A zero When is the current time.
	Author *Signature
	// Parent is HEAD as Head returned it when the files to commit were
	// read: the branch to commit on and the commit to put them on. The
	// branch moves only if HEAD still names that branch and the branch is
	// still at that commit (or still has no commits); otherwise the commit
	// fails with an error wrapping ErrBranchMoved. Commit fills in the
	// current HEAD when Parent is the zero Head.
	Parent Head
	// AllowDetached allows a commit on a detached HEAD (which moves HEAD
	// and no branch).
	AllowDetached bool
}

// CommitResult is what CommitFiles did.
type CommitResult struct {
	Hash    string   // the new commit
	Changes []Change // the files it changed, sorted by path
}

// Commit makes one commit of the given paths as they are in the working
// tree now: a path whose file exists is added or updated, a path whose
// file is gone is deleted (CommitFiles with the files read from the work
// tree; a symbolic link is committed as one). Paths are relative to the
// config repository root. It returns the new commit's hash.
func (r *Repo) Commit(paths []string, opts CommitOptions) (string, error) {
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		if !fs.ValidPath(p) || p == "." {
			return "", fmt.Errorf("commit path %q: not a file path inside the config repository", p)
		}
		name := filepath.Join(r.top, filepath.FromSlash(r.GitPath(p)))
		fi, err := os.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || err == nil && fi.IsDir():
			files = append(files, File{Path: p, Kind: Deleted})
			continue
		case err != nil:
			return "", err
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(name)
			if err != nil {
				return "", err
			}
			files = append(files, File{Path: p, Kind: Modified, Data: []byte(target), Symlink: true})
			continue
		case !fi.Mode().IsRegular():
			return "", fmt.Errorf("%s: not a regular file", name)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return "", err
		}
		files = append(files, File{Path: p, Kind: Modified, Data: data, Executable: fi.Mode()&0o111 != 0})
	}
	if opts.Parent == (Head{}) {
		var err error
		if opts.Parent, err = r.Head(); err != nil {
			return "", err
		}
	}
	res, err := r.CommitFiles(files, opts)
	if err != nil {
		return "", err
	}
	return res.Hash, nil
}

// ChangesTo returns the changes that turn the config repository at base
// into files, among the paths within selects (paths relative to the config
// repository root): a file of files that base lacks is added, one whose
// content or executable bit differs is modified, and a file of base that
// files lack is deleted. Files outside within are an error. The changes
// are sorted by path; added and modified ones carry their data.
func (r *Repo) ChangesTo(base Head, files []File, within func(string) bool) ([]File, error) {
	var t *object.Tree
	if base.Commit != "" {
		c, err := r.commitObject(plumbing.NewHash(base.Commit))
		if err != nil {
			return nil, err
		}
		if t, err = r.subtree(c); err != nil {
			return nil, err
		}
	}
	old := map[string]blob{}
	if t != nil {
		walker := object.NewTreeWalker(t, true, nil)
		defer walker.Close()
		for {
			name, e, err := walker.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("listing the files of %.12s: %w", base.Commit, err)
			}
			if e.Mode != filemode.Dir && e.Mode != filemode.Submodule && within(name) {
				old[name] = blob{hash: e.Hash, mode: e.Mode}
			}
		}
	}
	var out []File
	for _, f := range files {
		if !within(f.Path) {
			return nil, fmt.Errorf("%s: not a path this commit covers", f.Path)
		}
		prev, had := old[f.Path]
		delete(old, f.Path)
		if f.Kind == Deleted {
			if had {
				out = append(out, File{Path: f.Path, Kind: Deleted})
			}
			continue
		}
		if had && prev == f.blob() {
			continue
		}
		f.Kind = Added
		if had {
			f.Kind = Modified
		}
		out = append(out, f)
	}
	for p := range old {
		out = append(out, File{Path: p, Kind: Deleted})
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// blob returns the blob git would store for f.
func (f File) blob() blob {
	mode := filemode.Regular
	switch {
	case f.Symlink:
		mode = filemode.Symlink
	case f.Executable:
		mode = filemode.Executable
	}
	return blob{hash: plumbing.ComputeHash(plumbing.BlobObject, f.Data), mode: mode}
}

// testHookCommit, when set by a test, runs at each step of CommitFiles
// once its lock files exist: "locked" once it holds index.lock and the
// branch's .lock, "index written" once the new index is in place, "reflog
// written" once the reflogs record the commit (the branch not yet moved).
var testHookCommit func(step string)

// CommitFiles makes one commit of exactly the given files on opts.Parent:
// a file whose Kind is Deleted is removed, any other is added or replaced
// with its Data, as a regular file, an executable one, or a symbolic link;
// paths are relative to the config repository root. Everything else in the
// commit is as in the parent; whatever else the index holds is neither
// committed nor unstaged, and the work tree is not touched (git commit
// --only). The index entries of the committed files are set to the
// committed content; where the work tree holds something else (it was
// edited after it was read), the work tree keeps it, and git status shows
// it as modified.
//
// One commit is made at a time per repository: CommitFiles holds the commit
// lock (Lock) throughout, taking it (waiting up to DefaultLockWait) unless
// this Repo holds it already. It updates the index and the branch as git
// does, under git's lock files (index.lock, then the branch's ref .lock),
// so that a concurrent git command never interleaves with it, and moves
// the branch only from opts.Parent (else ErrBranchMoved). It refuses to
// commit while a git operation is under way, on unresolved conflicts, and
// on a detached HEAD unless opts.AllowDetached (a *StateError). It returns
// ErrNothingToCommit when the files do not change the parent's tree.
//
// A commit is made exactly when CommitFiles returns no error.
func (r *Repo) CommitFiles(files []File, opts CommitOptions) (*CommitResult, error) {
	msg, author, committer, err := r.signatures(opts)
	if err != nil {
		return nil, err
	}
	byPath := map[string]File{}
	for _, f := range files {
		if !fs.ValidPath(f.Path) || f.Path == "." {
			return nil, fmt.Errorf("commit path %q: not a file path inside the config repository", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("commit path %q: given twice", f.Path)
		}
		byPath[f.Path] = f
	}

	lk := r.lock
	if lk == nil {
		if lk, err = r.Lock(context.Background(), DefaultLockWait, nil); err != nil {
			return nil, err
		}
		defer lk.Unlock()
	}
	indexLock, err := lk.lockGitFile(filepath.Join(r.gitDir, "index"))
	if err != nil {
		return nil, err
	}
	defer indexLock.rollback()
	idx, indexTime, err := r.readIndex()
	if err != nil {
		return nil, err
	}
	head, err := r.Head()
	if err != nil {
		return nil, err
	}
	if err := r.checkState(idx, head, opts.AllowDetached); err != nil {
		return nil, err
	}
	if head.Branch != opts.Parent.Branch {
		return nil, &BranchMovedError{Now: head, Expected: opts.Parent}
	}
	refName := cmp.Or(head.Branch, "HEAD")
	refLock, err := lk.lockGitFile(r.refFile(refName))
	if err != nil {
		return nil, err
	}
	defer refLock.rollback()
	if testHookCommit != nil {
		testHookCommit("locked")
	}
	cur, err := r.readRef(refName)
	if err != nil {
		return nil, err
	}
	if cur.target != "" {
		return nil, fmt.Errorf("%s: a symbolic ref to %s, want a branch", refName, cur.target)
	}
	if !cur.exists() && opts.Parent.Commit != "" || cur.exists() && cur.hash.String() != opts.Parent.Commit {
		now := Head{Branch: head.Branch}
		if cur.exists() {
			now.Commit = cur.hash.String()
		}
		return nil, &BranchMovedError{Now: now, Expected: opts.Parent}
	}

	// The parent is read with objects other processes may have packed
	// since this Repo was opened.
	r.refresh()
	var parent *object.Commit
	var base *object.Tree
	if cur.exists() {
		if parent, err = r.commitObject(cur.hash); err != nil {
			return nil, err
		}
		if base, err = parent.Tree(); err != nil {
			return nil, fmt.Errorf("reading tree of %s: %w", parent.Hash, err)
		}
	}

	// The changes to the parent's tree (nil: deleted), and the new blobs.
	res := &CommitResult{}
	entries := map[string]*object.TreeEntry{}
	committed := map[string]blob{} // by git path; the zero blob: deleted
	for p, f := range byPath {
		gp := r.GitPath(p)
		old, err := treeBlob(base, gp, r.git.TreeObject)
		if err != nil {
			return nil, err
		}
		if f.Kind == Deleted {
			if old.exists() {
				entries[gp], committed[gp] = nil, blob{}
				res.Changes = append(res.Changes, Change{Path: p, Kind: Deleted})
			}
			continue
		}
		b := f.blob()
		if b == old {
			continue
		}
		if err := r.storeBlob(f.Data); err != nil {
			return nil, fmt.Errorf("storing %s: %w", p, err)
		}
		entries[gp] = &object.TreeEntry{Name: path.Base(gp), Mode: b.mode, Hash: b.hash}
		committed[gp] = b
		kind := Added
		if old.exists() {
			kind = Modified
		}
		res.Changes = append(res.Changes, Change{Path: p, Kind: kind})
	}
	if len(res.Changes) == 0 {
		return nil, ErrNothingToCommit
	}
	slices.SortFunc(res.Changes, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	treeHash, _, err := r.writeTree(base, entries)
	if err != nil {
		return nil, err
	}
	var parents []plumbing.Hash
	if parent != nil {
		if treeHash == parent.TreeHash {
			return nil, ErrNothingToCommit
		}
		parents = []plumbing.Hash{parent.Hash}
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
		return nil, fmt.Errorf("encoding commit: %w", err)
	}
	hash, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return nil, fmt.Errorf("writing commit: %w", err)
	}

	// The index agrees with the commit for the committed files: their
	// entries are replaced. An entry records the work tree file's size and
	// time only if the file holds the committed content; otherwise git
	// compares contents and shows the file as modified.
	kept := idx.Entries[:0]
	for _, e := range idx.Entries {
		if _, ok := committed[e.Name]; !ok {
			kept = append(kept, e)
		}
	}
	idx.Entries = kept
	for gp, b := range committed {
		if !b.exists() {
			continue
		}
		e := &index.Entry{Name: gp, Hash: b.hash, Mode: b.mode}
		if cur, fi, err := r.worktreeFile(gp); err == nil && cur == b {
			e.ModifiedAt, e.Size = fi.ModTime(), uint32(fi.Size())
		}
		idx.Entries = append(idx.Entries, e)
	}
	// Racily clean entries: a file changed in the same second as the index
	// was last written (git compares times in whole seconds unless built
	// otherwise) may have a new content with the recorded size and time.
	// Git trusts no entry at least as new as the index file; this index
	// file is newer, so such entries are marked (a size of 0, as git
	// does) to have their content compared.
	for _, e := range idx.Entries {
		if !e.ModifiedAt.IsZero() && e.ModifiedAt.Unix() >= indexTime.Unix() {
			e.Size = 0
		}
	}
	var buf bytes.Buffer
	if err := index.NewEncoder(&buf).Encode(idx); err != nil {
		return nil, fmt.Errorf("writing the git index: %w", err)
	}

	// The index is written before the branch moves (git does the
	// reverse): if cfg dies in between, the index holds the committed
	// files staged on the old commit, which the next commit commits,
	// rather than the old files staged to undo the new commit.
	if err := indexLock.commit(buf.Bytes()); err != nil {
		return nil, err
	}
	if testHookCommit != nil {
		testHookCommit("index written")
	}
	// Move the branch as git does: the reflog first, then the ref file
	// replaced by its lock file.
	subject, _, _ := strings.Cut(msg, "\n")
	action := "commit: "
	if parent == nil {
		action = "commit (initial): "
	}
	if err := r.appendReflogs(head, cur.hash, hash, c.Committer, action+subject); err != nil {
		return nil, fmt.Errorf("%w (nothing committed; the index holds the files)", err)
	}
	if testHookCommit != nil {
		testHookCommit("reflog written")
	}
	if err := refLock.commit([]byte(hash.String() + "\n")); err != nil {
		return nil, fmt.Errorf("%w (nothing committed; the index holds the files)", err)
	}
	res.Hash = hash.String()
	return res, nil
}

// signatures returns the message, author and committer of a commit.
func (r *Repo) signatures(opts CommitOptions) (msg string, author, committer Signature, err error) {
	msg = strings.TrimSpace(opts.Message)
	if msg == "" {
		return "", Signature{}, Signature{}, errors.New("empty commit message")
	}
	msg += "\n"
	committer, idErr := r.Identity()
	switch {
	case opts.Author != nil:
		author = *opts.Author
	case idErr != nil:
		return "", Signature{}, Signature{}, idErr
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
	return msg, author, committer, nil
}

// storeBlob stores data as a blob.
func (r *Repo) storeBlob(data []byte) error {
	obj := r.git.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_, err = r.git.Storer.SetEncodedObject(obj)
	return err
}

// appendReflogs records a branch update in the reflogs of the branch and
// of HEAD, as git does when core.logAllRefUpdates is on (the default in a
// repository with a work tree; with it off, only existing reflogs are
// written): "OLD NEW NAME <EMAIL> SECONDS ZONE\tMESSAGE".
func (r *Repo) appendReflogs(head Head, old, new plumbing.Hash, who object.Signature, msg string) error {
	create := true
	if cfg, err := r.git.Config(); err == nil {
		create = !cfg.Core.IsBare && !strings.EqualFold(cfg.Raw.Section("core").Option("logAllRefUpdates"), "false")
	}
	line := fmt.Sprintf("%s %s %s <%s> %d %s\t%s\n", old, new, who.Name, who.Email, who.When.Unix(), who.When.Format("-0700"), strings.ReplaceAll(msg, "\n", " "))
	logs := []string{filepath.Join(r.gitDir, "logs", "HEAD")}
	if head.Branch != "" {
		logs = append(logs, filepath.Join(r.commonDir, "logs", filepath.FromSlash(head.Branch)))
	}
	for _, p := range logs {
		flags := os.O_WRONLY | os.O_APPEND
		if create {
			flags |= os.O_CREATE
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("writing the reflog: %w", err)
			}
		}
		f, err := os.OpenFile(p, flags, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the reflog: %w", err)
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing the reflog %s: %w", p, err)
		}
	}
	return nil
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
