package repo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Repo is a config repository opened for reading and writing. Every file
// access of cfg's compile, validate, diff, commit and dependency commands
// goes through it, and it follows no symbolic link:
//
//   - reads (FS) see only source/, materialized_configs/ and SettingsFile;
//     under source/, names starting with a dot are refused as ignored;
//   - writes and removals reach only materialized_configs/ and .cfg/;
//   - a symbolic link met on the way to a file, or as the file itself, is a
//     *LinkError naming the link, as is source/ or materialized_configs/
//     being a link; a file that is neither regular nor a directory (a pipe,
//     a device) is refused too.
//
// Each directory is opened once as an os.Root, after checking with Lstat
// that it is a directory and not a link and with os.SameFile that the
// directory opened is the one checked; files are then opened relative to
// it, checked the same way. A link swapped in while cfg runs is therefore
// refused too, and in any case nothing outside the repository root is
// reached: every directory is opened through the os.Root of the root.
//
// A Repo holds at most MaxOpenDirs directories open at once. It is safe for
// concurrent use.
type Repo struct {
	dir  string // absolute path of the root
	dirs *dirCache
}

// MaxOpenDirs bounds the directories a Repo holds open (file descriptors),
// its root included; the least recently used are closed first. Those that
// reads are using at the moment may exceed it, until the reads are done.
const MaxOpenDirs = 256

// A LinkError reports a symbolic link where cfg reads, writes or removes a
// file: cfg follows no link in a config repository.
type LinkError struct {
	Path   string // the link, relative to the repository root
	Target string // where it points, as the link says
}

func (e *LinkError) Error() string { return e.Path + ": " + e.Problem() }

// Problem describes the link without its path, for a diagnostic positioned
// at it.
func (e *LinkError) Problem() string {
	return fmt.Sprintf("a symbolic link (to %q); cfg follows no links in a config repository (replace it with a regular file or directory)", e.Target)
}

// Errors of the files a Repo refuses.
var (
	// ErrIgnored is returned for a path under source/ with a name starting
	// with a dot: such files are ignored, so nothing may read them.
	ErrIgnored = errors.New("names starting with a dot are ignored")
	// ErrNotRegular is returned for a file that is neither a regular file
	// nor a directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrOutside is returned for a path outside the directories a Repo
	// serves.
	ErrOutside = errors.New("outside the directories cfg reads")
	errChanged = errors.New("changed while it was opened")
)

// testHookChecked, when set, is called with a repository path after it was
// checked not to be a link and before it is opened, so that tests can
// replace it in between.
var testHookChecked func(p string)

// Open opens the config repository at dir. source/ must be a directory,
// not a link.
func Open(dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("opening the config repository: %w", err)
	}
	r := &Repo{dir: abs, dirs: newDirCache(root, MaxOpenDirs-1)}
	fi, err := r.lstat(SourceDir)
	if err != nil {
		r.Close()
		return nil, err
	}
	if !fi.IsDir() {
		r.Close()
		return nil, fmt.Errorf("%s: not a directory", SourceDir)
	}
	return r, nil
}

// Close closes the directories the Repo holds open.
func (r *Repo) Close() error { return r.dirs.close() }

// splitPath splits a repository path into its directory ("." for the
// root) and its last element.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// lstat returns the FileInfo of the repository path p, which is not
// followed if it is a link: a link is a *LinkError, and so is a link on the
// way to p.
func (r *Repo) lstat(p string) (fs.FileInfo, error) {
	dir, base := splitPath(p)
	d, release, err := r.dirs.acquire(dir)
	if err != nil {
		return nil, err
	}
	defer release()
	return lstatIn(d, dir, base)
}

func lstatIn(d *os.Root, dir, base string) (fs.FileInfo, error) {
	fi, err := d.Lstat(base)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: join(dir, base), Err: unwrapPathError(err)}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := d.Readlink(base)
		return nil, &LinkError{Path: join(dir, base), Target: target}
	}
	return fi, nil
}

// ReadFile reads the regular file at the repository path p, anywhere in
// the repository, following no link. It is for a file a person names, such
// as the argument of cfg decode; cfg's own reads go through FS.
func (r *Repo) ReadFile(p string) ([]byte, error) {
	if !fs.ValidPath(p) {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fs.ErrInvalid}
	}
	return r.readFile(p)
}

// readFile reads the regular file at the repository path p.
func (r *Repo) readFile(p string) ([]byte, error) {
	f, fi, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("is a directory")}
	}
	data := make([]byte, 0, fi.Size()+1)
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: p, Err: unwrapPathError(err)}
		}
		if len(data) == cap(data) {
			data = slices.Grow(data, 4096)
		}
	}
}

// open opens the regular file or directory at p without following a link.
// A file replaced between the check and the open (an editor saving by
// rename) is checked and opened again, a few times.
func (r *Repo) open(p string) (f *os.File, fi fs.FileInfo, err error) {
	for range maxReplaced {
		f, fi, err = r.openOnce(p)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Err != errChanged {
			break
		}
	}
	return f, fi, err
}

