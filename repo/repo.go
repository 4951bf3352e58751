// Package repo knows the layout of a config repository: where its root is,
// which files under source/ are configs, modules, schemas, validators or raw
// configs, where each one is materialized, and how to write outputs safely.
package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
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

// WriteFileAtomic writes data to name so that readers see either the old
// content or the new, never a part: it writes a temporary file in the same
// directory, syncs it and renames it over name.
func WriteFileAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
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
