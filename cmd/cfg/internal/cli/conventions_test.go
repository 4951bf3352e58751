package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"mvdan.cc/sh/v3/shell"
)

// TestEveryCommandHasExamples checks that every command's help has an
// Examples section, that each example names a command that exists with
// flags it takes, and that every --format completes.
func TestEveryCommandHasExamples(t *testing.T) {
	f, _, _ := testFactory(t.TempDir(), false)
	root := NewRootCmd(f)
	var visit func(c *cobra.Command)
	n := 0
	visit = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no Example", c.CommandPath())
		}
		for _, line := range strings.Split(c.Example, "\n") {
			// Each command of the line: words up to a shell operator.
			for _, part := range strings.FieldsFunc(line, func(r rune) bool {
				return r == '&' || r == '|' || r == ';' || r == '>' || r == '<' || r == '(' || r == ')'
			}) {
				words := shellSplit(t, part)
				if len(words) == 0 || words[0] != "cfg" {
					continue
				}
				cmd, rest, err := root.Find(words[1:])
				if err != nil {
					t.Errorf("%s: example %q: %v", c.CommandPath(), line, err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("%s: example %q: %v", c.CommandPath(), line, err)
				}
				cmd.Flags().VisitAll(func(fl *pflag.Flag) { fl.Changed = false })
			}
		}
		if c.Flags().Lookup("format") != nil {
			// --format completes to the formats its usage lists.
			fn, ok := c.GetFlagCompletionFunc("format")
			if !ok {
				t.Errorf("%s: --format does not complete", c.CommandPath())
			} else if got, _ := fn(c, nil, ""); len(got) < 2 || got[0] != "text" || got[1] != "json" {
				t.Errorf("%s: --format completes to %q, want text, json, ...", c.CommandPath(), got)
			}
		}
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	if n < 20 {
		t.Errorf("visited %d commands, want every command", n)
	}
}

// shellSplit splits a command into its words as the shell does, leaving
// variables as they are written.
func shellSplit(t testing.TB, s string) []string {
	t.Helper()
	words, err := shell.Fields(s, func(name string) string { return "$" + name })
	if err != nil {
		t.Fatalf("splitting %q into words: %v", s, err)
	}
	return words
}

// TestValidateProgress checks that cfg validate shows progress on a
// terminal, as cfg compile does, and only there.
func TestValidateProgress(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "source"), os.DirFS("../../../../examples/jobs/source")); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { progressAfter = d }(progressAfter)
	progressAfter = 0
	for _, tty := range []bool{true, false} {
		f, _, _ := testFactory(root, tty)
		Run(context.Background(), f, []string{"compile", "-j", "1"})
		f, _, errb := testFactory(root, tty)
		if code := Run(context.Background(), f, []string{"validate", "-j", "1"}); code != ExitOK {
			t.Fatalf("validate: exit %d: %s", code, errb)
		}
		// The first update is shown; the second too if it comes 100 ms
		// later (on a loaded machine).
		want := []string{"2 configs checked, no problems\n"}
		if tty {
			want = []string{
				"\rcompiling 1/2 configs\r\x1b[K2 configs checked, no problems\n",
				"\rcompiling 1/2 configs\rcompiling 2/2 configs\r\x1b[K2 configs checked, no problems\n",
			}
		}
		if !slices.Contains(want, errb.String()) {
			t.Errorf("validate, terminal %v: stderr %q, want one of %q", tty, errb, want)
		}
	}
}

// TestRootFlag checks that --root is a flag of exactly the commands that
// read a repository, as the README lists them, and that it may come before
// the command's name as well as after it. (cfg canary history asks the
// daemon, and reads no repository.)
func TestRootFlag(t *testing.T) {
	want := []string{ // sorted
		"cfg affected", "cfg canary", "cfg commit", "cfg compile", "cfg decode", "cfg deps",
		"cfg diff", "cfg gate check", "cfg gate sample", "cfg init", "cfg log", "cfg rdeps", "cfg validate",
	}
	f, _, _ := testFactory(t.TempDir(), false)
	var got []string
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		if c.Runnable() && !c.Hidden && c.Flags().Lookup("root") != nil {
			got = append(got, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(NewRootCmd(f))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("commands with --root:\n got %q\nwant %q", got, want)
	}

	// Before or after the command's name, for every command that has it.
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "source"), os.DirFS("../../../../examples/jobs/source")); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	for _, args := range [][]string{
		{"--root", root, "deps", "feed/cache_job"},
		{"deps", "--root", root, "feed/cache_job"},
		{"--root", root, "rdeps", "lib/create_job.cinc"},
		{"rdeps", "lib/create_job.cinc", "--root", root},
	} {
		f, out, errb := testFactory(elsewhere, false)
		if code := Run(context.Background(), f, args); code != ExitOK || out.Len() == 0 {
			t.Errorf("cfg %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errb)
		}
	}
}

// TestCommitLockTimeoutDefault checks that cfg commit waits one minute for
// another cfg commit by default, as the README says.
func TestCommitLockTimeoutDefault(t *testing.T) {
	f, _, _ := testFactory(t.TempDir(), false)
	cmd, _, err := NewRootCmd(f).Find([]string{"commit"})
	if err != nil {
		t.Fatal(err)
	}
	if fl := cmd.Flags().Lookup("lock-timeout"); fl == nil || fl.DefValue != "1m0s" {
		t.Errorf("cfg commit --lock-timeout: %+v, want a default of 1m0s", fl)
	}
}