// maxReplaced is how many times open tries a file that is replaced while
// it opens it.
const maxReplaced = 5

func (r *Repo) openOnce(p string) (*os.File, fs.FileInfo, error) {
	dir, base := splitPath(p)
	d, release, err := r.dirs.acquire(dir)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	fi, err := lstatIn(d, dir, base)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		sub, subRelease, err := r.dirs.acquire(p)
		if err != nil {
			return nil, nil, err
		}
		defer subRelease()
		f, err := sub.Open(".")
		if err != nil {
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: unwrapPathError(err)}
		}
		return f, fi, nil
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: ErrNotRegular}
	}
	if testHookChecked != nil {
		testHookChecked(p)
	}
	f, err := d.Open(base)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: unwrapPathError(err)}
	}
	// The file opened must be the one checked: a link swapped in between
	// would have been followed by Open.
	if got, err := f.Stat(); err != nil || !os.SameFile(fi, got) {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: errChanged}
	}
	return f, fi, nil
}

func join(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// unwrapPathError drops the os.PathError that os.Root wraps around errors,
// whose path is relative to a directory the caller does not know; callers
// wrap the cause with the repository path instead.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// FS returns the repository as a read-only fs.FS rooted at the repository
// root, serving source/, materialized_configs/ and SettingsFile (other
// paths are ErrOutside) without following links (see Repo). It implements
// fs.ReadFileFS, fs.StatFS and fs.ReadDirFS. Directory listings report
// links as entries of type fs.ModeSymlink.
func (r *Repo) FS() fs.FS { return repoFS{r} }

type repoFS struct{ r *Repo }

// CheckRead applies the read policy of Repo.FS to the repository path
// name, for operation op: only source/ (without names starting with a
// dot, ErrIgnored), materialized_configs/ and SettingsFile are served;
// other paths are ErrOutside. A copy of a repository held in memory (the
// compiler's snapshot) serves the same paths.
func CheckRead(op, name string) error {
	if !fs.ValidPath(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	top, rest, _ := strings.Cut(name, "/")
	switch top {
	case MaterializedDir, SettingsFile:
		return nil
	case SourceDir:
		if rest == "" {
			return nil
		}
		for el := range strings.SplitSeq(rest, "/") {
			if strings.HasPrefix(el, ".") {
				return &fs.PathError{Op: op, Path: name, Err: ErrIgnored}
			}
		}
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: ErrOutside}
}

func (f repoFS) Open(name string) (fs.File, error) {
	if err := CheckRead("open", name); err != nil {
		return nil, err
	}
	file, _, err := f.r.open(name)
	if err != nil {
		return nil, err
	}
	return file, nil
}

func (f repoFS) ReadFile(name string) ([]byte, error) {
	if err := CheckRead("read", name); err != nil {
		return nil, err
	}
	return f.r.readFile(name)
}

func (f repoFS) Stat(name string) (fs.FileInfo, error) {
	if err := CheckRead("stat", name); err != nil {
		return nil, err
	}
	fi, err := f.r.lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: ErrNotRegular}
	}
	return fi, nil
}

func (f repoFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := CheckRead("readdir", name); err != nil {
		return nil, err
	}
	return f.r.readDir(name)
}

func (r *Repo) readDir(p string) ([]fs.DirEntry, error) {
	// The directory itself must not be a link; acquire checks it.
	d, release, err := r.dirs.acquire(p)
	if err != nil {
		return nil, err
	}
	defer release()
	dir, err := d.Open(".")
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: unwrapPathError(err)}
	}
	defer dir.Close()
	entries, err := listDir(dir, filepath.Join(r.dir, filepath.FromSlash(p)))
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: unwrapPathError(err)}
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for i, e := range entries {
		entries[i] = dirEntry{e, r, p}
	}
	return entries, nil
}

// dirEntry is a directory entry whose Info follows no link: that of a link
// describes the link.
type dirEntry struct {
	fs.DirEntry
	r   *Repo
	dir string
}

func (e dirEntry) Info() (fs.FileInfo, error) {
	d, release, err := e.r.dirs.acquire(e.dir)
	if err != nil {
		return nil, err
	}
	defer release()
	fi, err := d.Lstat(e.Name())
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: join(e.dir, e.Name()), Err: unwrapPathError(err)}
	}
	return fi, nil
}

// writable reports whether cfg may write or remove the repository path p:
// under materialized_configs/ or .cfg/.
func writable(op, p string) error {
	top, rest, _ := strings.Cut(p, "/")
	if !fs.ValidPath(p) || rest == "" || (top != MaterializedDir && top != CacheDir) {
		return &fs.PathError{Op: op, Path: p, Err: errors.New("cfg writes only under " + MaterializedDir + "/ and " + CacheDir + "/")}
	}
	return nil
}

