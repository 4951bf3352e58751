package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/internal/gcpolicy"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// workspace is the repository a command works on and the directory the
// user runs it from; diagnostics are printed relative to the latter.
type workspace struct {
	root string // absolute repository root
	cwd  string
}

// addRootFlag gives cmd the --root flag. Only the commands that work on a
// config repository have it: where it would mean nothing, it is not
// offered.
func addRootFlag(cmd *cobra.Command, usage string) {
	if usage == "" {
		usage = "config repository root (default: the first directory holding source/ at or above the working directory)"
	}
	cmd.Flags().String("root", "", usage)
	cmd.MarkFlagDirname("root")
}

func findWorkspace(f *Factory, cmd *cobra.Command) (*workspace, error) {
	cwd, err := f.Getwd()
	if err != nil {
		return nil, infraError(err)
	}
	root, _ := cmd.Flags().GetString("root")
	if root == "" {
		root, err = repo.FindRoot(cwd)
		if err != nil {
			return nil, usageError(err)
		}
	} else {
		if !filepath.IsAbs(root) {
			root = filepath.Join(cwd, root)
		}
		if fi, err := os.Stat(filepath.Join(root, repo.SourceDir)); err != nil || !fi.IsDir() {
			return nil, usageError(fmt.Errorf("--root %s: not a config repository (no %s/ directory)", root, repo.SourceDir))
		}
	}
	return &workspace{root: filepath.Clean(root), cwd: cwd}, nil
}

// display turns a repository-relative path into one relative to the
// working directory.
func (w *workspace) display(p string) string {
	abs := filepath.Join(w.root, filepath.FromSlash(p))
	if rel, err := filepath.Rel(w.cwd, abs); err == nil {
		return rel
	}
	return abs
}

// repoPath turns a command-line path into a repository-relative one.
func (w *workspace) repoPath(arg string) (string, error) {
	abs := arg
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(w.cwd, arg)
	}
	rel, err := filepath.Rel(w.root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is outside the config repository %s", arg, w.root)
	}
	return filepath.ToSlash(rel), nil
}

// What a command takes where it takes a config or source file.
type refKind int

const (
	existingFile refKind = iota // a source file that exists
	fileOrDir                   // or a directory, for the configs under it (cfg compile)
	anyConfig                   // a config, which may be gone from the working tree (its name)
)

// resolve reads a reference to a config or source file (repo.Resolve) as
// a command taking kind does: a reference to nothing, or to a directory
// where kind is not fileOrDir, is a usage error, except that for
// anyConfig the Ref of a well-formed reference to nothing holds the config
// name it would have.
func (w *workspace) resolve(ref string, kind refKind) (repo.Ref, error) {
	r, err := w.open()
	if err != nil {
		return repo.Ref{}, err
	}
	defer r.Close()
	return resolveIn(w, r.FS(), ref, kind)
}

func resolveIn(w *workspace, fsys fs.FS, ref string, kind refKind) (repo.Ref, error) {
	var root, cwd string
	if w != nil {
		root, cwd = w.root, w.cwd
	}
	res, err := repo.Resolve(fsys, root, cwd, ref)
	var re *repo.RefError
	switch {
	case err == nil && res.Dir && kind != fileOrDir:
		return repo.Ref{}, usageError(&repo.RefError{Ref: ref, Problem: "a directory"})
	case err == nil:
		return res, nil
	case kind == anyConfig && errors.Is(err, fs.ErrNotExist) && res.Name != "":
		return res, nil
	case errors.As(err, &re):
		return repo.Ref{}, usageError(err)
	case w != nil:
		return repo.Ref{}, w.fail(err)
	}
	return repo.Ref{}, infraError(err)
}

// configName reads a reference to a config for the commands that ask a
// daemon or an agent (cfg get, cfg status), which need no repository: in
// one, it is resolved like every reference (repo.Resolve); outside one,
// a config name or a // path is taken as it is.
func configName(f *Factory, ref string) (string, error) {
	cwd, err := f.Getwd()
	if err != nil {
		return "", infraError(err)
	}
	var w *workspace
	var fsys fs.FS
	if root, err := repo.FindRoot(cwd); err == nil {
		if r, err := repo.Open(root); err == nil {
			defer r.Close()
			w, fsys = &workspace{root: root, cwd: cwd}, r.FS()
		}
	}
	res, err := resolveIn(w, fsys, ref, anyConfig)
	if err != nil {
		return "", err
	}
	if res.Name == "" {
		return "", usageError(fmt.Errorf("%q is not a config: %s is a %s", ref, res.Path, kindName(repo.Classify(res.Path))))
	}
	return res.Name, nil
}

