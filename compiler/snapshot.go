package compiler

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cfg-dev/cfg/repo"
)

// Snapshot is the config repository as one Build read it and left it,
// held in memory: every file under source/ that repo.Scan lists and
// repo.SettingsFile, each read once at the start through repo.Repo (the
// compile reads these bytes and no others), and, after the build, every
// file under materialized_configs/ with repo.TypesFile: the outputs the
// build produced, as it produced them, and the files it left alone, each
// read once at its end. Files and directories whose names start with a dot
// are left out, as everywhere.
//
// A Snapshot is a read-only fs.FS rooted at the repository root (with
// ReadFile, Stat and ReadDir), so that the bytes compiled can be validated
// (validate.Run) and committed (gitrepo.Repo.CommitFiles) later, at once or
// much later, whatever happens to the files on disk meanwhile. It serves
// the paths repo.Repo.FS serves (repo.CheckRead), and refuses what that
// refused when the snapshot was taken with the same error: an entry under
// source/ that is a symbolic link is listed as one, and reading it, or
// anything under it, is the *repo.LinkError. It is safe for concurrent use
// once Build has returned it.
type Snapshot struct {
	files   map[string]*snapFile
	refused map[string]*refusedEntry // by path: entries under source/ not read
	dirs    map[string][]fs.DirEntry // by directory, sorted by name
}

type snapFile struct {
	data  []byte
	mode  fs.FileMode
	mtime time.Time
}

// refusedEntry is an entry repo.Scan listed as refused (a symbolic link, a
// pipe): its type, and the error reading it gave.
type refusedEntry struct {
	mode fs.FileMode
	err  error
}

// SnapshotFile is a file of a Snapshot.
type SnapshotFile struct {
	Path string      // relative to the repository root, slash-separated
	Data []byte      // the content; callers must not change it
	Mode fs.FileMode // the permission bits of the file when it was read
}

// Holds reports whether p (relative to the repository root) is a path a
// Snapshot covers, whether or not it has a file there: a path under
// source/ or materialized_configs/ without a name starting with a dot,
// repo.TypesFile, or repo.SettingsFile.
func (s *Snapshot) Holds(p string) bool {
	if p == repo.TypesFile || p == repo.SettingsFile {
		return true
	}
	dir, _, _ := strings.Cut(p, "/")
	if dir != repo.SourceDir && dir != repo.MaterializedDir || !fs.ValidPath(p) {
		return false
	}
	return !slices.ContainsFunc(strings.Split(p, "/"), func(name string) bool { return strings.HasPrefix(name, ".") })
}

// Files returns every file of the snapshot, sorted by path.
func (s *Snapshot) Files() []SnapshotFile {
	out := make([]SnapshotFile, 0, len(s.files))
	for p, f := range s.files {
		out = append(out, SnapshotFile{Path: p, Data: f.data, Mode: f.mode})
	}
	slices.SortFunc(out, func(a, b SnapshotFile) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// readSources reads repo.SettingsFile and every file repo.Scan lists under
// source/ in fsys (repo.Repo.FS), with jobs readers, and records the
// entries Scan refused with the error reading them gives.
func readSources(fsys fs.FS, jobs int) (*Snapshot, error) {
	tree, err := repo.Scan(fsys)
	if err != nil {
		return nil, err
	}
	paths := []string{repo.SettingsFile}
	for _, l := range [][]string{tree.Configs, tree.Modules, tree.Schemas, tree.Validators, tree.Raw} {
		paths = append(paths, l...)
	}
	files := make([]*snapFile, len(paths))
	errs := make([]error, len(paths))
	parallel(jobs, len(paths), func(i int) { files[i], errs[i] = readSnapFile(fsys, paths[i]) })
	if errors.Is(errs[0], fs.ErrNotExist) {
		errs[0] = nil // no settings: the defaults
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Snapshot{files: make(map[string]*snapFile, len(paths)), refused: map[string]*refusedEntry{}}
	for i, p := range paths {
		if files[i] != nil {
			s.files[p] = files[i]
		}
	}
	for _, p := range tree.Refused {
		e := &refusedEntry{mode: fs.ModeIrregular}
		if _, e.err = fs.Stat(fsys, p); e.err == nil {
			e.err = &fs.PathError{Op: "open", Path: p, Err: errors.New("changed while it was read")}
		}
		if le := (*repo.LinkError)(nil); errors.As(e.err, &le) {
			e.mode = fs.ModeSymlink
		}
		s.refused[p] = e
	}
	s.index()
	return s, nil
}

// readSnapFile reads one file, with its mode and modification time as
// they were before it was read.
func readSnapFile(fsys fs.FS, p string) (*snapFile, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("not a regular file")}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: p, Err: err}
	}
	return &snapFile{data: data, mode: fi.Mode().Perm(), mtime: fi.ModTime()}, nil
}

