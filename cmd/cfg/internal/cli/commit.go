package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// CommitOptions are the inputs of cfg commit.
type CommitOptions struct {
	Message string
	Author  string // "Name <email>"; "" means from the environment or git config
	Format  string
	CompileFlags
}

func newCommitCmd(f *Factory, runF func(*CommitOptions) error) *cobra.Command {
	opts := &CommitOptions{}
	cmd := &cobra.Command{
		Use:   "commit -m MESSAGE",
		Short: "Compile, validate, and commit sources and materialized configs in one git commit",
		Long: `Commit compiles every config (as cfg compile does, writing
materialized_configs/), validates the repository (as cfg validate does), and
makes one git commit of every changed file under source/ and
materialized_configs/: new, modified and deleted sources, and the
materialized configs the compile wrote or removed. On any compile or
validation problem nothing is committed and commit exits 1.

Nothing else is committed: files elsewhere in the git work tree, and changes
already staged for other files, stay as they are (files whose names start
with a dot, which cfg ignores, are left out too). It works in a repository
without commits. It prints the new commit's hash and the files committed.

The author is --author, or CFG_AUTHOR_NAME and CFG_AUTHOR_EMAIL, or
GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, or user.name and user.email from the
git configuration. Materialized configs are written and committed in the
encodings the repository publishes (cfg.json), and cfg.json is committed
with them.`,
		Example: `  cfg commit -m "feed: raise cache memory to 4 GiB"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("commit takes no arguments (the message goes in -m)"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(opts.Message) == "" {
				return usageError(errors.New("a commit message is required: -m MESSAGE"))
			}
			if opts.Author != "" {
				if _, err := gitrepo.ParseSignature(opts.Author); err != nil {
					return usageError(fmt.Errorf("--author: %w", err))
				}
			}
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runCommit(f, cmd, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Message, "message", "m", "", "the commit message")
	cmd.Flags().StringVar(&opts.Author, "author", "", `the commit author, "Name <email>"`)
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	opts.CompileFlags.add(cmd)
	addRootFlag(cmd, "")
	return cmd
}

func runCommit(f *Factory, cmd *cobra.Command, opts *CommitOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	g, err := ws.git()
	if err != nil {
		return err
	}
	author, err := commitAuthor(g, opts.Author)
	if err != nil {
		return err
	}
	text := opts.Format == validate.FormatText

	if err := buildAndValidate(f, cmd, ws, opts.CompileFlags, opts.Format, map[string]any{"commit": nil}); err != nil {
		if errors.Is(err, inputFailed) && text {
			fmt.Fprintln(f.IO.Err, "nothing committed")
		}
		return err
	}

	changes, err := g.WorkingChanges()
	if err != nil {
		return infraError(err)
	}
	changes = slices.DeleteFunc(changes, func(c gitrepo.Change) bool { return !committable(c.Path) })
	hash := ""
	if len(changes) > 0 {
		hash, err = g.Commit(gitrepo.Paths(changes), gitrepo.CommitOptions{Message: opts.Message, Author: &author})
		if errors.Is(err, gitrepo.ErrNothingToCommit) {
			changes, err = nil, nil
		}
		if err != nil {
			return gitError(err)
		}
	}

	if !text {
		files := []gitrepo.Change{}
		for _, c := range changes {
			files = append(files, gitrepo.Change{Path: ws.display(c.Path), Kind: c.Kind})
		}
		out := map[string]any{"commit": hash, "files": files}
		if hash == "" {
			out["commit"] = nil
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return infraError(err)
		}
		return nil
	}
	if hash == "" {
		fmt.Fprintf(f.IO.Err, "nothing to commit: %s/ and %s/ match HEAD\n", repo.SourceDir, repo.MaterializedDir)
		return nil
	}
	subject, _, _ := strings.Cut(strings.TrimSpace(opts.Message), "\n")
	fmt.Fprintf(f.IO.Out, "committed %s: %s\n", hash, subject)
	for _, c := range changes {
		fmt.Fprintf(f.IO.Out, "  %s %s\n", c.Kind.Letter(), ws.display(c.Path))
	}
	return nil
}

// commitAuthor returns the author of a commit cfg makes: flag ("Name
// <email>", already checked), or else the identity from the environment
// or the git configuration (gitrepo.Repo.Identity).
func commitAuthor(g *gitrepo.Repo, flag string) (gitrepo.Signature, error) {
	if flag != "" {
		return gitrepo.ParseSignature(flag)
	}
	author, err := g.Identity()
	if err != nil {
		return gitrepo.Signature{}, gitError(fmt.Errorf("%w, or pass --author \"Name <email>\"", err))
	}
	return author, nil
}

// buildAndValidate compiles the workspace as cfg compile does (writing
// materialized_configs/ in the encodings the repository publishes), then
// validates it as cfg validate does. It reports any problem in format,
// the JSON report carrying extra, and then returns inputFailed.
func buildAndValidate(f *Factory, cmd *cobra.Command, ws *workspace, flags CompileFlags, format string, extra map[string]any) error {
	copts := flags.options(f)
	prog := newProgress(f.IO.Err, f.IO.ErrIsTTY && format == validate.FormatText)
	copts.Progress = prog.update
	res, err := compiler.Build(cmd.Context(), ws.root, copts)
	prog.done()
	if err != nil {
		return ws.fail(err)
	}
	if res.Failed > 0 {
		if err := ws.report(f, format, res.Diags(), extra); err != nil {
			return err
		}
		return inputFailed
	}
	copts.Progress = nil
	rep, err := validate.Run(cmd.Context(), ws.root, copts)
	if err != nil {
		return ws.fail(err)
	}
	if len(rep.Diags) > 0 {
		if err := ws.report(f, format, rep.Diags, extra); err != nil {
			return err
		}
		return inputFailed
	}
	return nil
}

// committable reports whether cfg commit commits the file at p (relative to
// the config repository root): a file under source/ or
// materialized_configs/ whose path has no name starting with a dot, the
// record of the configs' types (repo.TypesFile) and the repository's
// settings (repo.SettingsFile).
func committable(p string) bool {
	if p == repo.TypesFile || p == repo.SettingsFile {
		return true
	}
	dir, _, _ := strings.Cut(p, "/")
	if dir != repo.SourceDir && dir != repo.MaterializedDir {
		return false
	}
	for _, name := range strings.Split(p, "/") {
		if strings.HasPrefix(name, ".") {
			return false
		}
	}
	return true
}
