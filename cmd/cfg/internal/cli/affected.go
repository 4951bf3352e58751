package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// AffectedOptions are the inputs of cfg affected.
type AffectedOptions struct {
	Since  string
	Format string
}

func newAffectedCmd(f *Factory, runF func(*AffectedOptions) error) *cobra.Command {
	opts := &AffectedOptions{}
	cmd := &cobra.Command{
		Use:   "affected",
		Short: "List the configs affected by changed files",
		Long: `Affected maps the files changed under source/ to the configs they affect:
a changed config or raw config itself, and every config that depends on a
changed module, schema or validator (see cfg rdeps). Changes are those of
the working tree against HEAD (uncommitted changes, untracked files
included), or with --since REV those committed in REV..HEAD. Deleted
configs are listed as deleted.`,
		Example: `  cfg affected
  cfg affected --since HEAD~3 --format json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("affected takes no arguments"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runAffected(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Since, "since", "", "list the configs affected by the commits in REV..HEAD")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	addRootFlag(cmd, "")
	return cmd
}

type affectedConfig struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Deleted bool   `json:"deleted,omitempty"`
}

func runAffected(f *Factory, cmd *cobra.Command, opts *AffectedOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	g, err := ws.git()
	if err != nil {
		return err
	}
	var changes []gitrepo.Change
	if opts.Since != "" {
		changes, err = g.ChangesSince(opts.Since)
	} else {
		changes, err = g.WorkingChanges()
	}
	if err != nil {
		return gitError(err)
	}
	var changed []string
	var out []affectedConfig
	for _, c := range changes {
		if !strings.HasPrefix(c.Path, repo.SourceDir+"/") {
			continue
		}
		changed = append(changed, c.Path)
		if k := repo.Classify(c.Path); c.Kind == gitrepo.Deleted && (k == repo.Config || k == repo.Raw) {
			out = append(out, affectedConfig{Name: repo.ConfigName(c.Path), Source: ws.display(c.Path), Deleted: true})
		}
	}
	r, err := ws.open()
	if err != nil {
		return err
	}
	defer r.Close()
	fsys := r.FS()
	tree, err := repo.Scan(fsys)
	if err != nil {
		return ws.fail(err)
	}
	graph, err := compiler.New(fsys, compiler.Options{}).NewGraph(tree)
	if err != nil {
		return ws.fail(err)
	}
	for _, p := range graph.Affected(changed) {
		out = append(out, affectedConfig{Name: repo.ConfigName(p), Source: ws.display(p)})
	}
	slices.SortFunc(out, func(a, b affectedConfig) int { return strings.Compare(a.Name, b.Name) })
	if opts.Format == validate.FormatJSON {
		for i := range changed {
			changed[i] = ws.display(changed[i])
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"changed": append([]string{}, changed...), "configs": append([]affectedConfig{}, out...)})
	}
	for _, c := range out {
		if c.Deleted {
			fmt.Fprintf(f.IO.Out, "%s (deleted)\n", c.Name)
		} else {
			fmt.Fprintln(f.IO.Out, c.Name)
		}
	}
	if len(out) == 0 {
		what, where := "uncommitted change", ""
		if opts.Since != "" {
			what, where = "change", " in "+opts.Since+"..HEAD"
		}
		if len(changed) == 0 {
			fmt.Fprintf(f.IO.Err, "no config affected: no %s under %s/%s\n", what, repo.SourceDir, where)
		} else {
			fmt.Fprintf(f.IO.Err, "no config affected by the %s under %s/%s\n", plural(len(changed), what), repo.SourceDir, where)
		}
	}
	return nil
}
