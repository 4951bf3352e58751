package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
	"github.com/cfg-dev/cfg/wire"
)

// CanaryOptions are the inputs of cfg canary.
type CanaryOptions struct {
	Spec      string
	Repo      string
	Seed      uint64
	SeedSet   bool
	Format    string
	Daemon    string
	TokenFile string
	Message   string
	Author    string
	CompileFlags
}

func newCanaryCmd(f *Factory, runF func(*CanaryOptions) error) *cobra.Command {
	opts := &CanaryOptions{}
	cmd := &cobra.Command{
		Use:   "canary --spec SPEC_CONFIG",
		Short: "Try the working tree's change on a few hosts, then roll it back or land it",
		Long: `Canary compiles and validates the working tree (as cfg commit does), takes
the change to the config the spec names as the candidate, and runs the spec's
phases against the hosts subscribed to that config: each phase pushes the
candidate to its canary hosts as an override under a lease, verifies they
applied it, and compares their metrics with control hosts still on the
committed config every scrape interval, printing a line per evaluation.

If a check fails (its breach lasts breach_seconds), or on Ctrl-C, the
override is removed and canary waits until every canary host serves the
committed revision again; it then exits 1. If every phase passes, it commits
the change (as cfg commit does), waits for the daemon to publish it and the
canary hosts to apply it, removes the override and exits 0. If canary itself
dies, the override's lease runs out and the hosts revert by themselves.

SPEC_CONFIG is the spec's config name (canary/feed) or its source file
(source/canary/feed.cconf); it must export a CanarySpec
(load("@cfg//canary.thrift", ...)). The working tree may change only the
canaried config and the spec. Hosts are chosen from --seed (random if not
given; the report prints it so that a run can be repeated). Every run is
recorded by the daemon: see cfg canary history.`,
		Example: `  cp changes/bad.cconf source/demo/service.cconf
  cfg canary --spec demo/canary --daemon http://127.0.0.1:7480`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Spec == "" {
				return usageError(errors.New("--spec SPEC_CONFIG is required"))
			}
			opts.SeedSet = cmd.Flags().Changed("seed")
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if opts.Author != "" {
				if _, err := gitrepo.ParseSignature(opts.Author); err != nil {
					return usageError(fmt.Errorf("--author: %w", err))
				}
			}
			if opts.Repo != "" {
				cmd.Flags().Set("root", opts.Repo)
			}
			if runF != nil {
				return runF(opts)
			}
			return runCanary(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Spec, "spec", "", "the canary spec: a config name or its .cconf file (required)")
	cmd.Flags().StringVar(&opts.Repo, "repo", "", "the config repository (default: --root, or found from the working directory)")
	cmd.Flags().Uint64Var(&opts.Seed, "seed", 0, "seed of the choice of canary and control hosts (default: random)")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "report format: text or json")
	cmd.Flags().StringVar(&opts.Daemon, "daemon", "http://127.0.0.1:7480", "the daemon's URL")
	cmd.Flags().StringVar(&opts.TokenFile, "token-file", "", "file whose first line is the daemon's token (default: $CFG_TOKEN)")
	cmd.Flags().StringVarP(&opts.Message, "message", "m", "", `the message of the commit that lands the change (default: "canary: land CONFIG")`)
	cmd.Flags().StringVar(&opts.Author, "author", "", `the commit author, "Name <email>" (default: as cfg commit)`)
	opts.CompileFlags.add(cmd)
	cmd.AddCommand(newCanaryHistoryCmd(f))
	return cmd
}

