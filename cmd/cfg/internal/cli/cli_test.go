package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func testFactory(dir string, tty bool) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Factory{
		IO:    &IOStreams{In: strings.NewReader(""), Out: &out, Err: &errb, ErrIsTTY: tty, Color: tty},
		Getwd: func() (string, error) { return dir, nil },
	}, &out, &errb
}

func TestExitCodes(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "source"), os.DirFS("../../../../examples/jobs/source")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"compile", "-q"}, ExitOK, ""},
		{[]string{"validate"}, ExitOK, "2 configs checked, no problems"},
		{[]string{"compile", "--jobs", "x"}, ExitUsage, `invalid argument "x"`},
		{[]string{"validate", "extra"}, ExitUsage, "validate takes no arguments"},
		{[]string{"validate", "--format", "xml"}, ExitUsage, `--format "xml": want one of text, json, github`},
		{[]string{"nosuchcommand"}, ExitUsage, "unknown command"},
		{[]string{"compile", "/elsewhere/x.cconf"}, ExitUsage, "outside the config repository"},
		{[]string{"compile", "source/nope.cinc"}, ExitUsage, `"source/nope.cinc": no config or source file; want a config name (feed/cache_job), a path under source/ (lib/create_job.cinc), a // path (//lib/create_job.cinc) or a path from the working directory (source/lib/create_job.cinc)`},
		{[]string{"--root", "/nonexistent", "validate"}, ExitUsage, "--root /nonexistent: not a config repository (no source/ directory)"},
	}
	for _, tt := range tests {
		f, _, errb := testFactory(root, false)
		if code := Run(context.Background(), f, tt.args); code != tt.code {
			t.Errorf("cfg %s: exit %d, want %d; stderr:\n%s", strings.Join(tt.args, " "), code, tt.code, errb)
		}
		if !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("cfg %s: stderr %q does not contain %q", strings.Join(tt.args, " "), errb, tt.wantErr)
		}
	}

	// A bad config: exit 1, positioned diagnostic, colored on a terminal.
	bad := filepath.Join(root, "source", "feed", "bad.cconf")
	if err := os.WriteFile(bad, []byte("load(\"//lib/create_job.cinc\", \"create_job\")\nexport(create_job(\"x\", port = \"80\"))\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, out, errb := testFactory(filepath.Join(root, "source"), true)
	if code := Run(context.Background(), f, []string{"compile"}); code != ExitInput {
		t.Fatalf("bad config: exit %d, want 1", code)
	}
	if want := "\x1b[1mfeed/bad.cconf:2:24:\x1b[0m \x1b[31mJob.port: got string \"80\", want i16\x1b[0m"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q does not contain %q", errb, want)
	}
	if !strings.Contains(errb.String(), "0 compiled, 2 up to date, 1 failed") || out.Len() != 0 {
		t.Errorf("summary: stdout %q, stderr %q", out, errb)
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, true)
	p.update(1, 10)
	if b.Len() != 0 {
		t.Fatalf("progress shown before a second: %q", b.String())
	}
	p.start = time.Now().Add(-2 * time.Second)
	p.update(2, 10)
	p.update(3, 10) // within 100ms of the last: not shown
	p.done()
	if got, want := b.String(), "\rcompiling 2/10 configs\r\x1b[K"; got != want {
		t.Errorf("progress output %q, want %q", got, want)
	}
	b.Reset()
	off := newProgress(&b, false)
	off.start = time.Now().Add(-2 * time.Second)
	off.update(1, 2)
	off.done()
	if b.Len() != 0 {
		t.Errorf("disabled progress wrote %q", b.String())
	}
}

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
				words := shellSplit(part)
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

// shellSplit splits s into words as a shell would for these examples:
// at spaces, with single and double quotes.
func shellSplit(s string) []string {
	var words []string
	var w strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
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
