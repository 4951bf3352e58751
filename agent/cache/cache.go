// Package cache is the agent's on-disk cache of configs, the contract
// between the agent (which writes it) and the client library (which reads
// it directly when the agent is down).
//
// A cache directory DIR holds:
//
//	DIR/data/NAME        the config's data, the bytes the daemon serves
//	DIR/meta/NAME.json   {"name","revision","commit","type","compiled","sha256"} (or "deleted":true)
//	DIR/state.json       {"revision","commit","store","configs"}: the agent's applied revision, its store and the subscription
//
// Every file is written atomically and durably: a temporary file in the same
// directory is written and synced, renamed over the file, and the directory
// is synced. An update writes the data before the metadata, and the agent
// writes state.json after every config of a revision, so after a crash the
// state never claims more than the files hold. The metadata carries the
// SHA-256 of the data, so that a reader racing a writer (metadata of one
// version, data of the next) notices and reads again.
//
// A deleted config keeps its metadata with "deleted": true (a tombstone with
// the revision that deleted it) and loses its data file.
package cache

import (
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
	"time"

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
// RemoveTemp removes the ones a crash left behind.
const tmpPrefix = ".cfgtmp-"

// ErrNotFound is returned (wrapped) by Read for a config the cache does not
// hold or holds as deleted.
var ErrNotFound = errors.New("not in the cache")

func dataPath(dir, name string) string {
	return filepath.Join(dir, "data", filepath.FromSlash(name))
}

func metaPath(dir, name string) string {
	return filepath.Join(dir, "meta", filepath.FromSlash(name)+".json")
}

// Read returns the cached version of the named config. It returns an error
// wrapping ErrNotFound if the cache does not hold the config or holds it as
// deleted. If the data does not match the metadata's checksum (a writer is
// between the two files), Read reads again a few times; if they still
// disagree (the agent crashed between them), it returns the data, which is
// the newer of the two, with the older metadata.
func Read(dir, name string) (ConfigVersion, error) {
	if err := repo.CheckName(name); err != nil {
		return ConfigVersion{}, err
	}
	var cv ConfigVersion
	for attempt := 0; ; attempt++ {
		m, err := readMeta(metaPath(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return ConfigVersion{}, fmt.Errorf("config %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return ConfigVersion{}, err
		}
		if m.Deleted {
			return ConfigVersion{}, fmt.Errorf("config %q: deleted at revision %d: %w", name, m.Revision, ErrNotFound)
		}
		data, err := os.ReadFile(dataPath(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return ConfigVersion{}, fmt.Errorf("config %q: data missing: %w", name, ErrNotFound)
		}
		if err != nil {
			return ConfigVersion{}, fmt.Errorf("reading cache: %w", err)
		}
		cv = ConfigVersion{Name: name, Revision: m.Revision, Commit: m.Commit, Type: m.Type, Compiled: m.Compiled, Data: data}
		if m.SHA256 == "" || m.SHA256 == checksum(data) || attempt == 4 {
			return cv, nil
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func readMeta(path string) (meta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return meta{}, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("reading cache: %s: %w", path, err)
	}
	return m, nil
}

func checksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Write stores cv in the cache: the data first, then the metadata. A
// deleted version writes the tombstone first and then removes the data.
func Write(dir string, cv ConfigVersion) error {
	if err := repo.CheckName(cv.Name); err != nil {
		return err
	}
	m := meta{Name: cv.Name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Compiled: cv.Compiled, Deleted: cv.Deleted}
	if !cv.Deleted {
		m.SHA256 = checksum(cv.Data)
		if err := writeFile(dir, dataPath(dir, cv.Name), cv.Data); err != nil {
			return err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeFile(dir, metaPath(dir, cv.Name), append(b, '\n')); err != nil {
		return err
	}
	if cv.Deleted {
		p := dataPath(dir, cv.Name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("writing cache: %w", err)
		}
		if err := syncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// ReadState returns DIR/state.json, or a zero State if there is none.
func ReadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading cache: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("reading cache: state.json: %w", err)
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

// Load returns every config the cache holds (tombstones included, data
// read and checked against the metadata) and the state. A config whose
// data is missing or does not match its metadata is returned without
// data and with revision 0, so that the agent fetches it again.
func Load(dir string) ([]ConfigVersion, State, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, State{}, err
	}
	var out []ConfigVersion
	root := filepath.Join(dir, "meta")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) || !strings.HasSuffix(d.Name(), ".json") {
			return nil
		}
		m, err := readMeta(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".json")
		if m.Name != name || repo.CheckName(name) != nil {
			return nil // not ours
		}
		cv := ConfigVersion{Name: name, Revision: m.Revision, Commit: m.Commit, Type: m.Type, Compiled: m.Compiled, Deleted: m.Deleted}
		if !m.Deleted {
			data, err := os.ReadFile(dataPath(dir, name))
			if err != nil || (m.SHA256 != "" && m.SHA256 != checksum(data)) {
				cv = ConfigVersion{Name: name}
			} else {
				cv.Data = data
			}
		}
		out = append(out, cv)
		return nil
	})
	if err != nil {
		return nil, State{}, fmt.Errorf("loading cache: %w", err)
	}
	return out, st, nil
}

// RemoveTemp removes the temporary files a crash left in the cache.
func RemoveTemp(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tmpPrefix) {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cleaning cache: %w", err)
	}
	return nil
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
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
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
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing cache: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// mkdirAll creates target and its missing parents up to root, syncing the
// parent of every directory it creates so that the new entry is durable.
func mkdirAll(root, target string) error {
	if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the cache %s", target, root)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	cur := root
	for elem := range strings.SplitSeq(rel, string(filepath.Separator)) {
		if elem == "." {
			continue
		}
		next := filepath.Join(cur, elem)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			if fi, serr := os.Stat(next); serr != nil || !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", next)
			}
		default:
			return err
		}
		cur = next
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
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