func runCanary(f *Factory, cmd *cobra.Command, opts *CanaryOptions) error {
	ctx := cmd.Context()
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
	token, err := readToken(opts.TokenFile)
	if err != nil {
		return err
	}
	d, err := canary.NewDaemon(opts.Daemon, token)
	if err != nil {
		return usageError(fmt.Errorf("--daemon: %w", err))
	}
	text := opts.Format == validate.FormatText

	// Compile and validate the working tree, as cfg commit does.
	if err := buildAndValidate(f, cmd, ws, opts.CompileFlags, opts.Format, map[string]any{"canary": nil}); err != nil {
		return err
	}

	// The spec and the candidate, read following no link.
	rp, err := ws.open()
	if err != nil {
		return err
	}
	defer rp.Close()
	materialized := rp.FS()
	typesData, err := fs.ReadFile(materialized, repo.TypesFile)
	if err != nil {
		return ws.fail(err)
	}
	types, err := repo.DecodeTypes(typesData)
	if err != nil {
		return infraError(err)
	}
	specName := specConfigName(ws, opts.Spec)
	if types[specName] != canary.SpecType {
		if types[specName] == "" {
			return usageError(fmt.Errorf("--spec %s: no compiled config %q in %s", opts.Spec, specName, ws.display(repo.MaterializedDir)))
		}
		return usageError(fmt.Errorf("--spec %s: config %q is a %s, not a %s", opts.Spec, specName, types[specName], canary.SpecType))
	}
	specData, err := fs.ReadFile(materialized, repo.MaterializedDir+"/"+specName+".json")
	if err != nil {
		return ws.fail(err)
	}
	spec, err := canary.ParseSpec(specData)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", specName, err, inputFailed)
	}

	changes, err := g.WorkingChanges()
	if err != nil {
		return infraError(err)
	}
	changes = slices.DeleteFunc(changes, func(c gitrepo.Change) bool { return !committable(c.Path) })
	candidatePath, compiled, changedOthers := "", false, []string{}
	for _, c := range changes {
		name, isCompiled, ok := repo.MaterializedName(c.Path)
		switch {
		case !ok:
		case name == spec.Config:
			candidatePath, compiled = c.Path, isCompiled
		case name != specName:
			changedOthers = append(changedOthers, name)
		}
	}
	if candidatePath == "" {
		fmt.Fprintf(f.IO.Err, "nothing to canary: %s compiles to what is committed\n", spec.Config)
		return inputFailed
	}
	if len(changedOthers) > 0 {
		fmt.Fprintf(f.IO.Err, "the working tree also changes %s: a canary tries one config; commit or revert the others first\n", strings.Join(changedOthers, ", "))
		return inputFailed
	}
	data, err := fs.ReadFile(materialized, candidatePath)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(f.IO.Err, "the working tree deletes %s: a canary tries a new version of a config, not its deletion\n", spec.Config)
		return inputFailed
	}
	if err != nil {
		return infraError(err)
	}

	seed := opts.Seed
	if !opts.SeedSet {
		seed = rand.Uint64() >> 1
	}
	message := opts.Message
	if message == "" {
		message = "canary: land " + spec.Config
	}
	id := fmt.Sprintf("canary-%s-%04x", time.Now().UTC().Format("20060102T150405"), rand.N(1<<16))
	paths := gitrepo.Paths(changes)
	rep, err := canary.Run(ctx, canary.Options{
		ID:        id,
		SpecName:  specName,
		Spec:      spec,
		Candidate: canary.Candidate{Type: types[spec.Config], Compiled: compiled, Data: data},
		Daemon:    d,
		Seed:      seed,
		Land: func(_ context.Context) (string, error) {
			return g.Commit(paths, gitrepo.CommitOptions{Message: message + "\n\nCanary " + id + " passed.", Author: &author})
		},
		Progress: func(line string) {
			if text {
				fmt.Fprintf(f.IO.Err, "%s %s\n", time.Now().Format("15:04:05"), line)
			}
		},
	})
	if rep == nil {
		var pe *canary.PlanError
		if errors.As(err, &pe) {
			fmt.Fprintf(f.IO.Err, "cannot choose hosts: %v\n", err)
			return inputFailed
		}
		return infraError(err)
	}
	if text {
		rep.WriteText(f.IO.Out)
	} else {
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		enc.Encode(rep)
	}
	switch {
	case err != nil:
		return infraError(err)
	case rep.Outcome == canary.Landed:
		return nil
	case rep.Outcome == canary.RolledBack:
		return inputFailed
	default:
		return infraError(errors.New(rep.Reason))
	}
}

// specConfigName turns --spec into a config name: a .cconf file's name
// relative to source/, or the argument itself.
func specConfigName(ws *workspace, spec string) string {
	if !strings.HasSuffix(spec, ".cconf") {
		return spec
	}
	abs := spec
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(ws.cwd, spec)
	}
	if rel, err := filepath.Rel(ws.root, abs); err == nil {
		return repo.ConfigName(filepath.ToSlash(rel))
	}
	return spec
}

func newCanaryHistoryCmd(f *Factory) *cobra.Command {
	var daemonURL, format string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the canary runs the daemon recorded",
		Long: `History lists every canary run the daemon recorded, oldest first: its id,
config, spec, status (running, landed, rolled_back, abandoned when its lease
ran out while it ran, failed), start time, duration and landed commit. With
--format json it prints the runs with their full reports.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			d, err := canary.NewDaemon(daemonURL, "")
			if err != nil {
				return usageError(fmt.Errorf("--daemon: %w", err))
			}
			runs, err := d.Runs(cmd.Context())
			if err != nil {
				return infraError(err)
			}
			if format == validate.FormatJSON {
				enc := json.NewEncoder(f.IO.Out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(runs)
			}
			printRuns(f, runs)
			return nil
		},
	}
	cmd.Flags().StringVar(&daemonURL, "daemon", "http://127.0.0.1:7480", "the daemon's URL")
	cmd.Flags().StringVar(&format, "format", validate.FormatText, "output format: text or json")
	return cmd
}

func printRuns(f *Factory, runs []wire.Run) {
	if len(runs) == 0 {
		fmt.Fprintln(f.IO.Err, "no canary runs recorded")
		return
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tCONFIG\tSPEC\tSTATUS\tSTARTED\tDURATION\tCOMMIT")
	for _, r := range runs {
		dur := "-"
		if !r.Ended.IsZero() {
			dur = r.Ended.Sub(r.Started).Round(time.Second).String()
		}
		commit := r.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Config, r.Spec, r.Status, r.Started.Local().Format(time.DateTime), dur, commit)
	}
	tw.Flush()
}
