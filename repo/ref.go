package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// Ref is what a user's reference to a config or a source file names.
type Ref struct {
	// Path is the source file, relative to the repository root
	// ("source/feed/cache_job.cconf"); empty when it does not exist and
	// the name alone does not tell which file it would be.
	Path string
	// Name is the config name of a config or raw config ("feed/cache_job",
	// "service/banner.txt"); empty for modules, schemas, validators and
	// directories.
	Name string
	// Dir is set when Path is a directory of the repository ("." for the
	// root), which stands for the configs under it where a command takes
	// one (cfg compile).
	Dir bool
}

// RefForms lists the forms of reference Resolve accepts, for messages.
const RefForms = "a config name (feed/cache_job), a path under source/ (lib/create_job.cinc), " +
	"a // path (//lib/create_job.cinc) or a path from the working directory (source/lib/create_job.cinc)"

// A RefError reports a reference that names no config or source file. It
// wraps fs.ErrNotExist when the reference is well formed but names nothing
// that exists.
type RefError struct {
	Ref     string
	Problem string
	Err     error
}

func (e *RefError) Error() string {
	return fmt.Sprintf("%q: %s; want %s", e.Ref, e.Problem, RefForms)
}

func (e *RefError) Unwrap() error { return e.Err }

// Resolve turns a user's reference to a config or a source file into the
// file it names. It is the one way every command reads such a reference.
// fsys is the repository (Repo.FS), root its absolute directory and cwd the
// absolute working directory; with fsys nil (no repository) only the forms
// that need no files are read. A reference is, in this order:
//
//   - a // path, as load() spells it: "//lib/create_job.cinc" is
//     source/lib/create_job.cinc;
//   - the path of an existing file, absolute or relative to cwd: a source
//     file, or a materialized file, which names its config
//     ("materialized_configs/feed/cache_job.json" is feed/cache_job);
//   - a name: a config name ("feed/cache_job" is
//     source/feed/cache_job.cconf), or the path under source/ of any
//     source file ("service/banner.txt", "lib/create_job.cinc").
//
// A directory, in any of these forms, is a Ref with Dir set (the
// repository's root, ".", only as a path).
//
// A path starting with "/", "./" or "../" is only a path. A reference
// that names nothing is a *RefError listing these forms. When it is well
// formed but its file does not exist, the RefError wraps fs.ErrNotExist and
// the Ref returned holds the config name it would have, for the commands
// that also name configs gone from the working tree (their history, or a
// daemon's copy). Errors reading the repository (a symbolic link on the
// way) are returned as they are.
func Resolve(fsys fs.FS, root, cwd, ref string) (Ref, error) {
	bad := func(problem string) (Ref, error) { return Ref{}, &RefError{Ref: ref, Problem: problem} }
	missing := func(name string) (Ref, error) {
		if CheckName(name) != nil {
			name = ""
		}
		problem := "no config or source file"
		if fsys == nil {
			problem = "no config repository here to look it up in"
		}
		return Ref{Name: name}, &RefError{Ref: ref, Problem: problem, Err: fs.ErrNotExist}
	}
	if ref == "" {
		return bad("empty reference")
	}

	// A // path.
	if rest, ok := strings.CutPrefix(ref, "//"); ok {
		p := path.Clean(SourceDir + "/" + rest)
		if !strings.HasPrefix(p, SourceDir+"/") {
			return bad("outside " + SourceDir + "/")
		}
		if dir, err := isDir(fsys, p); err != nil || dir {
			return Ref{Path: p, Dir: dir}, err
		}
		found, err := isFile(fsys, p)
		if err != nil {
			return Ref{}, err
		}
		if !found {
			return missing(sourceName(p))
		}
		return sourceRef(p), nil
	}

	// A path from the working directory.
	abs := filepath.FromSlash(ref)
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, abs)
	}
	rel, err := filepath.Rel(root, abs)
	inside := root != "" && err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	p := filepath.ToSlash(rel)
	if inside && fsys != nil && p == "." {
		return Ref{Path: ".", Dir: true}, nil
	}
	if inside && fsys != nil {
		fi, err := fs.Stat(fsys, p)
		switch {
		case err == nil && fi.IsDir():
			return Ref{Path: p, Dir: true}, nil
		case err == nil:
			return pathRef(fsys, ref, p)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutside) && !errors.Is(err, fs.ErrInvalid):
			return Ref{}, err
		}
	}
	if filepath.IsAbs(ref) || ref == "." || ref == ".." || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		if !inside {
			return bad(fmt.Sprintf("outside the config repository %s", root))
		}
		if strings.HasPrefix(p, MaterializedDir+"/") {
			name, _ := materializedName(p)
			return missing(name)
		}
		if !strings.HasPrefix(p, SourceDir+"/") {
			return bad("not under " + SourceDir + "/ or " + MaterializedDir + "/")
		}
		return missing(sourceName(p))
	}

	// A name.
	name := strings.TrimSuffix(ref, "/")
	if !fs.ValidPath(name) {
		return bad("not a config name or a path")
	}
	for _, p := range []string{SourceDir + "/" + name + ".cconf", SourceDir + "/" + name} {
		found, err := isFile(fsys, p)
		if err != nil {
			return Ref{}, err
		}
		if found {
			return sourceRef(p), nil
		}
	}
	if dir, err := isDir(fsys, SourceDir+"/"+name); err != nil || dir {
		return Ref{Path: SourceDir + "/" + name, Dir: dir}, err
	}
	return missing(sourceName(SourceDir + "/" + name))
}

