package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// CompileOptions are the inputs of cfg compile.
type CompileOptions struct {
	Paths []string
	CompileFlags
	Quiet   bool
	Format  string
	Rebuild bool
	Emit    []string
}

func newCompileCmd(f *Factory, runF func(*CompileOptions) error) *cobra.Command {
	opts := &CompileOptions{}
	cmd := &cobra.Command{
		Use:   "compile [PATH...]",
		Short: "Compile configs into materialized_configs/",
		Long: `Compile type-checks and runs config programs, runs validators, and writes
canonical JSON into materialized_configs/. With no PATH it compiles every
config and raw config and deletes orphaned outputs. A PATH that is a config
or raw config compiles it; a module, schema or validator compiles every
config that depends on it. A config that fails leaves its materialized file
untouched; the others still compile.

Compiles are incremental: a config is compiled again only when a file it
depends on (what it loads, transitively, the schemas' includes and
validators) or its materialized file changed. The cache lives in .cfg/;
--rebuild ignores it.

Besides JSON, compiled configs are written in the Thrift encodings the
repository publishes, listed in cfg.json at its root:

  {"encodings": ["json", "thrift-binary", "thrift-compact"]}

--emit checks that list: a compile with --emit naming other encodings than
cfg.json fails and writes nothing. Files in an encoding the repository does
not publish are never deleted (cfg validate reports them).`,
		Example: `  cfg compile
  cfg compile feed/cache_job
  cfg compile //lib/create_job.cinc
  cfg compile --root examples/jobs --rebuild -j 4`,
		ValidArgsFunction: completeRefs(f, refSources),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			for _, enc := range opts.Emit {
				if !slices.Contains(repo.Encodings, enc) {
					return usageError(fmt.Errorf("--emit %q: want %s", enc, strings.Join(repo.Encodings, ", ")))
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return runCompile(f, cmd, opts)
		},
	}
	opts.CompileFlags.add(cmd)
	cmd.Flags().BoolVarP(&opts.Quiet, "quiet", "q", false, "print only problems")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	cmd.Flags().StringSliceVar(&opts.Emit, "emit", nil, "fail unless the repository publishes exactly these encodings (cfg.json): json (always), thrift-binary, thrift-compact")
	cmd.RegisterFlagCompletionFunc("emit", cobra.FixedCompletions(repo.Encodings, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().BoolVar(&opts.Rebuild, "rebuild", false, "ignore the compile cache in .cfg/ and compile everything")
	addRootFlag(cmd, "")
	return cmd
}

func runCompile(f *Factory, cmd *cobra.Command, opts *CompileOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	var targets []string
	for _, a := range opts.Paths {
		ref, err := ws.resolve(a, fileOrDir)
		if err != nil {
			return err
		}
		if !ref.Dir {
			targets = append(targets, ref.Path)
			continue
		}
		under, err := ws.sourcesUnder(ref.Path)
		if err != nil {
			return ws.fail(err)
		}
		if len(under) == 0 {
			return usageError(fmt.Errorf("%s: no configs or raw configs under this directory", a))
		}
		targets = append(targets, under...)
	}
	if len(opts.Emit) > 0 {
		if err := checkEmit(ws, opts.Emit); err != nil {
			return err
		}
	}
	prog := newProgress(f.IO.Err, f.IO.ErrIsTTY && !opts.Quiet && opts.Format == validate.FormatText)
	copts := opts.options(f)
	copts.Rebuild = opts.Rebuild
	copts.Progress = prog.update
	res, err := compiler.Build(cmd.Context(), ws.root, copts, targets...)
	prog.done()
	if err != nil {
		return ws.fail(err)
	}
	diags := res.Diags()
	summary := fmt.Sprintf("%d compiled, %d up to date, %d failed, %d written, %d removed in %s",
		res.Compiled, res.UpToDate, res.Failed, len(res.Written), len(res.Removed), res.Elapsed.Round(time.Millisecond))
	if err := ws.report(f, opts.Format, diags, map[string]any{
		"compiled": res.Compiled, "up_to_date": res.UpToDate, "failed": res.Failed, "written": list(res.Written), "removed": list(res.Removed),
		"seconds": res.Elapsed.Seconds(),
	}); err != nil {
		return err
	}
	if opts.Format == validate.FormatText && !opts.Quiet {
		fmt.Fprintln(f.IO.Err, summary)
	}
	if res.Failed > 0 {
		return inputFailed
	}
	return nil
}

// checkEmit fails unless the repository publishes exactly the encodings
// of --emit (json implied): the encodings are a setting of the repository,
// not of one command line.
func checkEmit(ws *workspace, emit []string) error {
	r, err := ws.open()
	if err != nil {
		return err
	}
	defer r.Close()
	settings, err := r.ReadSettings()
	if err != nil {
		return ws.fail(err)
	}
	want := slices.DeleteFunc(slices.Clone(repo.Encodings), func(e string) bool {
		return e != repo.EncodingJSON && !slices.Contains(emit, e)
	})
	if !slices.Equal(want, settings.Encodings) {
		return usageError(fmt.Errorf("--emit %s: the repository publishes %s (%s); to publish %s, write {\"encodings\": [%s]} to %[3]s and commit it",
			strings.Join(emit, ","), strings.Join(settings.Encodings, ", "), ws.display(repo.SettingsFile), strings.Join(want, ", "), quoteList(want)))
	}
	return nil
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// progressAfter is how long a command runs before it shows a progress
// line on a terminal.
var progressAfter = time.Second

// progress shows a "compiling N/M" line on a terminal once a command has
// run for progressAfter, refreshed at most ten times a second.
type progress struct {
	w       io.Writer
	enabled bool
	start   time.Time
	mu      sync.Mutex
	last    time.Time
	shown   bool
}

func newProgress(w io.Writer, enabled bool) *progress {
	return &progress{w: w, enabled: enabled, start: time.Now()}
}

func (p *progress) update(done, total int) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled || now.Sub(p.start) < progressAfter || now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.shown = now, true
	fmt.Fprintf(p.w, "\rcompiling %d/%d configs", done, total)
}

// done clears the progress line, if one is shown.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown, p.enabled = false, false
	}
}
