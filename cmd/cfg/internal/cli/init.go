package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/starter"
)

// InitOptions are the inputs of cfg init.
type InitOptions struct {
	Dir string
	CompileFlags
}

func newInitCmd(f *Factory, runF func(*InitOptions) error) *cobra.Command {
	opts := &InitOptions{}
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Start a config repository: a schema, a validator, a module and two configs, compiled",
		Long: `Init makes a new config repository in DIR (default: the working directory,
or --root), making DIR if needed:

  source/schemas/greeter.thrift              the Greeter schema (Thrift IDL)
  source/schemas/greeter.thrift-cvalidator   checks run on every Greeter value
  source/lib/greeter.cinc                    greeter(...), the module both configs use
  source/app/greeter.cconf                   the config app/greeter
  source/app/greeter_fr.cconf                the config app/greeter_fr
  materialized_configs/                      both configs compiled
  .gitignore                                 keeps cfg's caches (.cfg/) out of git

DIR becomes a git repository (branch main) unless it is already inside one;
the new files are left uncommitted, ready for cfg commit. An existing
.gitignore keeps its lines and gets /.cfg/ added. Init writes over nothing:
a DIR that already holds source/, materialized_configs/, cfg.json or .cfg/
is refused (exit 2) before anything is written.`,
		Example: `  cfg init myconfigs
  cd myconfigs && cfg commit -m "first configs"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("init takes at most one DIR, got %d arguments", len(args)))
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveFilterDirs
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, _ := cmd.Flags().GetString("root")
			switch {
			case len(args) == 1 && root != "":
				return usageError(errors.New("give DIR or --root, not both"))
			case len(args) == 1:
				opts.Dir = args[0]
			case root != "":
				opts.Dir = root
			default:
				opts.Dir = "."
			}
			if runF != nil {
				return runF(opts)
			}
			return runInit(f, cmd, opts)
		},
	}
	addRootFlag(cmd, "the directory to make the repository in (like DIR)")
	opts.CompileFlags.add(cmd)
	return cmd
}

func runInit(f *Factory, cmd *cobra.Command, opts *InitOptions) error {
	cwd, err := f.Getwd()
	if err != nil {
		return infraError(err)
	}
	dir := opts.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(cwd, dir)
	}
	res, err := starter.Init(cmd.Context(), dir, opts.options(f))
	var ee *starter.ExistsError
	if errors.As(err, &ee) {
		ee.Dir = opts.Dir
		return usageError(err)
	}
	if err != nil {
		// A link in DIR is refused like one in a repository (exit 1).
		return (&workspace{root: dir, cwd: cwd}).fail(err)
	}
	ws := &workspace{root: res.Dir, cwd: cwd}
	shown := ws.display(".")
	if res.GitMade {
		fmt.Fprintf(f.IO.Out, "made a git repository in %s (branch main)\n", shown)
	} else {
		fmt.Fprintf(f.IO.Out, "in the git repository of %s\n", res.GitTop)
	}
	fmt.Fprintf(f.IO.Out, "wrote %s, %s compiled:\n", plural(len(res.Files), "file"), plural(len(res.Configs), "config"))
	for _, p := range res.Files {
		fmt.Fprintf(f.IO.Out, "  %s\n", ws.display(p))
	}
	next := `cfg commit -m "first configs"`
	if shown != "." {
		next = "cd " + shellWords(ws, []string{"."}) + " && " + next
	}
	fmt.Fprintf(f.IO.Out, "next: %s\n", next)
	return nil
}