// isFile reports whether the repository path p is a file; a path that does
// not exist, or that the repository does not serve, is not one.
func isFile(fsys fs.FS, p string) (bool, error) {
	if fsys == nil {
		return false, nil
	}
	fi, err := fs.Stat(fsys, p)
	switch {
	case err == nil:
		return !fi.IsDir(), nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrOutside), errors.Is(err, ErrIgnored), errors.Is(err, fs.ErrInvalid):
		return false, nil
	}
	return false, err
}

// isDir reports whether the repository path p is a directory.
func isDir(fsys fs.FS, p string) (bool, error) {
	if fsys == nil {
		return false, nil
	}
	fi, err := fs.Stat(fsys, p)
	switch {
	case err == nil:
		return fi.IsDir(), nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrOutside), errors.Is(err, ErrIgnored), errors.Is(err, fs.ErrInvalid):
		return false, nil
	}
	return false, err
}

// sourceName is the config name of the source path p, or "" for modules,
// schemas and validators.
func sourceName(p string) string {
	switch Classify(p) {
	case Config, Raw:
		return ConfigName(p)
	}
	return ""
}

func sourceRef(p string) Ref { return Ref{Path: p, Name: sourceName(p)} }

// pathRef is the Ref of the existing file at repository path p.
func pathRef(fsys fs.FS, ref, p string) (Ref, error) {
	switch {
	case strings.HasPrefix(p, SourceDir+"/"):
		return sourceRef(p), nil
	case strings.HasPrefix(p, MaterializedDir+"/"):
		name, sources := materializedName(p)
		if name == "" {
			return Ref{}, &RefError{Ref: ref, Problem: "not a materialized config"}
		}
		for _, s := range sources {
			found, err := isFile(fsys, s)
			if err != nil {
				return Ref{}, err
			}
			if found {
				return sourceRef(s), nil
			}
		}
		return Ref{Name: name}, &RefError{Ref: ref, Problem: fmt.Sprintf("the source of config %q is gone", name), Err: fs.ErrNotExist}
	}
	return Ref{}, &RefError{Ref: ref, Problem: "not under " + SourceDir + "/ or " + MaterializedDir + "/"}
}

// materializedName returns the config name of the materialized file at
// repository path p, in any encoding, and the sources it can come from.
func materializedName(p string) (string, []string) {
	rel := strings.TrimPrefix(p, MaterializedDir+"/")
	if _, _, ok := MaterializedName(p); !ok {
		// Another encoding of a compiled config, or a file cfg ignores.
		ext := path.Ext(rel)
		if ext != "."+EncodingThriftBinary && ext != "."+EncodingThriftCompact {
			return "", nil
		}
		base := strings.TrimSuffix(rel, ext)
		return base, []string{SourceDir + "/" + base + ".cconf"}
	}
	if base, ok := strings.CutSuffix(rel, ".json"); ok {
		// A compiled config, or a raw config named .json.
		return base, []string{SourceDir + "/" + base + ".cconf", SourceDir + "/" + rel}
	}
	return rel, []string{SourceDir + "/" + rel}
}
