package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the config repository as it is in revision rev, as a read-only
// fs.FS rooted at the config repository root: os.DirFS(root) of the past.
// Regular and executable files are files and directories are directories;
// symbolic links and submodules are left out. A revision whose tree does not
// hold the config repository gives an empty FS. It is safe for concurrent
// use.
func (r *Repo) FS(rev string) (fs.FS, error) {
	c, err := r.commit(rev)
	if err != nil {
		return nil, err
	}
	t, err := r.subtree(c)
	if err != nil {
		return nil, err
	}
	return &treeFS{tree: t, mtime: c.Committer.When}, nil
}

// treeFS is an fs.FS over a git tree; a nil tree is empty.
type treeFS struct {
	mu    sync.Mutex // go-git trees are not safe for concurrent use
	tree  *object.Tree
	mtime time.Time // the commit time, reported as every file's ModTime
}

// visible reports whether treeFS shows an entry of mode m.
func visible(m filemode.FileMode) bool {
	return m == filemode.Dir || m == filemode.Regular || m == filemode.Executable || m == filemode.Deprecated
}

// lookup returns the tree or the file at name.
func (t *treeFS) lookup(op, name string) (*object.Tree, *object.TreeEntry, error) {
	if !fs.ValidPath(name) {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	notExist := &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	if name == "." {
		if t.tree == nil {
			return &object.Tree{}, nil, nil
		}
		return t.tree, nil, nil
	}
	if t.tree == nil {
		return nil, nil, notExist
	}
	e, err := t.tree.FindEntry(name)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, nil, notExist
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if !visible(e.Mode) {
		return nil, nil, notExist
	}
	if e.Mode == filemode.Dir {
		sub, err := t.tree.Tree(name)
		if err != nil {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		return sub, e, nil
	}
	return nil, e, nil
}

// Open implements fs.FS.
func (t *treeFS) Open(name string) (fs.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	dir, e, err := t.lookup("open", name)
	if err != nil {
		return nil, err
	}
	base := name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		base = name[i+1:]
	}
	if dir != nil {
		var entries []fs.DirEntry
		for _, de := range dir.Entries {
			if visible(de.Mode) {
				entries = append(entries, &dirEntry{t: t, dir: dir, e: de})
			}
		}
		slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		return &openDir{info: fileInfo{name: base, mode: fs.ModeDir | 0o755, mtime: t.mtime}, entries: entries}, nil
	}
	data, err := t.contents(e, name)
	if err != nil {
		return nil, err
	}
	return &openFile{info: fileInfo{name: base, size: int64(len(data)), mode: fileMode(e.Mode), mtime: t.mtime}, r: bytes.NewReader(data)}, nil
}

// ReadFile implements fs.ReadFileFS.
func (t *treeFS) ReadFile(name string) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	dir, e, err := t.lookup("read", name)
	if err != nil {
		return nil, err
	}
	if dir != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	return t.contents(e, name)
}

func (t *treeFS) contents(e *object.TreeEntry, name string) ([]byte, error) {
	f, err := t.tree.TreeEntryFile(e)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("blob %s: %w", e.Hash, err)}
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

func fileMode(m filemode.FileMode) fs.FileMode {
	if m == filemode.Executable {
		return 0o755
	}
	return 0o644
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi fileInfo) ModTime() time.Time { return fi.mtime }
func (fi fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi fileInfo) Sys() any           { return nil }

type openFile struct {
	info fileInfo
	r    *bytes.Reader
}

func (f *openFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *openFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *openFile) Close() error               { return nil }

// Seek and ReadAt let callers treat the file like an *os.File.
func (f *openFile) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }
func (f *openFile) ReadAt(p []byte, off int64) (int, error)   { return f.r.ReadAt(p, off) }

type openDir struct {
	info    fileInfo
	entries []fs.DirEntry
	off     int
}

func (d *openDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *openDir) Close() error               { return nil }
func (d *openDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile.
func (d *openDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return rest, nil
}

type dirEntry struct {
	t   *treeFS
	dir *object.Tree
	e   object.TreeEntry
}

func (de *dirEntry) Name() string { return de.e.Name }
func (de *dirEntry) IsDir() bool  { return de.e.Mode == filemode.Dir }
func (de *dirEntry) Type() fs.FileMode {
	if de.IsDir() {
		return fs.ModeDir
	}
	return 0
}

func (de *dirEntry) Info() (fs.FileInfo, error) {
	if de.IsDir() {
		return fileInfo{name: de.e.Name, mode: fs.ModeDir | 0o755, mtime: de.t.mtime}, nil
	}
	de.t.mu.Lock()
	size, err := de.dir.Size(de.e.Name)
	de.t.mu.Unlock()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: de.e.Name, Err: err}
	}
	return fileInfo{name: de.e.Name, size: size, mode: fileMode(de.e.Mode), mtime: de.t.mtime}, nil
}
