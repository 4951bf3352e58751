package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{[]string{"compile", "source/lib"}, ExitUsage, "source/lib: no configs or raw configs under this directory"},
		{[]string{"deps", "//feed"}, ExitUsage, `"//feed": a directory`},
		{[]string{"compile", "--emit", "json,thrift-binary"}, ExitUsage, "--emit json,thrift-binary: the repository publishes json"},
		{[]string{"--root", "/nonexistent", "validate"}, ExitUsage, "--root /nonexistent: not a config repository (no source/ directory)"},
		{[]string{"serve", "--data-dir", "d", "--max-watches-per-address", "-1"}, ExitUsage, "--max-watches-per-address: got -1, want 0 (the default) or more"},
		{[]string{"serve", "--data-dir", "d", "--max-watch-bytes", "1000"}, ExitUsage, "--max-watch-bytes: got 1000, want 0 (the default) or at least 1048576, the largest watch body"},
		{[]string{"serve", "--data-dir", "d", "--max-watch-bytes", "2097152", "--max-watch-bytes-per-address", "4194304"}, ExitUsage, "--max-watch-bytes-per-address: got 4194304, want at most --max-watch-bytes, 2097152"},
		{[]string{"serve"}, ExitUsage, "no store: want --data-dir DIR, or --etcd URL[,URL...] for a store shared with other daemons"},
		{[]string{"serve", "--data-dir", "d", "--etcd", "http://127.0.0.1:2379"}, ExitUsage, "--data-dir and --etcd: want one of them, not both"},
		{[]string{"serve", "--data-dir", "d", "--keep-revisions", "-1"}, ExitUsage, "--keep-revisions: got -1, want 0 (keep all) or more"},
		{[]string{"serve", "--data-dir", "d", "--etcd-prefix", "/x/"}, ExitUsage, "--etcd-prefix without --etcd"},
		{[]string{"serve", "--data-dir", "d", "--etcd-cacert", "ca.pem"}, ExitUsage, "--etcd-cacert without --etcd"},
		{[]string{"serve", "--data-dir", "d", "--etcd-prefix", "/cfg/"}, ExitUsage, "--etcd-prefix without --etcd"},
		{[]string{"serve", "--data-dir", "d", "--etcd-election-ttl", "3s"}, ExitUsage, "--etcd-election-ttl without --etcd"},
		{[]string{"serve", "--etcd", "127.0.0.1:2379"}, ExitUsage, `--etcd: got "127.0.0.1:2379", want client URLs such as http://127.0.0.1:2379`},
		{[]string{"serve", "--etcd", "ftp://h:1"}, ExitUsage, `--etcd: got "ftp://h:1", want client URLs such as http://127.0.0.1:2379`},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-prefix", "cfg"}, ExitUsage, `--etcd-prefix: got "cfg", want a prefix ending in /`},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-cert", "c.pem"}, ExitUsage, "--etcd-cert and --etcd-key: want both or neither"},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-password-file", "p"}, ExitUsage, "--etcd-password-file without --etcd-user"},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-dial-timeout", "0s"}, ExitUsage, "--etcd-dial-timeout: got 0s, want more than 0"},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-election-ttl", "500ms"}, ExitUsage, "--etcd-election-ttl: got 500ms, want at least 1s"},
		{[]string{"serve", "--etcd", "http://h:1", "--etcd-user", "cfg", "--etcd-password-file", "nope"}, ExitUsage, "--etcd-password-file: open nope: no such file or directory"},
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

	// Bad settings: exit 1, positioned in cfg.json.
	settings := filepath.Join(root, "cfg.json")
	if err := os.WriteFile(settings, []byte(`{"encodings": "json"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"compile"}, {"validate"}} {
		f, _, errb := testFactory(root, false)
		if code := Run(context.Background(), f, args); code != ExitInput || !strings.Contains(errb.String(), "cfg.json:1:21: encodings: got string, want a list of encodings") {
			t.Errorf("cfg %s with bad settings: exit %d, want 1; stderr:\n%s", args[0], code, errb)
		}
	}
	if err := os.Remove(settings); err != nil {
		t.Fatal(err)
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

// TestGCPercent checks that the daemons run the collector at Go's default
// and every other command at GOGC=400.
func TestGCPercent(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"serve", "--data-dir", "d"}, 100},
		{[]string{"--root", "r", "serve"}, 100},
		{[]string{"agent", "--host", "h"}, 100},
		{[]string{"compile"}, 400},
		{[]string{"--root", "serve", "validate"}, 400},
		{[]string{}, 400},
		{[]string{"nope"}, 400},
	} {
		if got := gcPercent(tt.args); got != tt.want {
			t.Errorf("gcPercent(%q) = %d, want %d", tt.args, got, tt.want)
		}
	}
}

// TestConfigNameOutsideRepository checks that cfg get and cfg status,
// outside a config repository, take a config name or a // path as they are.
func TestConfigNameOutsideRepository(t *testing.T) {
	f, _, _ := testFactory(t.TempDir(), false)
	for ref, want := range map[string]string{
		"feed/cache_job":         "feed/cache_job",
		"//feed/cache_job.cconf": "feed/cache_job",
		"//service/banner.txt":   "service/banner.txt",
		"service/banner.txt":     "service/banner.txt",
		"feed/cache_job.cconf":   "feed/cache_job",
	} {
		if got, err := configName(f, ref); got != want || err != nil {
			t.Errorf("configName(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"", "//../x.cconf", "./feed/cache_job.cconf"} {
		var ee *exitError
		if got, err := configName(f, ref); !errors.As(err, &ee) || ee.code != ExitUsage {
			t.Errorf("configName(%q) = %q, %v; want a usage error", ref, got, err)
		}
	}
}
