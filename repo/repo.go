// Package repo knows the layout of a config repository: where its root is,
// which files under source/ are configs, modules, schemas, validators or raw
// configs, where each one is materialized, and how to write outputs safely.
package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Directories of a config repository, relative to its root.
const (
	SourceDir       = "source"
	MaterializedDir = "materialized_configs"
	CacheDir        = ".cfg"
)

// FindRoot walks up from dir to the first directory holding source/.
func FindRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; {
		if fi, err := os.Stat(filepath.Join(d, SourceDir)); err == nil && fi.IsDir() {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no config repository (a directory holding %s/) at or above %s", SourceDir, abs)
		}
		d = parent
	}
}

// Kind classifies a file under source/.
type Kind int

// The kinds of files under source/.
const (
	Raw       Kind = iota // any other file: distributed verbatim
	Config                // .cconf: a config program
	Module                // .cinc: a loadable Starlark module
	Schema                // .thrift
	Validator             // .thrift-cvalidator
)

// Classify returns the kind of the file at p.
func Classify(p string) Kind {
	switch path.Ext(p) {
	case ".cconf":
		return Config
	case ".cinc":
		return Module
	case ".thrift":
		return Schema
	case ".thrift-cvalidator":
		return Validator
	}
	return Raw
}

// Tree lists the files under source/ by kind; paths are relative to the
// repository root, slash-separated and sorted.
type Tree struct {
	Configs    []string
	Modules    []string
	Schemas    []string
	Validators []string
	Raw        []string
}

// Scan lists the files under source/ in fsys, skipping names that start with
// a dot (editor and VCS droppings).
func Scan(fsys fs.FS) (*Tree, error) {
	t := &Tree{}
	err := fs.WalkDir(fsys, SourceDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != SourceDir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch Classify(p) {
		case Config:
			t.Configs = append(t.Configs, p)
		case Module:
			t.Modules = append(t.Modules, p)
		case Schema:
			t.Schemas = append(t.Schemas, p)
		case Validator:
			t.Validators = append(t.Validators, p)
		default:
			t.Raw = append(t.Raw, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", SourceDir, err)
	}
	for _, l := range [][]string{t.Configs, t.Modules, t.Schemas, t.Validators, t.Raw} {
		slices.Sort(l)
	}
	return t, nil
}

// ConfigName returns the name of the config or raw config at source path p:
// "source/feed/cache_job.cconf" is "feed/cache_job"; "source/a/b.yaml" is
// "a/b.yaml".
func ConfigName(p string) string {
	p = strings.TrimPrefix(p, SourceDir+"/")
	if Classify(p) == Config {
		p = strings.TrimSuffix(p, ".cconf")
	}
	return p
}

// MaterializedPath returns where the config or raw config at source path p
// is materialized.
func MaterializedPath(p string) string {
	name := ConfigName(p)
	if Classify(p) == Config {
		name += ".json"
	}
	return MaterializedDir + "/" + name
}

// MaterializedName returns the config name of the materialized file at p
// (relative to the config repository root): "feed/job" for a compiled
// config's "materialized_configs/feed/job.json", "service/banner.txt" for a
// raw config. ok is false for files that are not configs: outside
// materialized_configs/, other encodings of compiled configs, and files cfg
// ignores (a name starting with a dot, such as TypesFile).
func MaterializedName(p string) (name string, compiled, ok bool) {
	rel, ok := strings.CutPrefix(p, MaterializedDir+"/")
	if !ok {
		return "", false, false
	}
	for _, el := range strings.Split(rel, "/") {
		if strings.HasPrefix(el, ".") {
			return "", false, false
		}
	}
	switch path.Ext(rel) {
	case ".json":
		return strings.TrimSuffix(rel, ".json"), true, true
	case ".thrift-binary", ".thrift-compact":
		return "", false, false
	}
	return rel, false, true
}

// TypesFile records the Thrift type of every compiled config, by config
// name, so that tools reading materialized configs (the daemon) know it. It
// is written by every compile and committed with the outputs; its name
// starts with a dot so that no raw config can collide with it.
const TypesFile = MaterializedDir + "/.types.json"

// EncodeTypes renders a TypesFile: a JSON object, keys sorted.
func EncodeTypes(types map[string]string) []byte {
	data, _ := json.MarshalIndent(types, "", "  ")
	return append(data, '\n')
}

// DecodeTypes parses a TypesFile.
func DecodeTypes(data []byte) (map[string]string, error) {
	var types map[string]string
	if err := json.Unmarshal(data, &types); err != nil {
		return nil, fmt.Errorf("%s: %w", TypesFile, err)
	}
	return types, nil
}

// EncodedPath returns where the config materialized at the JSON path p is
// written in another encoding: "x.json" is "x.thrift-binary" for the
// encoding "thrift-binary".
func EncodedPath(p, encoding string) string {
	return strings.TrimSuffix(p, ".json") + "." + encoding
}

// ListMaterialized lists the files under materialized_configs/ in fsys.
func ListMaterialized(fsys fs.FS) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, MaterializedDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == MaterializedDir {
				return fs.SkipDir
			}
			return err
		}
		if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Writer writes materialized files under a repository root. It remembers
// the directories it has made, and is safe for concurrent use.
type Writer struct {
	root string
	dirs sync.Map // directories known to exist
}

// NewWriter returns a Writer for the repository at root.
func NewWriter(root string) *Writer { return &Writer{root: root} }

// WriteIfChanged writes data to the repository path p unless the file
// already holds exactly data, and reports whether it wrote. A file that
// exists is replaced atomically (see writeAtomic); a new one is created in
// place, exclusively, and removed again if writing it fails.
func (w *Writer) WriteIfChanged(p string, data []byte) (bool, error) {
	name := filepath.Join(w.root, filepath.FromSlash(p))
	old, err := os.ReadFile(name)
	switch {
	case err == nil && bytes.Equal(old, data):
		return false, nil
	case err == nil:
		return true, writeAtomic(name, data)
	}
	if err := w.mkdir(filepath.Dir(name)); err != nil {
		return false, err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return true, writeAtomic(name, data)
	}
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	return true, nil
}

// Write writes data to the repository path p atomically.
func (w *Writer) Write(p string, data []byte) error {
	name := filepath.Join(w.root, filepath.FromSlash(p))
	if err := w.mkdir(filepath.Dir(name)); err != nil {
		return err
	}
	return writeAtomic(name, data)
}

func (w *Writer) mkdir(dir string) error {
	if _, ok := w.dirs.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w.dirs.Store(dir, struct{}{})
	return nil
}

// writeAtomic writes data to name so that readers see either the old
// content or the new, never a part: it writes a temporary file in the same
// directory and renames it over name. It does not fsync: materialized
// configs are reproducible from their sources, and a compile of thousands
// of configs should not wait for the disk thousands of times.
func writeAtomic(name string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-"+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