// addOutputs adds the materialized files: those in produced (by path) as
// given, the others found in fsys read from it.
func (s *Snapshot) addOutputs(fsys fs.FS, produced map[string][]byte) error {
	have, err := repo.ListMaterialized(fsys)
	if err != nil {
		return err
	}
	if _, err := fs.Stat(fsys, repo.TypesFile); err == nil {
		have = append(have, repo.TypesFile)
	}
	now := time.Now()
	for _, p := range have {
		if data, ok := produced[p]; ok {
			s.files[p] = &snapFile{data: data, mode: 0o644, mtime: now}
			continue
		}
		f, err := readSnapFile(fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since it was listed
		}
		if err != nil {
			return err
		}
		s.files[p] = f
	}
	for p, data := range produced {
		if _, ok := s.files[p]; !ok {
			s.files[p] = &snapFile{data: data, mode: 0o644, mtime: now}
		}
	}
	s.index()
	return nil
}

// index lists the entries of every directory.
func (s *Snapshot) index() {
	type key struct{ dir, name string }
	seen := map[key]bool{}
	s.dirs = map[string][]fs.DirEntry{".": nil}
	add := func(p string, info snapInfo) {
		for child := p; child != "."; child = path.Dir(child) {
			dir, name := path.Dir(child), path.Base(child)
			if seen[key{dir, name}] {
				break
			}
			seen[key{dir, name}] = true
			var di fs.FileInfo = snapInfo{name: name, mode: fs.ModeDir | 0o755}
			if child == p {
				info.name = name
				di = info
			}
			s.dirs[dir] = append(s.dirs[dir], fs.FileInfoToDirEntry(di))
		}
	}
	for p, f := range s.files {
		add(p, snapInfo{size: int64(len(f.data)), mode: f.mode, mtime: f.mtime})
	}
	for p, e := range s.refused {
		add(p, snapInfo{mode: e.mode})
	}
	for _, entries := range s.dirs {
		slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	}
}

// check refuses what repo.Repo.FS refused: paths it does not serve, and
// refused entries and paths under them.
func (s *Snapshot) check(op, name string) error {
	if name == "." {
		return nil
	}
	if err := repo.CheckRead(op, name); err != nil {
		return err
	}
	for p := name; p != "."; p = path.Dir(p) {
		if e, ok := s.refused[p]; ok {
			return e.err
		}
	}
	return nil
}

// Open implements fs.FS.
func (s *Snapshot) Open(name string) (fs.File, error) {
	if err := s.check("open", name); err != nil {
		return nil, err
	}
	if f, ok := s.files[name]; ok {
		return &snapOpenFile{info: snapInfo{name: path.Base(name), size: int64(len(f.data)), mode: f.mode, mtime: f.mtime}, r: bytes.NewReader(f.data)}, nil
	}
	if entries, ok := s.dirs[name]; ok {
		return &snapOpenDir{info: snapInfo{name: path.Base(name), mode: fs.ModeDir | 0o755}, entries: entries}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// ReadFile implements fs.ReadFileFS; the bytes returned are a copy.
func (s *Snapshot) ReadFile(name string) ([]byte, error) {
	if err := s.check("read", name); err != nil {
		return nil, err
	}
	if f, ok := s.files[name]; ok {
		return bytes.Clone(f.data), nil
	}
	if _, ok := s.dirs[name]; ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
}

// Stat implements fs.StatFS.
func (s *Snapshot) Stat(name string) (fs.FileInfo, error) {
	if err := s.check("stat", name); err != nil {
		return nil, err
	}
	f, err := s.Open(name)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: errors.Unwrap(err)}
	}
	return f.Stat()
}

// ReadDir implements fs.ReadDirFS.
func (s *Snapshot) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := s.check("readdir", name); err != nil {
		return nil, err
	}
	entries, ok := s.dirs[name]
	if !ok {
		if _, isFile := s.files[name]; isFile {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
		}
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(entries), nil
}

type snapInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (fi snapInfo) Name() string       { return fi.name }
func (fi snapInfo) Size() int64        { return fi.size }
func (fi snapInfo) Mode() fs.FileMode  { return fi.mode }
func (fi snapInfo) ModTime() time.Time { return fi.mtime }
func (fi snapInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi snapInfo) Sys() any           { return nil }

type snapOpenFile struct {
	info snapInfo
	r    *bytes.Reader
}

func (f *snapOpenFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *snapOpenFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *snapOpenFile) Close() error               { return nil }

type snapOpenDir struct {
	info    snapInfo
	entries []fs.DirEntry
	off     int
}

func (d *snapOpenDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *snapOpenDir) Close() error               { return nil }
func (d *snapOpenDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile.
func (d *snapOpenDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return slices.Clone(rest), nil
}
