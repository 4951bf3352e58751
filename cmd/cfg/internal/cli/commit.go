package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// CommitOptions are the inputs of cfg commit.
type CommitOptions struct {
	Message       string
	Author        string // "Name <email>"; "" means from the environment or git config
	Format        string
	AllowDetached bool
	LockTimeout   time.Duration
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

Every file is read once: the commit holds exactly the bytes that were
compiled and validated. A file edited while commit runs keeps the edit in
the working tree, uncommitted, and commit says so.

One commit runs at a time in a repository: commit waits for another to
finish (up to --lock-timeout, then exits 3). The branch moves only from the
commit commit started from: if another commit landed meanwhile (by git,
say), nothing is committed and commit exits 1 ("the branch moved; run cfg
commit again"). Commit refuses (exit 1) while a merge, cherry-pick, revert,
rebase, am or bisect is in progress, while files have unresolved
conflicts, and on a detached HEAD unless --allow-detached.

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
			if opts.LockTimeout < 0 {
				return usageError(fmt.Errorf("--lock-timeout %s: want 0 or more", opts.LockTimeout))
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
	cmd.Flags().BoolVar(&opts.AllowDetached, "allow-detached", false, "commit on a detached HEAD (the commit is then on no branch)")
	cmd.Flags().DurationVar(&opts.LockTimeout, "lock-timeout", gitrepo.DefaultLockWait, "how long to wait for another cfg commit in the repository to finish")
	opts.CompileFlags.add(cmd)
	addRootFlag(cmd, "")
	return cmd
}

// testHookBeforeCommit, when set by a test, runs once the files to commit
// were compiled and validated (and the outputs written), before the
// changes a commit of them makes are worked out and committed.
var testHookBeforeCommit func()

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

	// One commit at a time; the branch and everything read from here on
	// are as this commit finds them.
	lock, err := lockRepo(f, cmd, g, opts.LockTimeout, text)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	base, err := g.Head()
	if err != nil {
		return infraError(err)
	}
	if err := g.CheckState(opts.AllowDetached); err != nil {
		return commitRefused(ws, g, err)
	}

	snap, _, err := compileAndValidate(f, cmd, ws, g, base, opts.CompileFlags, opts.Format, map[string]any{"commit": nil})
	if err != nil {
		if errors.Is(err, inputFailed) && text {
			fmt.Fprintln(f.IO.Err, "nothing committed")
		}
		return err
	}
	if testHookBeforeCommit != nil {
		testHookBeforeCommit()
	}
	changes, err := snapshotChanges(g, base, snap)
	if err != nil {
		return infraError(err)
	}
	var res *gitrepo.CommitResult
	if len(changes) > 0 {
		res, err = g.CommitFiles(changes, gitrepo.CommitOptions{Message: opts.Message, Author: &author, Parent: base, AllowDetached: opts.AllowDetached})
		if errors.Is(err, gitrepo.ErrNothingToCommit) {
			res, err = nil, nil
		}
		if err != nil {
			return commitRefused(ws, g, err)
		}
	}
	var differ []string // committable files the working tree holds otherwise
	if res != nil {
		differ = worktreeDiffers(f, ws, g)
	}

	if !text {
		out := map[string]any{"commit": nil, "files": []gitrepo.Change{}, "worktree_differs": append([]string{}, differ...)}
		if res != nil {
			files := []gitrepo.Change{}
			for _, c := range res.Changes {
				files = append(files, gitrepo.Change{Path: ws.display(c.Path), Kind: c.Kind})
			}
			out["commit"], out["files"] = res.Hash, files
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return infraError(err)
		}
	} else if res == nil {
		fmt.Fprintf(f.IO.Err, "nothing to commit: %s/ and %s/ match HEAD\n", repo.SourceDir, repo.MaterializedDir)
	} else {
		subject, _, _ := strings.Cut(strings.TrimSpace(opts.Message), "\n")
		fmt.Fprintf(f.IO.Out, "committed %s: %s\n", res.Hash, subject)
		for _, c := range res.Changes {
			fmt.Fprintf(f.IO.Out, "  %s %s\n", c.Kind.Letter(), ws.display(c.Path))
		}
		if base.Branch == "" {
			fmt.Fprintln(f.IO.Err, "HEAD is detached: the commit is on no branch")
		}
		printDiffers(f, "cfg commit", "the commit holds what was validated", differ)
	}
	return nil
}

// lockRepo takes the repository's commit lock, waiting up to wait for
// another cfg commit (saying so in text), and reports a stale lock it
// recovered.
func lockRepo(f *Factory, cmd *cobra.Command, g *gitrepo.Repo, wait time.Duration, text bool) (*gitrepo.Lock, error) {
	lock, err := g.Lock(cmd.Context(), wait, func(h gitrepo.Holder) {
		switch {
		case !text:
		case h.Known():
			fmt.Fprintf(f.IO.Err, "waiting for another cfg commit (%s) to finish\n", h)
		default:
			fmt.Fprintln(f.IO.Err, "waiting for another cfg commit to finish")
		}
	})
	if err != nil {
		return nil, infraError(err)
	}
	if s := lock.Stale(); s != nil {
		reportStale(f, s)
	}
	return lock, nil
}

// worktreeDiffers returns the committable files of the working tree that
// differ from HEAD, as shown to the user (after a commit: the edits made
// while it ran).
func worktreeDiffers(f *Factory, ws *workspace, g *gitrepo.Repo) []string {
	now, err := g.WorkingChanges()
	if err != nil {
		fmt.Fprintf(f.IO.Err, "comparing the working tree with the commit: %v\n", err)
	}
	var differ []string
	for _, c := range now {
		if committable(c.Path) {
			differ = append(differ, ws.display(c.Path))
		}
	}
	return differ
}

// printDiffers tells that the files in differ were edited while command
// ran, and that the commit holds what it holds instead.
func printDiffers(f *Factory, command, holds string, differ []string) {
	if len(differ) == 0 {
		return
	}
	fmt.Fprintf(f.IO.Err, "the working tree changed while %s ran: %s, and these files differ from it (edits kept, not committed):\n", command, holds)
	for _, p := range differ {
		fmt.Fprintf(f.IO.Err, "  %s\n", p)
	}
}

// commitRefused maps an error of committing to an exit: the branch moving
// and a repository state that forbids a commit are the user's to resolve
// (exit 1); anything else is an infrastructure error.
func commitRefused(ws *workspace, g *gitrepo.Repo, err error) error {
	var se *gitrepo.StateError
	if errors.As(err, &se) {
		msg := stateMessage(ws, g, se)
		if se.State == "detached" {
			msg += ", or pass --allow-detached"
		}
		return &exitError{code: ExitInput, err: fmt.Errorf("nothing committed: %s", msg)}
	}
	var moved *gitrepo.BranchMovedError
	if errors.As(err, &moved) {
		return &exitError{code: ExitInput, err: fmt.Errorf("nothing committed: the branch moved; run cfg commit again (%s)", moved.Detail())}
	}
	return gitError(err)
}

// stateMessage describes a repository state that forbids a commit, with
// paths as shown to the user.
func stateMessage(ws *workspace, g *gitrepo.Repo, se *gitrepo.StateError) string {
	return se.Message(func(gp string) string { return ws.display(workTreePath(g, gp)) })
}

// workTreePath turns a path relative to the git work tree into one relative
// to the config repository root, or an absolute one for a file outside it.
func workTreePath(g *gitrepo.Repo, gp string) string {
	if p, ok := g.RepoPath(gp); ok {
		return p
	}
	return filepath.Join(g.WorkTree(), filepath.FromSlash(gp))
}

// reportStale tells what was recovered from a commit lock whose holder
// ended without releasing it.
func reportStale(f *Factory, s *gitrepo.Stale) {
	fmt.Fprintf(f.IO.Err, "a cfg commit (%s) ended without releasing the repository's commit lock; recovered it\n", s.Holder)
	for _, p := range s.Removed {
		fmt.Fprintf(f.IO.Err, "  removed %s, which it left\n", p)
	}
	for _, p := range s.Left {
		fmt.Fprintf(f.IO.Err, "  %s, which it left on another host, is still there: remove it if no git or cfg command is running there\n", p)
	}
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

// compileAndValidate compiles the workspace as cfg compile does (writing
// materialized_configs/ in the encodings the repository publishes),
// reading every source file and cfg.json once, and validates the files it read and left as cfg
// validate does, telling hand edits against base (the commit they are to
// go on). It returns those files: what a commit on base is to hold, however
// the disk changes later; and the validation's report, which holds the
// schema of every compiled config's type. On a problem it reports it in
// format (the JSON report carrying extra) and returns inputFailed.
func compileAndValidate(f *Factory, cmd *cobra.Command, ws *workspace, g *gitrepo.Repo, base gitrepo.Head, flags CompileFlags, format string, extra map[string]any) (*compiler.Snapshot, *validate.Report, error) {
	copts := flags.options(f)
	copts.Snapshot = true
	prog := newProgress(f.IO.Err, f.IO.ErrIsTTY && format == validate.FormatText)
	copts.Progress = prog.update
	res, err := compiler.Build(cmd.Context(), ws.root, copts)
	prog.done()
	if err != nil {
		return nil, nil, ws.fail(err)
	}
	if res.Failed > 0 {
		if err := ws.report(f, format, res.Diags(), extra); err != nil {
			return nil, nil, err
		}
		return nil, nil, inputFailed
	}
	var head fs.FS
	if base.Commit != "" {
		if head, err = g.FS(base.Commit); err != nil {
			return nil, nil, infraError(err)
		}
	}
	copts.Progress, copts.Snapshot = nil, false
	rep, err := validate.Run(cmd.Context(), res.Snapshot, head, copts)
	if err != nil {
		return nil, nil, ws.fail(err)
	}
	if len(rep.Diags) > 0 {
		if err := ws.report(f, format, rep.Diags, extra); err != nil {
			return nil, nil, err
		}
		return nil, nil, inputFailed
	}
	return res.Snapshot, rep, nil
}

// snapshotChanges returns the changes a commit of snap on base makes: the
// committable files snap holds that differ from base, and the committable
// files of base that snap lacks, deleted. The files outside what snap
// holds are left as base has them.
func snapshotChanges(g *gitrepo.Repo, base gitrepo.Head, snap *compiler.Snapshot) ([]gitrepo.File, error) {
	within := func(p string) bool { return committable(p) && snap.Holds(p) }
	var files []gitrepo.File
	for _, sf := range snap.Files() {
		if within(sf.Path) {
			files = append(files, gitrepo.File{Path: sf.Path, Data: sf.Data, Executable: sf.Mode&0o111 != 0})
		}
	}
	return g.ChangesTo(base, files, within)
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
