package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
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
--rebuild ignores it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			for _, enc := range opts.Emit {
				switch enc {
				case "json", compiler.EncodingThriftBinary, compiler.EncodingThriftCompact:
				default:
					return usageError(fmt.Errorf("--emit %q: want json, %s or %s", enc, compiler.EncodingThriftBinary, compiler.EncodingThriftCompact))
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
	cmd.Flags().StringSliceVar(&opts.Emit, "emit", []string{"json"}, "encodings to write: json (always), thrift-binary, thrift-compact")
	cmd.Flags().BoolVar(&opts.Rebuild, "rebuild", false, "ignore the compile cache in .cfg/ and compile everything")
	return cmd
}

func runCompile(f *Factory, cmd *cobra.Command, opts *CompileOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	var targets []string
	for _, a := range opts.Paths {
		p, err := ws.repoPath(a)
		if err != nil {
			return usageError(err)
		}
		if _, err := os.Stat(filepath.Join(ws.root, filepath.FromSlash(p))); err != nil {
			return usageError(fmt.Errorf("%s: no such file", a))
		}
		targets = append(targets, p)
	}
	prog := newProgress(f.IO.Err, f.IO.ErrIsTTY && !opts.Quiet && opts.Format == validate.FormatText)
	copts := opts.options(f)
	copts.Rebuild = opts.Rebuild
	copts.Emit = slices.DeleteFunc(slices.Clone(opts.Emit), func(e string) bool { return e == "json" })
	copts.Progress = prog.update
	res, err := compiler.Build(cmd.Context(), ws.root, copts, targets...)
	prog.done()
	if err != nil {
		return infraError(err)
	}
	diags := res.Diags()
	summary := fmt.Sprintf("%d compiled, %d up to date, %d failed, %d written, %d removed in %s",
		res.Compiled, res.UpToDate, res.Failed, len(res.Written), len(res.Removed), res.Elapsed.Round(time.Millisecond))
	if err := ws.report(f, opts.Format, diags, map[string]any{
		"compiled": res.Compiled, "up_to_date": res.UpToDate, "failed": res.Failed, "written": res.Written, "removed": res.Removed,
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

// progress shows a "compiling N/M" line on a terminal once a compile has
// run for a second, refreshed at most ten times a second.
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
	if !p.enabled {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.start) < time.Second || now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.shown = now, true
	fmt.Fprintf(p.w, "\rcompiling %d/%d configs", done, total)
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
