package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// LogOptions are the inputs of cfg log.
type LogOptions struct {
	Name   string
	Limit  int // 0 means all
	Format string
}

func newLogCmd(f *Factory, runF func(*LogOptions) error) *cobra.Command {
	opts := &LogOptions{}
	cmd := &cobra.Command{
		Use:   "log NAME",
		Short: "List the commits that changed a config's materialized output",
		Long: `Log lists the git commits that changed what a config compiles to: the
commits that added, changed or deleted its materialized file, newest first,
with hash, author, date and message. A commit that changed only sources
without changing the output (a refactoring) is not listed.

NAME names a config or raw config as every command does: its name
(feed/cache_job, service/banner.txt), a // path (//feed/cache_job.cconf),
or the path of its source or materialized file from the working directory
(source/feed/cache_job.cconf). A config that no longer exists can be named
too, if git has its history.`,
		Example: `  cfg log feed/cache_job
  cfg log -n 1 --format json feed/cache_job`,
		ValidArgsFunction: oneArg(completeRefs(f, refConfigs)),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("log takes one config NAME, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.Limit < 0 {
				return usageError(fmt.Errorf("--max-count %d: want a number of commits, 0 for all", opts.Limit))
			}
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runLog(f, cmd, opts)
		},
	}
	cmd.Flags().IntVarP(&opts.Limit, "max-count", "n", 0, "list at most N commits (0: all)")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	addRootFlag(cmd, "")
	return cmd
}

func runLog(f *Factory, cmd *cobra.Command, opts *LogOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	name, paths, exists, err := ws.materializedPaths(opts.Name)
	if err != nil {
		return err
	}
	g, err := ws.git()
	if err != nil {
		return err
	}
	commits, err := g.Log(paths, opts.Limit)
	if err != nil {
		return infraError(err)
	}
	if len(commits) == 0 && !exists {
		return usageError(fmt.Errorf("no config or raw config named %q (no source file, no history)", name))
	}
	if opts.Format == validate.FormatJSON {
		if commits == nil {
			commits = []gitrepo.Commit{}
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(map[string]any{"config": name, "commits": commits}); err != nil {
			return infraError(err)
		}
		return nil
	}
	for i, c := range commits {
		if i > 0 {
			fmt.Fprintln(f.IO.Out)
		}
		fmt.Fprintf(f.IO.Out, "commit %s\nAuthor: %s\nDate:   %s\n\n", c.Hash, c.Author, c.Author.When.Format("Mon Jan 2 15:04:05 2006 -0700"))
		for _, line := range strings.Split(c.Message, "\n") {
			if line = strings.TrimRight(line, " \t"); line != "" {
				line = "    " + line
			}
			fmt.Fprintln(f.IO.Out, line)
		}
	}
	if len(commits) == 0 {
		fmt.Fprintf(f.IO.Err, "no commit changed %s\n", name)
	}
	return nil
}

// materializedPaths resolves the argument of cfg log (repo.Resolve): it
// returns the config name, the materialized paths to follow (relative to
// the root), and whether the config exists in the working tree. A config
// gone from the working tree is followed by name, in both the outputs a
// name can have.
func (w *workspace) materializedPaths(arg string) (name string, paths []string, exists bool, err error) {
	ref, err := w.resolve(arg, anyConfig)
	switch {
	case err != nil:
		return "", nil, false, err
	case ref.Path == "":
		return ref.Name, []string{repo.MaterializedDir + "/" + ref.Name + ".json", repo.MaterializedDir + "/" + ref.Name}, false, nil
	case ref.Name == "":
		return "", nil, false, usageError(fmt.Errorf("%s is a %s, not a config: cfg log follows the output of a config or raw config (see cfg rdeps %[1]s for the configs that use it)", arg, kindName(repo.Classify(ref.Path))))
	}
	return ref.Name, []string{repo.MaterializedPath(ref.Path)}, true, nil
}
