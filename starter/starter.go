// Package starter makes a new config repository (cfg init): a git
// repository unless the directory is already in one, a small schema with
// its validator, a module and two configs built with it under source/,
// the ignore file for cfg's caches, and the configs compiled, ready for
// cfg commit.
//
// It writes no file that exists: a directory that already holds a config
// repository is refused (*ExistsError), before anything is written.
package starter

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
)

//go:embed template
var template embed.FS

// IgnoreFile is the git ignore file Init writes, or adds IgnoreLine to.
const IgnoreFile = ".gitignore"

// IgnoreLine keeps cfg's local caches (repo.CacheDir) out of git.
const IgnoreLine = "/" + repo.CacheDir + "/"

// Result is what Init did.
type Result struct {
	Dir     string // the config repository, absolute
	GitTop  string // the git work tree holding it, absolute
	GitMade bool   // Init made the git repository
	// Files are the files Init wrote, relative to Dir, sorted: the
	// sources, the materialized configs, and IgnoreFile when Init made
	// it or added IgnoreLine to it.
	Files []string
	// Configs are the names of the configs compiled.
	Configs []string
}

// An ExistsError reports a directory that already holds (part of) a
// config repository: Init writes over nothing.
type ExistsError struct {
	Dir   string
	Paths []string // the entries found, relative to Dir
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s already holds %s: cfg init makes a new config repository and writes over nothing; run it in a directory without these",
		e.Dir, strings.Join(e.Paths, ", "))
}

// owned are the entries of a config repository; Init refuses a
// directory holding any of them.
var owned = []string{repo.SourceDir, repo.MaterializedDir, repo.SettingsFile, repo.CacheDir}

// Init makes a config repository in dir, which it makes if it does not
// exist. opts are those of the compile.
func Init(ctx context.Context, dir string, opts compiler.Options) (*Result, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	var found []string
	for _, name := range owned {
		if _, err := os.Lstat(filepath.Join(abs, name)); err == nil {
			if name != repo.SettingsFile {
				name += "/"
			}
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if len(found) > 0 {
		return nil, &ExistsError{Dir: dir, Paths: found}
	}
	ignore, isNew, err := ignoreContent(filepath.Join(abs, IgnoreFile))
	if err != nil {
		return nil, err
	}

	res := &Result{Dir: abs}
	if res.GitTop, res.GitMade, err = gitrepo.Init(abs); err != nil {
		return nil, err
	}
	err = fs.WalkDir(template, "template", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := template.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "template/")
		res.Files = append(res.Files, rel)
		return writeNew(filepath.Join(abs, filepath.FromSlash(rel)), data)
	})
	if err != nil {
		return nil, err
	}
	if ignore != nil {
		p := filepath.Join(abs, IgnoreFile)
		if isNew {
			err = writeNew(p, ignore) // exclusively: a link made meanwhile is not followed
		} else {
			err = os.WriteFile(p, ignore, 0o644)
		}
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, IgnoreFile)
	}

	build, err := compiler.Build(ctx, abs, opts)
	if err != nil {
		return nil, err
	}
	if d := build.Diags(); len(d) > 0 {
		return nil, fmt.Errorf("compiling the new repository: %w", d)
	}
	res.Files = append(res.Files, build.Written...)
	for _, o := range build.Outputs {
		res.Configs = append(res.Configs, o.Name)
	}
	slices.Sort(res.Files)
	slices.Sort(res.Configs)
	return res, nil
}

// ignoreContent returns what the ignore file at p must hold to ignore
// cfg's caches, or nil if it already does, and whether the file is new. An
// existing file keeps its lines; IgnoreLine is added at its end. A link at
// p is a *repo.LinkError: Init follows none, so that it writes nothing
// outside dir.
func ignoreContent(p string) (data []byte, isNew bool, err error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte("# cfg's local caches\n" + IgnoreLine + "\n"), true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(p)
		return nil, false, &repo.LinkError{Path: IgnoreFile, Target: target}
	}
	if !fi.Mode().IsRegular() {
		return nil, false, &fs.PathError{Op: "read", Path: IgnoreFile, Err: repo.ErrNotRegular}
	}
	if data, err = os.ReadFile(p); err != nil {
		return nil, false, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		switch strings.TrimSpace(line) {
		case IgnoreLine, repo.CacheDir, repo.CacheDir + "/", "/" + repo.CacheDir:
			return nil, false, nil
		}
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		data = append(data, '\n')
	}
	return append(data, IgnoreLine+"\n"...), false, nil
}

// writeNew writes a file that must not exist, making its directory.
func writeNew(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