// kindName names a kind of source file for messages.
func kindName(k repo.Kind) string {
	switch k {
	case repo.Config:
		return "config"
	case repo.Module:
		return "module"
	case repo.Schema:
		return "schema"
	case repo.Validator:
		return "validator"
	}
	return "raw config"
}

// fail maps an error of reading or writing the repository to an exit code:
// a repository cfg refuses to work in (a symbolic link where it reads or
// writes, a file that is neither regular nor a directory, bad settings) is
// the input's fault (1); anything else is an infrastructure error (3). The
// path of a link is shown relative to the working directory.
func (w *workspace) fail(err error) error {
	var le *repo.LinkError
	var se *repo.SettingsError
	switch {
	case errors.As(err, &le):
		le.Path = w.display(le.Path)
		return &exitError{code: ExitInput, err: err}
	case errors.As(err, &se), errors.Is(err, repo.ErrNotRegular):
		return &exitError{code: ExitInput, err: err}
	}
	return infraError(err)
}

// open opens the config repository for reading and writing (repo.Repo).
func (w *workspace) open() (*repo.Repo, error) {
	r, err := repo.Open(w.root)
	if err != nil {
		return nil, w.fail(err)
	}
	return r, nil
}

// sourcesUnder returns the configs and raw configs under the repository
// directory dir, at any depth.
func (w *workspace) sourcesUnder(dir string) ([]string, error) {
	r, err := repo.Open(w.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tree, err := repo.Scan(r.FS())
	if err != nil {
		return nil, err
	}
	var under []string
	for _, p := range tree.Sources() {
		if dir == "." || strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	return under, nil
}

func (w *workspace) report(f *Factory, format string, diags diag.List, extra map[string]any) error {
	validate.Relativize(diags, w.display)
	out := f.IO.Err
	if format != validate.FormatText {
		out = f.IO.Out
	}
	if err := validate.Write(out, format, diags, f.IO.Color && format == validate.FormatText, extra); err != nil {
		return infraError(err)
	}
	return nil
}

func checkFormat(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return usageError(fmt.Errorf("--format %q: want one of %s", format, strings.Join(allowed, ", ")))
}

// list returns l, or an empty list for nil: JSON output has [] where a
// list is expected, never null.
func list[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// plural formats n with a noun, pluralized with "s".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// CompileFlags are the flags of every command that compiles.
type CompileFlags struct {
	Jobs      int
	MaxSteps  uint64
	MaxMemory byteSize
	Timeout   time.Duration
	progress  func(done, total int) // shows the progress of the compile, if set
}

func (c *CompileFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVarP(&c.Jobs, "jobs", "j", runtime.NumCPU(), "configs compiled in parallel")
	cmd.Flags().Uint64Var(&c.MaxSteps, "max-steps", compiler.DefaultMaxSteps, "Starlark execution step limit per program")
	c.MaxMemory = compiler.DefaultMaxMemory
	cmd.Flags().Var(&c.MaxMemory, "max-memory", "heap limit of the compile (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB); a config that passes it alone fails")
	cmd.Flags().DurationVar(&c.Timeout, "timeout", compiler.DefaultTimeout, "wall time limit per config")
}

// options returns the compiler options the flags ask for, with print()
// going to the command's stderr, and sets the garbage collector for a
// compile (gcpolicy.Compile): every command that compiles asks for them.
func (c *CompileFlags) options(f *Factory) compiler.Options {
	gcpolicy.Compile(uint64(c.MaxMemory))
	return compiler.Options{Jobs: c.Jobs, MaxSteps: c.MaxSteps, MaxMemory: uint64(c.MaxMemory), Timeout: c.Timeout, Stderr: f.IO.Err, Progress: c.progress}
}

// byteSize is a flag holding a size: 4GiB, 512MiB, 1000000.
type byteSize uint64

func (b *byteSize) String() string { return compiler.FormatBytes(uint64(*b)) }
func (b *byteSize) Type() string   { return "size" }
func (b *byteSize) Set(s string) error {
	n, err := compiler.ParseBytes(s)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("got %q, want a size above 0", s)
	}
	*b = byteSize(n)
	return nil
}

// git opens the git repository holding the config repository.
func (w *workspace) git() (*gitrepo.Repo, error) {
	g, err := gitrepo.Open(w.root)
	if err != nil {
		return nil, gitError(err)
	}
	return g, nil
}
