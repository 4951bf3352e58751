package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
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
	// AllowReverted tries a candidate again that an earlier run landed
	// and reverted.
	AllowReverted bool
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
candidate to its canary hosts as an override under a lease (renewed until the
override is removed), waits until they report running it, and compares their
metrics with control hosts still on the committed config every scrape
interval, printing a line per evaluation. Each evaluation judges only the
canaries that report running the candidate and the controls that report the
committed config, and names the others; a phase with fewer canaries running
the candidate than it pushed it to, for longer than a scrape interval plus
10 s, fails. A phase that ends with a check in breach goes on until the breach
ends or lasts its breach_seconds.

If a phase fails, or on Ctrl-C, the override is removed and canary waits
until every canary host serves the committed config again; the candidate
stays in the working tree, and canary prints the command that discards it.
If every phase passes, it commits exactly the files it compiled, validated
and canaried at the start (as cfg commit does), on the commit it started
from, waits for the daemon to publish it and the canary hosts to apply it,
and removes the override. If the branch moved meanwhile (a commit made with
git, say), nothing is committed: the change is rolled back as after a
failed phase, and canary says the branch moved and exits 1; run it again.
Edits made to the working tree while canary runs are neither canaried nor
committed; they stay in the working tree, and canary lists them.

If the spec has a bake, canary then watches the whole fleet; if a bake check
fails, it commits a revert on the landing commit (the changed files as they
were before, from git; the working tree, which still holds the candidate, is
not touched) and waits until the fleet runs it, and that candidate is not
canaried again unless --allow-reverted is given. If the branch moved after
the landing, no revert is committed, and canary says so and exits 3. If
canary itself dies, the override's lease runs out and the hosts revert by
themselves.

Exit status: 0 landed; 1 rolled back (a phase failed, the run was
interrupted, or the branch moved before the landing), or the input is wrong;
4 landed, then reverted by the bake; 3 an error ended the run (the report
says how far it got).

