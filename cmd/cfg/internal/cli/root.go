// Package cli holds the cobra commands of cfg. Commands are thin: each fills
// an options struct and calls one library entry point; output goes through
// IOStreams so commands run in-process in tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cfg-dev/cfg/internal/gcpolicy"
)

// Exit codes (DESIGN §5).
const (
	ExitOK    = 0
	ExitInput = 1 // the input is wrong: compile or validation errors, drift
	ExitUsage = 2 // bad flags or arguments
	ExitInfra = 3 // I/O, git or network failure
	// ExitReverted is cfg canary's: the change landed, and was then
	// reverted when the fleet failed the spec's bake.
	ExitReverted = 4
)

// IOStreams are the streams a command reads and writes.
type IOStreams struct {
	In       io.Reader
	Out      io.Writer
	Err      io.Writer
	ErrIsTTY bool // stderr is a terminal: progress lines are shown
	Color    bool // colored diagnostics (terminal and NO_COLOR unset)
}

// Factory carries what commands need from their environment.
type Factory struct {
	IO    *IOStreams
	Getwd func() (string, error)
}

// SystemFactory returns a Factory for the real process.
func SystemFactory() *Factory {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	_, noColor := os.LookupEnv("NO_COLOR")
	return &Factory{
		IO:    &IOStreams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, ErrIsTTY: tty, Color: tty && !noColor},
		Getwd: os.Getwd,
	}
}

// exitError is an error with the exit code it maps to. Every error a
// command's RunE returns is one; any other error comes from cobra's own
// parsing of the command line and is a usage error.
type exitError struct {
	code int
	err  error // nil when the command already reported the problem
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// inputFailed is returned by a command that has reported problems in the
// input and exits 1.
var inputFailed = &exitError{code: ExitInput}

func infraError(err error) error { return &exitError{code: ExitInfra, err: err} }

func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

// prefixed puts context (a flag's name) before the message of err, keeping
// its exit code.
func prefixed(err error, context string) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		return &exitError{code: ee.code, err: fmt.Errorf("%s: %w", context, ee.err)}
	}
	return fmt.Errorf("%s: %w", context, err)
}

// NewRootCmd returns the cfg command with its subcommands.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "cfg",
		Short: "Configuration as code: compile, validate and distribute configs",
		Example: `  cfg init myconfigs && cd myconfigs
  cfg compile && cfg validate
  cfg commit -m "app: a warmer greeting"
  cfg serve --repo . --data-dir /var/lib/cfg --token-file token`,
		Version:       versionLine(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("cfg {{.Version}}\n")
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.Err)
	root.SetIn(f.IO.In)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.AddCommand(
		newInitCmd(f, nil),
		newCompileCmd(f, nil),
		newValidateCmd(f, nil),
		newDepsCmd(f, false, nil),
		newDepsCmd(f, true, nil),
		newAffectedCmd(f, nil),
		newDecodeCmd(f, nil),
		newDiffCmd(f, nil),
		newCommitCmd(f, nil),
		newLogCmd(f, nil),
		newServeCmd(f, nil),
		newAgentCmd(f, nil),
		newGetCmd(f, nil),
		newStatusCmd(f, nil),
		newCanaryCmd(f, nil),
		newGateCmd(f, nil, nil),
		newVersionCmd(f, nil),
	)
	completeFormats(root)
	// cobra's own commands, made now so that they have examples too.
	root.InitDefaultVersionFlag()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  cfg help compile\n  cfg help canary history"
		case "completion":
			c.Example = "  source <(cfg completion bash)\n  cfg completion zsh > \"${fpath[1]}/_cfg\""
			for _, sh := range c.Commands() {
				sh.Example = fmt.Sprintf("  cfg completion %s --help", sh.Name())
				switch sh.Name() {
				case "bash":
					sh.Example = "  source <(cfg completion bash)"
				case "zsh":
					sh.Example = "  cfg completion zsh > \"${fpath[1]}/_cfg\""
				case "fish":
					sh.Example = "  cfg completion fish > ~/.config/fish/completions/cfg.fish"
				case "powershell":
					sh.Example = "  cfg completion powershell | Out-String | Invoke-Expression"
				}
			}
		}
	}
	return root
}

// Main runs cfg with the process's arguments and returns the exit code.
//
// Unless GOGC is set, the garbage collector of every command but the
// long-running ones (serve, agent) runs at a quarter of its default
// frequency: a compile allocates many short-lived values around a small
// live heap, and this makes it about a quarter faster. A daemon keeps Go's
// default, so that its memory follows its live heap (a soft limit is
// GOMEMLIMIT's to set).
func Main() int {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercent(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, SystemFactory(), os.Args[1:])
}

// longRunning names the commands that keep the collector's default.
var longRunning = map[string]bool{"serve": true, "agent": true}

// gcPercent returns the collector's GOGC for a cfg command line: 400, or
// Go's default 100 for the long-running commands.
func gcPercent(args []string) int {
	f := &Factory{IO: &IOStreams{In: os.Stdin, Out: io.Discard, Err: io.Discard}, Getwd: os.Getwd}
	if cmd, _, err := NewRootCmd(f).Find(args); err == nil && longRunning[cmd.Name()] {
		return 100
	}
	return gcpolicy.Percent
}

// Run runs cfg with args and returns the exit code.
func Run(ctx context.Context, f *Factory, args []string) int {
	root := NewRootCmd(f)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		ee = &exitError{code: ExitUsage, err: err}
	}
	if ee.err != nil {
		fmt.Fprintf(f.IO.Err, "cfg: %v\n", ee.err)
		if ee.code == ExitUsage {
			if cmd == nil {
				cmd = root
			}
			fmt.Fprintf(f.IO.Err, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return ee.code
}
