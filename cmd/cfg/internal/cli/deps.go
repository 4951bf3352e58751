package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// DepsOptions are the inputs of cfg deps and cfg rdeps.
type DepsOptions struct {
	Path    string
	Reverse bool
	Format  string
}

func newDepsCmd(f *Factory, reverse bool, runF func(*DepsOptions) error) *cobra.Command {
	opts := &DepsOptions{Reverse: reverse}
	cmd := &cobra.Command{
		Use:   "deps PATH",
		Short: "List the files a source file depends on, transitively",
		Long: `Deps lists what a source file depends on, read statically without running
anything: what it loads, transitively, the schemas those include, and the
validator beside every schema reached (its checks run on the schema's values).`,
		Example: `  cfg deps feed/cache_job
  cfg deps //lib/create_job.cinc --format json`,
		ValidArgsFunction: oneArg(completeRefs(f, refSources)),
		Args:              exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runDeps(f, cmd, opts)
		},
	}
	if reverse {
		cmd.Use = "rdeps PATH"
		cmd.Short = "List the files and configs that depend on a source file, transitively"
		cmd.Long = `Rdeps lists the source files that depend on a file, transitively, and the
configs among them: the configs a change to the file recompiles.`
		cmd.Example = `  cfg rdeps lib/create_job.cinc
  cfg rdeps //schemas/job.thrift --format json`
	}
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	addRootFlag(cmd, "")
	return cmd
}

func runDeps(f *Factory, cmd *cobra.Command, opts *DepsOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	r, err := ws.open()
	if err != nil {
		return err
	}
	defer r.Close()
	fsys := r.FS()
	ref, err := resolveIn(ws, fsys, opts.Path, existingFile)
	if err != nil {
		return err
	}
	p := ref.Path
	tree, err := repo.Scan(fsys)
	if err != nil {
		return ws.fail(err)
	}
	g, err := compiler.New(fsys, compiler.Options{}).NewGraph(tree)
	if err != nil {
		return ws.fail(err)
	}
	files := g.Deps(p)
	if opts.Reverse {
		files = g.RDeps(p)
	}
	shown, configs := []string{}, []string{}
	for _, d := range files {
		shown = append(shown, ws.display(d))
		if repo.Classify(d) == repo.Config {
			configs = append(configs, repo.ConfigName(d))
		}
	}
	if opts.Format == validate.FormatJSON {
		// The configs among the files: rdeps only (a file depends on
		// no config).
		out := map[string]any{"path": ws.display(p), "files": shown}
		if opts.Reverse {
			out["configs"] = configs
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for i, d := range files {
		if opts.Reverse && repo.Classify(d) == repo.Config {
			fmt.Fprintf(f.IO.Out, "%s (config %s)\n", shown[i], repo.ConfigName(d))
		} else {
			fmt.Fprintln(f.IO.Out, shown[i])
		}
	}
	return nil
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError(fmt.Errorf("%s takes %d argument(s), got %d", cmd.Name(), n, len(args)))
		}
		return nil
	}
}