SPEC_CONFIG is the spec's config name (canary/feed) or its source file
(source/canary/feed.cconf); it must export a CanarySpec
(load("@cfg//canary.thrift", ...)). The working tree may change only the
canaried config and the spec. Like cfg commit, canary refuses to run while
git is in the middle of a merge, cherry-pick, revert, rebase, am or bisect,
while files have unresolved conflicts, and on a detached HEAD. Hosts are
chosen from --seed (random if not given; the report prints it so that a run
can be repeated). Every run is recorded by the daemon: see cfg canary
history.`,
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
	cmd.RegisterFlagCompletionFunc("spec", completeSpecs(f))
	cmd.Flags().StringVar(&opts.Repo, "repo", "", "the config repository (default: --root, or found from the working directory)")
	cmd.Flags().Uint64Var(&opts.Seed, "seed", 0, "seed of the choice of canary and control hosts (default: random)")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "report format: text or json")
	cmd.Flags().StringVar(&opts.Daemon, "daemon", "http://127.0.0.1:7480", "the daemon's URL")
	cmd.Flags().StringVar(&opts.TokenFile, "token-file", "", "file whose first line is the daemon's token (default: $CFG_TOKEN)")
	cmd.Flags().StringVarP(&opts.Message, "message", "m", "", `the message of the commit that lands the change (default: "canary: land CONFIG")`)
	cmd.Flags().StringVar(&opts.Author, "author", "", `the commit author, "Name <email>" (default: as cfg commit)`)
	cmd.Flags().BoolVar(&opts.AllowReverted, "allow-reverted", false, "canary a candidate that an earlier run landed and reverted")
	opts.CompileFlags.add(cmd)
	cmd.AddCommand(newCanaryHistoryCmd(f))
	addRootFlag(cmd, "")
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

	// Compile and validate the working tree, as cfg commit does, under
	// the commit lock: what is canaried is the change this snapshot makes
	// to base, byte for byte, and it is what lands, on base.
	cand, err := readCandidate(f, cmd, ws, g, opts)
	if err != nil {
		return err
	}
	spec, changes := cand.spec, cand.changes

	seed := opts.Seed
	if !opts.SeedSet {
		seed = rand.Uint64() >> 1
	}
	message := opts.Message
	if message == "" {
		message = "canary: land " + spec.Config
	}
	id := fmt.Sprintf("canary-%s-%04x", time.Now().UTC().Format("20060102T150405"), rand.N(1<<16))
	commits := &canaryCommits{ws: ws, g: g, cand: cand, author: author,
		landMessage: message + "\n\nCanary " + id + " passed.", revertSubject: "canary: revert " + spec.Config, id: id}
	rep, err := canary.Run(ctx, canary.Options{
		ID:            id,
		SpecName:      cand.specName,
		Spec:          spec,
		Candidate:     cand.candidate,
		Daemon:        d,
		Seed:          seed,
		By:            author.String(),
		AllowReverted: opts.AllowReverted,
		Land:          commits.land,
		Revert:        commits.revert,
		Progress: func(line string) {
			if text {
				fmt.Fprintf(f.IO.Err, "%s %s\n", time.Now().Format("15:04:05"), line)
			}
		},
	})
	if rep == nil {
		var pe *canary.PlanError
		var re *canary.RevertedError
		switch {
		case errors.As(err, &pe):
			fmt.Fprintf(f.IO.Err, "cannot choose hosts: %v\n", err)
			return inputFailed
		case errors.As(err, &re):
			fmt.Fprintf(f.IO.Err, "%v: see cfg canary history %s; to canary it again, give --allow-reverted\n", err, re.Run.ID)
			return inputFailed
		}
		return infraError(err)
	}
	out := f.IO.Out
	if text {
		rep.WriteText(out)
	} else {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		enc.Encode(rep)
		out = f.IO.Err
	}
	switch {
	case rep.Commit == "" || rep.Outcome == canary.Reverted:
		fmt.Fprintf(out, "the candidate is still in the working tree; to discard it: %s\n", discardCommand(ws, changes))
	case rep.Outcome == canary.Landed:
		printDiffers(f, "cfg canary", "the landing commit holds what was canaried", worktreeDiffers(f, ws, g))
	}
	switch {
	case err != nil:
		return infraError(err)
	case rep.Outcome == canary.Landed:
		return nil
	case rep.Outcome == canary.RolledBack:
		return inputFailed
	case rep.Outcome == canary.Reverted:
		return revertedExit
	default:
		return infraError(errors.New(rep.Reason))
	}
}

// canaryCandidate is what cfg canary tries: the change the working tree,
// compiled and validated, makes to base.
type canaryCandidate struct {
	base      gitrepo.Head
	spec      canary.Spec
	specName  string
	changes   []gitrepo.File // the changes to base, sorted by path
	candidate canary.Candidate
}

// readCandidate compiles and validates the working tree as cfg commit
// does, under the commit lock, and reads the spec and the candidate from
// the snapshot compiled, which also gives the changes a landing commits.
// It refuses (exit 1) a repository in a state where nothing can be
// committed, and a working tree that changes nothing in the spec's config
// or another config too.
func readCandidate(f *Factory, cmd *cobra.Command, ws *workspace, g *gitrepo.Repo, opts *CanaryOptions) (*canaryCandidate, error) {
	lock, err := lockRepo(f, cmd, g, gitrepo.DefaultLockWait, opts.Format == validate.FormatText)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	base, err := g.Head()
	if err != nil {
		return nil, infraError(err)
	}
	if err := g.CheckState(false); err != nil {
		var se *gitrepo.StateError
		if errors.As(err, &se) {
			return nil, &exitError{code: ExitInput, err: fmt.Errorf("cannot canary: %s", stateMessage(ws, g, se))}
		}
		return nil, gitError(err)
	}
	snap, rep, err := compileAndValidate(f, cmd, ws, g, base, opts.CompileFlags, opts.Format, map[string]any{"canary": nil})
	if err != nil {
		return nil, err
	}
	changes, err := snapshotChanges(g, base, snap)
	if err != nil {
		return nil, infraError(err)
	}

	types, err := readTypes(snap)
	if err != nil {
		return nil, infraError(err)
	}
	specName, err := specConfigName(ws, opts.Spec)
	if err != nil {
		return nil, err
	}
	if types[specName] != canary.SpecType {
		if types[specName] == "" {
			return nil, usageError(fmt.Errorf("--spec %s: no compiled config %q in %s", opts.Spec, specName, ws.display(repo.MaterializedDir)))
		}
		return nil, usageError(fmt.Errorf("--spec %s: config %q is a %s, not a %s", opts.Spec, specName, types[specName], canary.SpecType))
	}
	// A CanarySpec is the struct of @cfg//canary.thrift, whose validators
	// ran, not one of the repository's own with that name.
	if s := rep.Schemas[specName]; s != canary.SpecSchema {
		fmt.Fprintf(f.IO.Err, "--spec %s: config %q: not a %s of %s: its %s is declared in %s\n", opts.Spec, specName, canary.SpecType, canary.SpecSchema, canary.SpecType, s)
		return nil, inputFailed
	}
	specData, err := fs.ReadFile(snap, repo.MaterializedDir+"/"+specName+".json")
	if err != nil {
		return nil, infraError(err)
	}
	spec, err := canary.ParseSpec(specData)
	if err != nil {
		fmt.Fprintf(f.IO.Err, "--spec %s: config %q: %v\n", opts.Spec, specName, err)
		return nil, inputFailed
	}

	// A deleted file is named by the types of the commit that holds it.
	baseTypes, err := committedTypes(g, base, changes)
	if err != nil {
		return nil, err
	}
	var candidate *gitrepo.File
	var compiled bool
	var changedOthers []string
	for i, c := range changes {
		t := types
		if c.Kind == gitrepo.Deleted {
			t = baseTypes
		}
		name, isCompiled, ok := repo.MaterializedConfig(c.Path, t)
		switch {
		case !ok:
		case name == spec.Config:
			candidate, compiled = &changes[i], isCompiled
		case name != specName:
			changedOthers = append(changedOthers, name)
		}
	}
	switch {
	case candidate == nil:
		fmt.Fprintf(f.IO.Err, "nothing to canary: %s compiles to what is committed\n", spec.Config)
		return nil, inputFailed
	case len(changedOthers) > 0:
		fmt.Fprintf(f.IO.Err, "the working tree also changes %s: a canary tries one config; commit or revert the others first\n", strings.Join(changedOthers, ", "))
		return nil, inputFailed
	case candidate.Kind == gitrepo.Deleted:
		fmt.Fprintf(f.IO.Err, "the working tree deletes %s: a canary tries a new version of a config, not its deletion\n", spec.Config)
		return nil, inputFailed
	}
	return &canaryCandidate{base: base, spec: spec, specName: specName, changes: changes,
		candidate: canary.Candidate{Type: types[spec.Config], Compiled: compiled, Data: candidate.Data}}, nil
}

// committedTypes returns the types of the configs that base holds, if
// changes delete a file (nil otherwise, or if base records none).
func committedTypes(g *gitrepo.Repo, base gitrepo.Head, changes []gitrepo.File) (map[string]string, error) {
	if base.Commit == "" || !slices.ContainsFunc(changes, func(c gitrepo.File) bool { return c.Kind == gitrepo.Deleted }) {
		return nil, nil
	}
	fsys, err := g.FS(base.Commit)
	if err != nil {
		return nil, infraError(err)
	}
	types, err := readTypes(fsys)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, infraError(fmt.Errorf("commit %.12s: %w", base.Commit, err))
	}
	return types, nil
}

// readTypes reads the record of the configs' types (repo.TypesFile) in
// fsys: a compile's snapshot, or a commit's files.
func readTypes(fsys fs.FS) (map[string]string, error) {
	data, err := fs.ReadFile(fsys, repo.TypesFile)
	if err != nil {
		return nil, err
	}
	return repo.DecodeTypes(data)
}

// canaryCommits lands a canaried change and reverts it, neither reading
// nor writing the working tree: the landing commits the changes the
// candidate's snapshot makes to its base, on base; the revert commits the
// files of base, on the landing commit. If the branch is not where each
// expects it, nothing is committed.
type canaryCommits struct {
	ws            *workspace
	g             *gitrepo.Repo
	cand          *canaryCandidate
	author        gitrepo.Signature
	landMessage   string
	revertSubject string
	id            string // the canary run's
	landed        string // the landing commit, once made
}

// land is canary.Options.Land.
func (c *canaryCommits) land(context.Context) (string, error) {
	res, err := c.g.CommitFiles(c.cand.changes, gitrepo.CommitOptions{Message: c.landMessage, Author: &c.author, Parent: c.cand.base})
	if err != nil {
		return "", landRefused(c.ws, c.g, err)
	}
	c.landed = res.Hash
	return res.Hash, nil
}

// revert is canary.Options.Revert.
func (c *canaryCommits) revert(context.Context) (string, error) {
	paths := make([]string, len(c.cand.changes))
	for i, f := range c.cand.changes {
		paths[i] = f.Path
	}
	files, err := c.g.FilesAt(c.cand.base.Commit, paths)
	if err != nil {
		return "", err
	}
	res, err := c.g.CommitFiles(files, gitrepo.CommitOptions{
		Message: fmt.Sprintf("%s\n\nThe bake of canary %s failed; this reverts commit %s.", c.revertSubject, c.id, c.landed),
		Author:  &c.author,
		Parent:  gitrepo.Head{Branch: c.cand.base.Branch, Commit: c.landed},
	})
	var moved *gitrepo.BranchMovedError
	if errors.As(err, &moved) {
		return "", fmt.Errorf("nothing committed: the branch moved after commit %.12s landed (%s): revert it with git revert %s", c.landed, moved.Detail(), c.landed)
	}
	if err != nil {
		return "", err
	}
	return res.Hash, nil
}

// landRefused turns a refusal to commit the landing into a
// *canary.NotLandedError: the branch moved since the canary read the
// working tree, or git is now in a state where nothing can be committed.
func landRefused(ws *workspace, g *gitrepo.Repo, err error) error {
	var moved *gitrepo.BranchMovedError
	if errors.As(err, &moved) {
		return &canary.NotLandedError{Err: fmt.Errorf("nothing committed: the branch moved while the canary ran (%s); run cfg canary again", moved.Detail())}
	}
	var se *gitrepo.StateError
	if errors.As(err, &se) {
		return &canary.NotLandedError{Err: fmt.Errorf("nothing committed: %s", stateMessage(ws, g, se))}
	}
	return err
}

// revertedExit is cfg canary's exit when the change landed and was then
// reverted by the bake.
var revertedExit = &exitError{code: ExitReverted}

// discardCommand is the shell command that puts the working tree's
// changes back to HEAD.
func discardCommand(ws *workspace, changes []gitrepo.File) string {
	var restore, remove []string
	for _, c := range changes {
		if c.Kind == gitrepo.Added {
			remove = append(remove, c.Path)
		} else {
			restore = append(restore, c.Path)
		}
	}
	var cmds []string
	if len(restore) > 0 {
		cmds = append(cmds, "git checkout HEAD -- "+shellWords(ws, restore))
	}
	if len(remove) > 0 {
		cmds = append(cmds, "rm "+shellWords(ws, remove))
	}
	return strings.Join(cmds, " && ")
}

// shellWords turns repository paths into shell words relative to the
// working directory.
func shellWords(ws *workspace, paths []string) string {
	words := make([]string, len(paths))
	for i, p := range paths {
		w := ws.display(p)
		if strings.ContainsFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+", r))
		}) {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		words[i] = w
	}
	return strings.Join(words, " ")
}

// specConfigName resolves --spec like every reference to a config
// (repo.Resolve).
func specConfigName(ws *workspace, spec string) (string, error) {
	ref, err := ws.resolve(spec, existingFile)
	if err != nil {
		return "", prefixed(err, "--spec")
	}
	if ref.Name == "" || repo.Classify(ref.Path) != repo.Config {
		return "", usageError(fmt.Errorf("--spec %s: %s is a %s, not a config", spec, ws.display(ref.Path), kindName(repo.Classify(ref.Path))))
	}
	return ref.Name, nil
}

func newCanaryHistoryCmd(f *Factory) *cobra.Command {
	var daemonURL, format string
	cmd := &cobra.Command{
		Use:   "history [RUN]",
		Short: "List the canary runs the daemon recorded, or show one",
		Long: `History lists every canary run the daemon recorded, oldest first: its id,
