package cli

import (
	"io/fs"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/repo"
)

// Shell completion goes through cobra (cfg completion bash|zsh|fish|
// powershell): config names, source files, spec names and the values of
// flags that take one of a few.

// completeFormats completes the values of every --format flag under
// cmd: the formats its usage lists after the colon ("output format: text,
// json or github").
func completeFormats(cmd *cobra.Command) {
	if fl := cmd.Flags().Lookup("format"); fl != nil {
		_, list, _ := strings.Cut(fl.Usage, ": ")
		formats := strings.FieldsFunc(strings.ReplaceAll(list, " or ", ", "), func(r rune) bool { return r == ',' || r == ' ' })
		cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	}
	for _, sub := range cmd.Commands() {
		completeFormats(sub)
	}
}

// What completeRefs offers.
const (
	refConfigs = iota // config and raw config names
	refSources        // those, and every other source file as a // path
	refSchemas        // schemas as // paths followed by ':', for --type
)

// completeRefs completes references to what the repository of the
// command (its --root, or the working directory's) holds. It offers
// nothing outside a repository; references are also accepted in the forms
// it does not offer (repo.Resolve), and with refSources the shell
// completes file names when nothing matches.
func completeRefs(f *Factory, what int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		none := cobra.ShellCompDirectiveNoFileComp
		if what == refSources {
			none = cobra.ShellCompDirectiveDefault
		}
		var out []string
		add := func(c string) {
			if strings.HasPrefix(c, toComplete) && !slices.Contains(args, c) {
				out = append(out, c)
			}
		}
		err := inRepo(f, cmd, func(fsys fs.FS) error {
			tree, err := repo.Scan(fsys)
			if err != nil {
				return err
			}
			switch what {
			case refSchemas:
				for _, p := range tree.Schemas {
					add("//" + strings.TrimPrefix(p, repo.SourceDir+"/") + ":")
				}
				return nil
			case refSources:
				for _, l := range [][]string{tree.Modules, tree.Schemas, tree.Validators} {
					for _, p := range l {
						add("//" + strings.TrimPrefix(p, repo.SourceDir+"/"))
					}
				}
			}
			for _, p := range append(slices.Clone(tree.Configs), tree.Raw...) {
				add(repo.ConfigName(p))
			}
			return nil
		})
		if err != nil || len(out) == 0 {
			return nil, none
		}
		slices.Sort(out)
		if what == refSchemas {
			return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// oneArg completes the first argument with fn, and nothing after it.
func oneArg(fn cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return fn(cmd, args, toComplete)
	}
}

// completeSpecs completes the names of the compiled configs that are
// canary specs (materialized_configs/.types.json).
func completeSpecs(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []string
		inRepo(f, cmd, func(fsys fs.FS) error {
			data, err := fs.ReadFile(fsys, repo.TypesFile)
			if err != nil {
				return err
			}
			types, err := repo.DecodeTypes(data)
			for name, t := range types {
				if t == canary.SpecType && strings.HasPrefix(name, toComplete) {
					out = append(out, name)
				}
			}
			return err
		})
		slices.Sort(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// inRepo calls fn with the command's repository.
func inRepo(f *Factory, cmd *cobra.Command, fn func(fs.FS) error) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	r, err := repo.Open(ws.root)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r.FS())
}
