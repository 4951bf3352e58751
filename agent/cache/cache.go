// Package cache is the agent's on-disk cache of configs, the contract
// between the agent (which writes it) and the client library (which reads
// it directly when the agent is down).
//
// A cache directory DIR holds:
//
//	DIR/meta/NAME.json               {"name","revision","commit","type","compiled","sha256"} (or "deleted":true)
//	DIR/data/NAME.sha256-HEX         the data of the version whose metadata has "sha256":"HEX", the bytes the daemon serves
//	DIR/state.json                   {"revision","commit","store","configs"}: the agent's applied revision, its store and the subscription
//
// Every file is written atomically and durably: a temporary file in the same
// directory is written and synced, renamed over the file, and the directory
// is synced. A data file is named by the SHA-256 of its content and never
// changes once in place. An update writes the new version's data file,
// then renames its metadata into place: that rename is the update's commit
// point, so the metadata always names a complete data file. The previous
// version's data file is removed after the rename. A reader reads the
// metadata, then the data file it names, and checks the data against the
// checksum: if the file is gone, a writer committed a newer version
// meanwhile, and the reader starts again from the new metadata. Readers in
// other processes (the client library) thus always get one version whole,
// and bytes that fail their checksum are never returned: they are damage,
// reported as ErrDamaged.
//
// The agent writes state.json after every config of a revision, so after a
// crash the state never claims more than the files hold.
//
// A deleted config keeps its metadata with "deleted": true (a tombstone
// with the revision that deleted it) and loses its data file.
//
// Load, run by the agent at start, checks every entry, removes the damaged
// ones (reporting each, for the agent to fetch again), and removes what a
// crash left behind: temporary files and data files no metadata names. It
// also converts the data files of the earlier layout (DIR/data/NAME),
// which Read still reads, checksum verified.
package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cfg-dev/cfg/internal/durable"
	"github.com/cfg-dev/cfg/repo"
)

// ConfigVersion is one version of a config as the cache holds it.
type ConfigVersion struct {
	Name     string
	Revision int64  // the revision that last changed (or deleted) the config
	Commit   string // the git commit of Revision, when known
	Type     string // the Thrift type of a compiled config, empty for raw configs or when unknown
	Compiled bool   // a compiled (JSON) config, not a raw one
	Deleted  bool   // a tombstone: the config was deleted at Revision
	Data     []byte
}

// State is the content of DIR/state.json.
type State struct {
	// Revision is the latest daemon revision whose updates the agent has
	// written to the cache, for the configs it holds.
	Revision int64 `json:"revision"`
	// Commit is the git commit of Revision, when known.
	Commit string `json:"commit,omitempty"`
	// Store is the identity of the daemons' store whose revisions the
	// cache holds, when known: revision numbers of one store mean nothing
	// in another.
	Store string `json:"store,omitempty"`
	// Configs are the names the agent subscribes to, sorted.
	Configs []string `json:"configs"`
}

