package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/configdiff"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/validate"
)

// DiffOptions are the inputs of cfg diff.
type DiffOptions struct {
	Rev    string // "" means HEAD
	Format string
	CompileFlags
}

func newDiffCmd(f *Factory, runF func(*DiffOptions) error) *cobra.Command {
	opts := &DiffOptions{}
	cmd := &cobra.Command{
		Use:   "diff [REV]",
		Short: "Show how the compiled configs differ from a git revision, field by field",
		Long: `Diff compiles every config of the working tree in memory (writing nothing)
and compares the results with the materialized configs committed at REV
(default HEAD), for review. It lists the configs added (+), removed (-) and
changed (~), and under a changed config each field that changed, with its
path inside the value and the old and new values:

  ~ feed/cache_job
    resources.memory_mb: 2048 -> 4096
    tags[2]: added "x"
  + new/config
  - removed/config

Values are compared, not text: a config whose value is the same is not
listed. Raw configs are compared line by line. REV is any git revision
(HEAD~1, a branch, a tag, a commit hash). A config that fails to compile is
reported instead, and diff exits 1.`,
		Example: `  cfg diff
  cfg diff HEAD~1 --format json`,
		ValidArgsFunction: cobra.NoFileCompletions,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("diff takes at most one revision, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Rev = args[0]
			}
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runDiff(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	opts.CompileFlags.add(cmd)
	addRootFlag(cmd, "")
	return cmd
}

func runDiff(f *Factory, cmd *cobra.Command, opts *DiffOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	g, err := ws.git()
	if err != nil {
		return err
	}
	rev := opts.Rev
	if rev == "" {
		rev = "HEAD"
	}
	// Before the first commit, HEAD is empty: every config is added.
	var old fs.FS
	commit := ""
	if old, err = g.FS(rev); errors.Is(err, gitrepo.ErrNoCommits) && opts.Rev == "" {
		old, err = nil, nil
	} else if err == nil {
		commit, err = g.Resolve(rev)
	}
	if err != nil {
		return gitError(err)
	}
	rep, err := configdiff.Run(cmd.Context(), ws.root, old, opts.options(f))
	if err != nil {
		return ws.fail(err)
	}
	if len(rep.Diags) > 0 {
		if err := ws.report(f, opts.Format, rep.Diags, nil); err != nil {
			return err
		}
		return inputFailed
	}
	configs := rep.Configs
	if configs == nil {
		configs = []configdiff.Config{}
	}
	for i := range configs {
		configs[i].Path = ws.display(configs[i].Path)
	}
	if opts.Format == validate.FormatJSON {
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(map[string]any{"revision": rev, "commit": commit, "configs": configs}); err != nil {
			return infraError(err)
		}
		return nil
	}
	if err := configdiff.WriteText(f.IO.Out, configs); err != nil {
		return infraError(err)
	}
	counts := map[configdiff.Change]int{}
	for _, c := range configs {
		counts[c.Change]++
	}
	switch len(configs) {
	case 0:
		fmt.Fprintf(f.IO.Err, "no config differs from %s\n", rev)
	default:
		verb := "differ"
		if len(configs) == 1 {
			verb = "differs"
		}
		fmt.Fprintf(f.IO.Err, "%s %s from %s: %d changed, %d added, %d removed\n",
			plural(len(configs), "config"), verb, rev, counts[configdiff.Changed], counts[configdiff.Added], counts[configdiff.Removed])
	}
	return nil
}

// gitError maps an error from gitrepo to an exit code: a revision that
// does not exist or a missing author is the user's to fix (usage); anything
// else is a git failure (infrastructure).
func gitError(err error) error {
	if errors.Is(err, gitrepo.ErrUnknownRevision) || errors.Is(err, gitrepo.ErrNoCommits) || errors.Is(err, gitrepo.ErrNoAuthor) {
		return usageError(err)
	}
	return infraError(err)
}
