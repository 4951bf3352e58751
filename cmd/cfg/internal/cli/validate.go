package cli

import (
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/validate"
)

// ValidateOptions are the inputs of cfg validate.
type ValidateOptions struct {
	CompileFlags
	Format string
	Quiet  bool
}

func newValidateCmd(f *Factory, runF func(*ValidateOptions) error) *cobra.Command {
	opts := &ValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check every config and report drift (CI gate); writes nothing",
		Long: `Validate compiles every config in memory, runs the validators, and compares
the results with materialized_configs/: a materialized file that is missing,
stale, hand-edited or orphaned is reported, and so is a raw config whose
materialized copy differs. It exits 1 on any problem and writes nothing.`,
		Example: `  cfg validate
  cfg validate --root examples/jobs
  cfg validate --format github`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("validate takes no arguments"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON, validate.FormatGitHub); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runValidate(f, cmd, opts)
		},
	}
	opts.CompileFlags.add(cmd)
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text, json or github")
	cmd.Flags().BoolVarP(&opts.Quiet, "quiet", "q", false, "print only problems")
	addRootFlag(cmd, "")
	return cmd
}

func runValidate(f *Factory, cmd *cobra.Command, opts *ValidateOptions) error {
	text := opts.Format == validate.FormatText
	prog := newProgress(f.IO.Err, f.IO.ErrIsTTY && text && !opts.Quiet)
	defer prog.done()
	opts.progress = prog.update
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	r, err := ws.open()
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := validate.Run(cmd.Context(), r.FS(), ws.committed(), opts.options(f))
	if err != nil {
		return ws.fail(err)
	}
	prog.done()
	if err := ws.report(f, opts.Format, rep.Diags, map[string]any{"checked": rep.Checked}); err != nil {
		return err
	}
	if text && !opts.Quiet {
		problems := "no problems"
		if len(rep.Diags) > 0 {
			problems = plural(len(rep.Diags), "problem")
		}
		fmt.Fprintf(f.IO.Err, "%s checked, %s\n", plural(rep.Checked, "config"), problems)
	}
	if len(rep.Diags) > 0 {
		return inputFailed
	}
	return nil
}

// committed returns the config repository as in the git HEAD commit, or
// nil outside git or before the first commit.
func (w *workspace) committed() fs.FS {
	g, err := gitrepo.Open(w.root)
	if err != nil {
		return nil
	}
	fsys, err := g.FS("HEAD")
	if err != nil {
		return nil
	}
	return fsys
}
