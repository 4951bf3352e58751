// Package repo knows the layout of a config repository: where its root is,
// which files under source/ are configs, modules, schemas, validators or raw
// configs, where each one is materialized, and how to write outputs safely.
//
// It offers:
//
//   - Repo: the one way cfg reads, writes and removes files of a work tree,
//     through os.Root, following no symbolic link (Open, Repo.FS,
//     Repo.WriteIfChanged, Repo.Remove, Repo.CheckWritable);
//   - Scan, ListMaterialized: the sources and the materialized files;
//   - Classify, ConfigName, MaterializedPath, MaterializedName,
//     EncodedPath: kinds, names and paths;
//   - CheckName, CheckSource: the one rule of config names, and what makes a
//     source compilable;
//   - Settings (SettingsFile, cfg.json): the encodings a repository
//     publishes;
//   - TypesFile: the record of the compiled configs' types.
package repo

import (
	"encoding/json"
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
	// Refused are the entries that are neither regular files nor
	// directories: symbolic links (cfg follows none), pipes, devices. They
	// are not read; compiling one reports why.
	Refused []string
}

// Sources returns the paths that each give one compiled output (or one
// failure): configs, raw configs and refused entries, sorted.
func (t *Tree) Sources() []string {
	out := make([]string, 0, len(t.Configs)+len(t.Raw)+len(t.Refused))
	out = append(append(append(out, t.Configs...), t.Raw...), t.Refused...)
	slices.Sort(out)
	return out
}

// Scan lists the files under source/ in fsys, skipping names that start with
// a dot (editor and VCS droppings). Entries that are not regular files or
// directories, such as symbolic links, are listed as Refused and not
// followed.
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
		if !d.Type().IsRegular() {
			t.Refused = append(t.Refused, p)
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
	for _, l := range [][]string{t.Configs, t.Modules, t.Schemas, t.Validators, t.Raw, t.Refused} {
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

// MaterializedConfig is MaterializedName told by the compile's record of
// types (TypesFile, decoded; nil when a commit has none) which ".json"
// files are compiled configs: the record lists every compiled config, so a
// ".json" file it does not list is a raw config, named with its extension
// ("data/list.json"). Without a record, every ".json" file is a compiled
// config.
func MaterializedConfig(p string, types map[string]string) (name string, compiled, ok bool) {
	name, compiled, ok = MaterializedName(p)
	if _, listed := types[name]; compiled && types != nil && !listed {
		return name + ".json", false, true
	}
	return name, compiled, ok
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

// ListMaterialized lists the files under materialized_configs/ in fsys,
// except those whose path has a name starting with a dot (directories
// starting with a dot are not entered). A symbolic link under
// materialized_configs/ (or materialized_configs/ itself being one) is an
// error, a *LinkError when fsys tells where it points: cfg
// writes and removes files there and follows no link. So is any entry that
// is neither a regular file nor a directory.
func ListMaterialized(fsys fs.FS) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, MaterializedDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == MaterializedDir {
				return fs.SkipDir
			}
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			var le *LinkError
			if _, err := fs.Stat(fsys, p); errors.As(err, &le) {
				return le
			}
			return &LinkError{Path: p}
		case strings.HasPrefix(d.Name(), ".") && d.IsDir() && p != MaterializedDir:
			return fs.SkipDir
		case d.IsDir(), strings.HasPrefix(d.Name(), "."):
			return nil
		case !d.Type().IsRegular():
			return &fs.PathError{Op: "list", Path: p, Err: ErrNotRegular}
		}
		out = append(out, p)
		return nil
	})
	return out, err
}