// CheckWritable checks, before anything is written or removed, that no
// directory on the way to any of the repository paths, and no file at
// them, is a symbolic link (the error is a *LinkError naming it) or
// something other than a directory or a regular file. Paths that do not
// exist yet are fine.
func (r *Repo) CheckWritable(paths ...string) error {
	for _, p := range paths {
		if err := writable("write", p); err != nil {
			return err
		}
		dir, base := splitPath(p)
		d, release, err := r.dirs.acquire(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		fi, err := lstatIn(d, dir, base)
		release()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return &fs.PathError{Op: "write", Path: p, Err: ErrNotRegular}
		}
	}
	return nil
}

// WriteIfChanged writes data to the repository path p (under
// materialized_configs/ or .cfg/) unless the file already holds exactly
// data, and reports whether it wrote. A file that exists is replaced
// atomically (see Write); a new one is created in place, exclusively, and
// removed again if writing it fails. Missing directories are created. A
// link at p or on the way to it is a *LinkError, and nothing is written.
func (r *Repo) WriteIfChanged(p string, data []byte) (bool, error) {
	if err := writable("write", p); err != nil {
		return false, err
	}
	dir, base := splitPath(p)
	d, release, err := r.mkdirAll(dir)
	if err != nil {
		return false, err
	}
	defer release()
	fi, err := lstatIn(d, dir, base)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return false, &fs.PathError{Op: "write", Path: p, Err: ErrNotRegular}
	case err == nil:
		if old, err := r.readFile(p); err == nil && bytes.Equal(old, data) {
			return false, nil
		}
		return true, writeAtomic(d, p, base, data)
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	// O_EXCL never follows a link, even one created meanwhile.
	f, err := d.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return true, writeAtomic(d, p, base, data)
	}
	if err != nil {
		return false, &fs.PathError{Op: "write", Path: p, Err: unwrapPathError(err)}
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.Remove(base)
		return false, &fs.PathError{Op: "write", Path: p, Err: unwrapPathError(err)}
	}
	return true, nil
}

// Write writes data to the repository path p (under materialized_configs/
// or .cfg/) atomically, creating missing directories.
func (r *Repo) Write(p string, data []byte) error {
	if err := writable("write", p); err != nil {
		return err
	}
	dir, base := splitPath(p)
	d, release, err := r.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer release()
	if fi, err := lstatIn(d, dir, base); err == nil && !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "write", Path: p, Err: ErrNotRegular}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return writeAtomic(d, p, base, data)
}

// Remove removes the file at the repository path p (under
// materialized_configs/ or .cfg/). A link is not followed: it is refused
// (*LinkError) like a link on the way to p.
func (r *Repo) Remove(p string) error {
	if err := writable("remove", p); err != nil {
		return err
	}
	dir, base := splitPath(p)
	d, release, err := r.dirs.acquire(dir)
	if err != nil {
		return err
	}
	defer release()
	fi, err := lstatIn(d, dir, base)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "remove", Path: p, Err: ErrNotRegular}
	}
	if err := d.Remove(base); err != nil {
		return &fs.PathError{Op: "remove", Path: p, Err: unwrapPathError(err)}
	}
	return nil
}

// mkdirAll returns the directory dir, created if missing, with every
// directory on the way checked not to be a link.
func (r *Repo) mkdirAll(dir string) (*os.Root, func(), error) {
	d, release, err := r.dirs.acquire(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return d, release, err
	}
	parent, base := splitPath(dir)
	pd, prelease, err := r.mkdirAll(parent)
	if err != nil {
		return nil, nil, err
	}
	err = pd.Mkdir(base, 0o755)
	prelease()
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, nil, &fs.PathError{Op: "mkdir", Path: dir, Err: unwrapPathError(err)}
	}
	return r.dirs.acquire(dir)
}

// writeAtomic writes data to base in d so that readers see either the old
// content or the new, never a part: it writes a temporary file in the same
// directory and renames it over base (which replaces a link rather than
// writing through it). It does not fsync: materialized configs are
// reproducible from their sources, and a compile of thousands of configs
// should not wait for the disk thousands of times.
func writeAtomic(d *os.Root, p, base string, data []byte) error {
	tmp := ".tmp-" + base + "-" + strconv.FormatUint(rand.Uint64(), 36)
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: unwrapPathError(err)}
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.Rename(tmp, base)
	}
	if err != nil {
		d.Remove(tmp)
		return &fs.PathError{Op: "write", Path: p, Err: unwrapPathError(err)}
	}
	return nil
}

// ReadCacheFile reads the file name in the repository's cache directory
// (.cfg/), without following links.
func (r *Repo) ReadCacheFile(name string) ([]byte, error) {
	return r.readFile(CacheDir + "/" + name)
}

// WriteCacheFile writes the file name in the repository's cache directory
// (.cfg/) atomically, creating the directory with a .gitignore that keeps
// it out of git even where the repository's own .gitignore does not.
func (r *Repo) WriteCacheFile(name string, data []byte) error {
	ignore := CacheDir + "/.gitignore"
	if _, err := r.lstat(ignore); errors.Is(err, fs.ErrNotExist) {
		if err := r.Write(ignore, []byte("*\n")); err != nil {
			return err
		}
	}
	return r.Write(CacheDir+"/"+name, data)
}