type meta struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	Commit   string `json:"commit"`
	Type     string `json:"type"`
	Compiled bool   `json:"compiled,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
}

// tmpPrefix starts the names of temporary files; Load skips them and
// removes the ones a crash left behind.
const tmpPrefix = ".cfgtmp-"

// dataSuffix separates a config's name from the checksum in the name of
// its data file.
const dataSuffix = ".sha256-"

// ErrNotFound is returned (wrapped) by Read for a config the cache does not
// hold or holds as deleted.
var ErrNotFound = errors.New("not in the cache")

// ErrDamaged is returned (wrapped) by Read for an entry whose metadata
// cannot be read or whose data is missing or fails its checksum.
var ErrDamaged = errors.New("cache damaged")

// dataPath is the data file of the named config's version whose data has
// the checksum sum.
func dataPath(dir, name, sum string) string {
	return filepath.Join(dir, "data", filepath.FromSlash(name)+dataSuffix+sum)
}

// legacyDataPath is where the earlier layout kept a config's data.
func legacyDataPath(dir, name string) string {
	return filepath.Join(dir, "data", filepath.FromSlash(name))
}

func metaPath(dir, name string) string {
	return filepath.Join(dir, "meta", filepath.FromSlash(name)+".json")
}

// maxReadAttempts bounds how often Read starts again because a writer
// committed a newer version while it read.
const maxReadAttempts = 1000

// Read returns the cached version of the named config. It returns an error
// wrapping ErrNotFound if the cache does not hold the config or holds it as
// deleted, and one wrapping ErrDamaged if the entry is damaged: its
// metadata unreadable, or its data missing or failing its checksum.
// Read never returns data that does not match the metadata it returns.
func Read(dir, name string) (ConfigVersion, error) {
	if err := repo.CheckName(name); err != nil {
		return ConfigVersion{}, err
	}
	mp := metaPath(dir, name)
	var prev []byte // the metadata of the previous attempt
	for attempt := 0; ; attempt++ {
		raw, err := os.ReadFile(mp)
		if errors.Is(err, fs.ErrNotExist) {
			return ConfigVersion{}, fmt.Errorf("config %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return ConfigVersion{}, fmt.Errorf("config %q: reading cache: %w", name, err)
		}
		m, err := parseMeta(name, raw)
		if err != nil {
			return ConfigVersion{}, fmt.Errorf("config %q: %w: %s: %w", name, ErrDamaged, mp, err)
		}
		if m.Deleted {
			return ConfigVersion{}, fmt.Errorf("config %q: deleted at revision %d: %w", name, m.Revision, ErrNotFound)
		}
		data, err := readData(dir, name, m.SHA256)
		var fe *fileError
		switch {
		case err == nil:
			return m.version(data), nil
		case !errors.As(err, &fe):
			return ConfigVersion{}, fmt.Errorf("config %q: %w", name, err)
		case !fe.gone || bytes.Equal(raw, prev):
			// Damage, or the same metadata twice with its data gone
			// both times: no writer is between versions.
			return ConfigVersion{}, fmt.Errorf("config %q: %w: %w", name, ErrDamaged, fe)
		case attempt == maxReadAttempts:
			return ConfigVersion{}, fmt.Errorf("config %q: reading cache: changed %d times while being read", name, attempt)
		}
		// A writer committed a newer version and removed this one's
		// data since the metadata was read: read the new one.
		prev = raw
	}
}

// fileError is a data file that is damaged, or gone: missing, or (in the
// earlier layout, where a writer replaced the data in place) failing its
// checksum, which a writer that moved on since the metadata was read
// explains too.
type fileError struct {
	path string
	err  error
	gone bool
}

func (e *fileError) Error() string { return e.path + ": " + e.err.Error() }

// readData reads the data of the named config's version whose checksum
// is sum, and checks it; a file that is missing or fails its checksum is
// a *fileError.
func readData(dir, name, sum string) ([]byte, error) {
	p := dataPath(dir, name, sum)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		lp := legacyDataPath(dir, name)
		if data, err := os.ReadFile(lp); err == nil {
			if checksum(data) == sum {
				return data, nil
			}
			return nil, &fileError{lp, errors.New("fails its checksum"), true}
		}
		return nil, &fileError{p, errors.New("data file missing"), true}
	}
	if err != nil {
		return nil, fmt.Errorf("reading cache: %w", err)
	}
	if got := checksum(data); got != sum {
		return nil, &fileError{p, fmt.Errorf("got sha256 %s, want %s", got, sum), false}
	}
	return data, nil
}

func (m meta) version(data []byte) ConfigVersion {
	return ConfigVersion{Name: m.Name, Revision: m.Revision, Commit: m.Commit, Type: m.Type, Compiled: m.Compiled, Deleted: m.Deleted, Data: data}
}

// parseMeta reads the metadata of the named config.
func parseMeta(name string, raw []byte) (meta, error) {
	var m meta
	if err := json.Unmarshal(raw, &m); err != nil {
		return meta{}, err
	}
	switch {
	case m.Name != name:
		return meta{}, fmt.Errorf("name: got %q, want %q", m.Name, name)
	case m.Revision <= 0:
		return meta{}, fmt.Errorf("revision: got %d, want 1 or more", m.Revision)
	case !m.Deleted && !isChecksum(m.SHA256):
		return meta{}, fmt.Errorf("sha256: got %q, want 64 hex digits", m.SHA256)
	}
	return m, nil
}

func isChecksum(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Write stores cv in the cache: the data file first, then the metadata,
// whose rename commits the version; then it removes the previous
// version's data file (a failure to remove it leaves a file Load
// removes). A deleted version's metadata is a tombstone.
func Write(dir string, cv ConfigVersion) error {
	if err := repo.CheckName(cv.Name); err != nil {
		return err
	}
	mp := metaPath(dir, cv.Name)
	var old meta
	if raw, err := os.ReadFile(mp); err == nil {
		old, _ = parseMeta(cv.Name, raw)
	}
	m := meta{Name: cv.Name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Compiled: cv.Compiled, Deleted: cv.Deleted}
	if !cv.Deleted {
		m.SHA256 = checksum(cv.Data)
		if err := writeFile(dir, dataPath(dir, cv.Name, m.SHA256), cv.Data); err != nil {
			return err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeFile(dir, mp, append(b, '\n')); err != nil {
		return err
	}
	if isChecksum(old.SHA256) && old.SHA256 != m.SHA256 {
		fsys.Remove(dataPath(dir, cv.Name, old.SHA256))
	}
	return nil
}

// Remove removes the named config from the cache: its metadata (which
// commits the removal, durably: the directory is synced before Remove
// goes on), then its data.
func Remove(dir, name string) error {
	if err := repo.CheckName(name); err != nil {
		return err
	}
	mp := metaPath(dir, name)
	var old meta
	if raw, err := os.ReadFile(mp); err == nil {
		old, _ = parseMeta(name, raw)
	}
	if err := fsys.Remove(mp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("writing cache: %w", err)
	}
	if err := syncDir(filepath.Dir(mp)); err != nil {
		return err
	}
	if isChecksum(old.SHA256) {
		fsys.Remove(dataPath(dir, name, old.SHA256))
	}
	return nil
}

// ReadState returns DIR/state.json, or a zero State if there is none.
func ReadState(dir string) (State, error) {
	p := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading cache: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrDamaged, p, err)
	}
	if s.Revision < 0 {
		return State{}, fmt.Errorf("%w: %s: revision: got %d, want 0 or more", ErrDamaged, p, s.Revision)
	}
	return s, nil
}

// WriteState writes DIR/state.json atomically and durably.
func WriteState(dir string, s State) error {
	s.Configs = slices.Clone(s.Configs)
	slices.Sort(s.Configs)
	if s.Configs == nil {
		s.Configs = []string{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFile(dir, filepath.Join(dir, "state.json"), append(b, '\n'))
}

// Loaded is what Load found in a cache directory.
type Loaded struct {
	// Configs are the configs the cache holds, tombstones included, with
	// their data checked against their metadata.
	Configs []ConfigVersion
	// State is the content of state.json; zero if there is none, or if
	// it is damaged (StateDamaged).
	State State
	// StateDamaged is set when state.json is damaged: the cache's
	// revisions are then of a store Load cannot name. Load leaves the
	// file for the agent to replace.
	StateDamaged bool
	// Damaged lists the damaged entries Load found and removed, so that
	// the agent can fetch their configs again, and a damaged state.json.
	Damaged []Damage
}

// Damage is a damaged file of the cache.
type Damage struct {
	Path   string // the damaged file
	Config string // the config the file is of; empty for state.json
	Err    error  // what is wrong with it
}

// Load returns what the cache holds, checking every entry: an entry whose
// metadata cannot be read, or whose data is missing or fails its
// checksum, is removed and listed in Damaged, never returned. It removes
// the temporary files a crash left, and the data files no metadata names
// (a version written but not committed, or one whose removal was cut
// short), and converts data files of the earlier layout. Load is meant
// for the one writer of the cache, at its start; readers in other
// processes may run meanwhile. It fails only if it cannot read the cache
// directory's structure.
func Load(dir string) (Loaded, error) {
	var ld Loaded
	st, err := ReadState(dir)
	switch {
	case errors.Is(err, ErrDamaged):
		ld.StateDamaged = true
		ld.Damaged = append(ld.Damaged, Damage{Path: filepath.Join(dir, "state.json"), Err: err})
	case err != nil:
		return Loaded{}, err
	default:
		ld.State = st
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	for _, p := range tmps {
		fsys.Remove(p)
	}
	live := map[string]bool{} // the data files metadata names
	root := filepath.Join(dir, "meta")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			fsys.Remove(p)
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".json") {
			return nil // not ours
		}
		rel, _ := filepath.Rel(root, p)
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".json")
		if repo.CheckName(name) != nil {
			return nil // not ours
		}
		cv, dataFile, err := loadEntry(dir, name)
		if err != nil {
			dmg := Damage{Path: p, Config: name, Err: err}
			if fe, ok := errors.AsType[*fileError](err); ok {
				dmg.Path, dmg.Err = fe.path, fe.err
			}
			ld.Damaged = append(ld.Damaged, dmg)
			fsys.Remove(p)
			return nil
		}
		if dataFile != "" {
			live[dataFile] = true
		}
		ld.Configs = append(ld.Configs, cv)
		return nil
	})
	if err != nil {
		return Loaded{}, fmt.Errorf("loading cache: %w", err)
	}
	if err := collect(dir, live); err != nil {
		return Loaded{}, fmt.Errorf("loading cache: %w", err)
	}
	return ld, nil
}

// loadEntry reads and checks one entry, converting a data file of the
// earlier layout; it returns the config and its data file.
func loadEntry(dir, name string) (ConfigVersion, string, error) {
	raw, err := os.ReadFile(metaPath(dir, name))
	if err != nil {
		return ConfigVersion{}, "", err
	}
	m, err := parseMeta(name, raw)
	if err != nil {
		return ConfigVersion{}, "", err
	}
	if m.Deleted {
		return m.version(nil), "", nil
	}
	p := dataPath(dir, name, m.SHA256)
	data, err := readData(dir, name, m.SHA256)
	if err != nil {
		return ConfigVersion{}, "", err
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		// The data is in the earlier layout's file: move it.
		if err := fsys.Rename(legacyDataPath(dir, name), p); err != nil {
			return ConfigVersion{}, "", fmt.Errorf("converting the data file: %w", err)
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return ConfigVersion{}, "", err
		}
	}
	return m.version(data), p, nil
}

// collect removes the files under DIR/data that live does not name:
// temporary files, data files of versions never committed or replaced,
// and data files of the earlier layout left over.
func collect(dir string, live map[string]bool) error {
	root := filepath.Join(dir, "data")
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !live[p] {
			fsys.Remove(p)
		}
		return nil
	})
}

// writeFile writes data to path, a file inside the cache directory dir,
// atomically and durably: it writes a temporary file in the same
// directory, syncs it, renames it over path and syncs the directory. It
// creates missing directories between dir and path, syncing the parent of
// each one it creates.
func writeFile(dir, path string, data []byte) error {
	if err := mkdirAll(dir, filepath.Dir(path)); err != nil {
		return fmt.Errorf("writing cache: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-"+strconv.FormatUint(rand.Uint64(), 36))
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing cache: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("writing cache: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// MakeDir creates the cache directory dir and its missing parents,
// durably: the parent of every directory it creates is synced, so that a
// power loss after it returns does not lose the directory, and with it
// every config written into it. The agent calls it before Load.
func MakeDir(dir string) error { return mkdirSynced(dir) }

// mkdirAll creates target, a directory within the cache root, and its
// missing parents, durably (mkdirSynced).
func mkdirAll(root, target string) error {
	rel, err := filepath.Rel(root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the cache %s", target, root)
	}
	return mkdirSynced(target)
}

// mkdirSynced creates dir and its missing parents, durably, through
// fsys (durable.MkdirAll).
func mkdirSynced(dir string) error { return durable.MkdirAll(cacheDirs{}, dir, 0o755) }

// cacheDirs is fsys as durable.MkdirAll changes it.
type cacheDirs struct{}

func (cacheDirs) Mkdir(name string, perm fs.FileMode) error { return fsys.Mkdir(name, perm) }
func (cacheDirs) SyncDir(name string) error                 { return syncDir(name) }

func syncDir(dir string) error {
	d, err := fsys.Open(dir)
	if err != nil {
		return fmt.Errorf("writing cache: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing cache: syncing %s: %w", dir, err)
	}
	return nil
}

// fileSystem is what the cache does to the file system when it changes
// it: every creation, write, sync, rename and removal of a file or
// directory goes through fsys; reads use the os package directly.
type fileSystem interface {
	// OpenFile opens a file to write, as os.OpenFile does.
	OpenFile(name string, flag int, perm fs.FileMode) (file, error)
	// Open opens a directory to sync, as os.Open does.
	Open(name string) (file, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	Mkdir(name string, perm fs.FileMode) error
}

// file is an open file or directory of a fileSystem.
type file interface {
	Write(b []byte) (int, error)
	Sync() error
	Close() error
}

// osFS is the file system, through the os package.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Open(name string) (file, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error      { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                  { return os.Remove(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error { return os.Mkdir(name, perm) }

// fsys is the file system the cache changes. A test replaces it with one
// that also keeps what a power loss would leave
// (TestWritesSurvivePowerLoss).
var fsys fileSystem = osFS{}