config, spec, status (running, landed, rolled_back, reverted when its bake
failed and the change was reverted, abandoned when its lease ran out while it
ran, failed), start time, duration and landed commit. With --format json it
prints the runs with their full reports.

With RUN, it shows that run: who ran it, its phases with their canary and
control hosts, every evaluation's canary and control values of each check and
its verdict, the hosts left out of evaluations and why, and the commit it
landed or the reason it rolled back; with --format json, the run and its
report.`,
		Example: `  cfg canary history
  cfg canary history canary-20261122T050102-1a2b
  cfg canary history --format json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("history takes at most one RUN, got %d arguments", len(args)))
			}
			return nil
		},
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
			var out any = list(runs)
			if len(args) == 1 {
				i := slices.IndexFunc(runs, func(r wire.Run) bool { return r.ID == args[0] })
				if i < 0 {
					fmt.Fprintf(f.IO.Err, "no canary run %q on %s\n", args[0], daemonURL)
					return inputFailed
				}
				out = runs[i]
			}
			if format == validate.FormatJSON {
				enc := json.NewEncoder(f.IO.Out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(out)
			}
			if run, ok := out.(wire.Run); ok {
				return printRun(f, run)
			}
			printRuns(f, runs)
			return nil
		},
	}
	cmd.Flags().StringVar(&daemonURL, "daemon", "http://127.0.0.1:7480", "the daemon's URL")
	cmd.Flags().StringVar(&format, "format", validate.FormatText, "output format: text or json")
	return cmd
}

// printRun prints one recorded run: its record, then its report with
// every evaluation.
func printRun(f *Factory, run wire.Run) error {
	fmt.Fprintf(f.IO.Out, "run %s of %s (spec %s): %s, started %s", run.ID, run.Config, run.Spec, run.Status, run.Started.Local().Format(time.DateTime))
	if !run.Ended.IsZero() {
		fmt.Fprintf(f.IO.Out, ", took %v", run.Ended.Sub(run.Started).Round(time.Second))
	}
	fmt.Fprintf(f.IO.Out, "; base revision %d\n", run.Base)
	if len(run.Report) == 0 {
		fmt.Fprintln(f.IO.Out, "no report recorded (the run did not end, or ended without reporting)")
		return nil
	}
	var rep canary.Report
	if err := json.Unmarshal(run.Report, &rep); err != nil {
		return infraError(fmt.Errorf("run %s: decoding its report: %w", run.ID, err))
	}
	fmt.Fprintln(f.IO.Out)
	rep.WriteDetail(f.IO.Out)
	return nil
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
