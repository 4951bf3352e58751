package validate

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func messages(l diag.List) []string {
	var out []string
	for _, d := range l {
		out = append(out, d.Error())
	}
	return out
}

// run validates the repository at root as cfg validate does: its files on
// disk through repo.Repo, against its git HEAD commit if it has one.
func run(t *testing.T, root string) []string {
	t.Helper()
	var head fs.FS
	if g, err := gitrepo.Open(root); err == nil {
		head, _ = g.FS("HEAD")
	}
	r, err := repo.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := Run(context.Background(), r.FS(), head, compiler.Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	return messages(rep.Diags)
}

// TestDrift walks one repository (a real git repository made with go-git)
// through every kind of drift.
func TestDrift(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"source/s.thrift": "struct S {\n  1: required i32 v\n}\n",
		"source/a.cconf":  "load(\"//s.thrift\", \"S\")\nexport(S(v = 1))\n",
		"source/b.cconf":  "load(\"//s.thrift\", \"S\")\nexport(S(v = 2))\n",
		"source/raw.txt":  "raw\n",
	})
	if got := run(t, root); strings.Join(got, "\n") != strings.Join([]string{
		"materialized_configs/.types.json: missing: the types of the compiled configs are not recorded (run cfg compile)",
		"materialized_configs/a.json: missing: source/a.cconf has not been compiled (run cfg compile)",
		"materialized_configs/b.json: missing: source/b.cconf has not been compiled (run cfg compile)",
		"materialized_configs/raw.txt: missing: source/raw.txt has not been compiled (run cfg compile)",
	}, "\n") {
		t.Fatalf("never compiled:\n%s", strings.Join(got, "\n"))
	}
	if _, err := compiler.Build(context.Background(), root, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := run(t, root); len(got) != 0 {
		t.Fatalf("compiled repository has drift:\n%s", strings.Join(got, "\n"))
	}

	r, err := git.PlainInit(root, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	if err := wt.AddGlob("."); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.com", When: time.Unix(0, 0)}
	if _, err := wt.Commit("compile", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}

	// A value edited by hand in cfg's own layout: only git tells.
	writeFiles(t, root, map[string]string{"materialized_configs/a.json": "{\n  \"v\": 9\n}\n"})
	// A source changed without recompiling.
	writeFiles(t, root, map[string]string{"source/b.cconf": "load(\"//s.thrift\", \"S\")\nexport(S(v = 3))\n"})
	// A raw config changed without recompiling; an output whose source is gone.
	writeFiles(t, root, map[string]string{"source/raw.txt": "raw v2\n", "materialized_configs/gone.json": "{}\n"})
	want := []string{
		"materialized_configs/a.json:2: hand-edited: changed since the last commit while source/a.cconf still compiles to the committed content (change the source and run cfg compile)",
		"materialized_configs/b.json:2: stale: differs from what source/b.cconf compiles to (run cfg compile)",
		"materialized_configs/gone.json: orphaned: its source is gone (cfg compile deletes it)",
		"materialized_configs/raw.txt:1: stale: differs from what source/raw.txt compiles to (run cfg compile)",
	}
	if got := run(t, root); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("drift:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An edit that breaks cfg's layout is hand-edited even without git.
	writeFiles(t, root, map[string]string{"materialized_configs/a.json": "{\"v\": 1}"})
	if err := os.RemoveAll(filepath.Join(root, ".git")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, root); !strings.HasPrefix(got[0], "materialized_configs/a.json:1: hand-edited: not in the form cfg writes") {
		t.Errorf("reformatted file: %s", got[0])
	}
}

func TestWriteFormats(t *testing.T) {
	diags := diag.List{{
		Pos:   diag.Pos{File: "source/a,b.cconf", Line: 3, Col: 7},
		Msg:   "Job.port: got 100%, want i16\nsecond line",
		Notes: []diag.Note{{Pos: diag.Pos{File: "source/s.thrift", Line: 2, Col: 3}, Msg: "field declared here"}},
	}}
	tests := []struct{ format, want string }{
		{FormatText, "source/a,b.cconf:3:7: Job.port: got 100%, want i16\nsecond line\n    source/s.thrift:2:3: field declared here\n"},
		{FormatGitHub, "::error file=source/a%2Cb.cconf,line=3,col=7::Job.port: got 100%25, want i16%0Asecond line%0Asource/s.thrift:2:3: field declared here\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := Write(&b, tt.format, diags, false, nil); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("%s:\n%q\nwant\n%q", tt.format, b.String(), tt.want)
		}
	}
	var b bytes.Buffer
	if err := Write(&b, FormatJSON, nil, false, map[string]any{"checked": 3}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"checked\": 3,\n  \"diagnostics\": []\n}\n"; b.String() != want {
		t.Errorf("json: %q, want %q", b.String(), want)
	}
	if err := Write(&b, "xml", nil, false, nil); err == nil || err.Error() != `unknown format "xml" (want text, json or github)` {
		t.Errorf("unknown format: %v", err)
	}
}

func TestTypesDrift(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"source/s.thrift": "struct S {\n  1: required i32 v\n}\n",
		"source/a.cconf":  "load(\"//s.thrift\", \"S\")\nexport(S(v = 1))\n",
	})
	if _, err := compiler.Build(context.Background(), root, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := run(t, root); len(got) != 0 {
		t.Fatalf("compiled repository has drift: %v", got)
	}
	writeFiles(t, root, map[string]string{"materialized_configs/.types.json": "{\"a\": \"T\"}\n"})
	if got := run(t, root); strings.Join(got, "\n") != "materialized_configs/.types.json: stale: differs from the types the configs compile to (run cfg compile)" {
		t.Errorf("edited types: %v", got)
	}
	os.Remove(filepath.Join(root, "materialized_configs/.types.json"))
	if got := run(t, root); strings.Join(got, "\n") != "materialized_configs/.types.json: missing: the types of the compiled configs are not recorded (run cfg compile)" {
		t.Errorf("missing types: %v", got)
	}
}

// TestRunOnFS validates a repository that exists only in memory, as cfg
// commit validates the snapshot it is to commit: nothing is read from disk,
// and the committed files (head) tell a hand edit from a stale output.
func TestRunOnFS(t *testing.T) {
	src := "load(\"//s.thrift\", \"S\")\nexport(S(v = 1))\n"
	fsys := fstest.MapFS{
		"source/s.thrift":                  {Data: []byte("struct S {\n  1: required i32 v\n}\n")},
		"source/a.cconf":                   {Data: []byte(src)},
		"source/b.cconf":                   {Data: []byte(src)},
		"materialized_configs/a.json":      {Data: []byte("{\n  \"v\": 2\n}\n")},
		"materialized_configs/b.json":      {Data: []byte("{\n  \"v\": 2\n}\n")},
		"materialized_configs/.types.json": {Data: []byte("{\n  \"a\": \"S\",\n  \"b\": \"S\"\n}\n")},
	}
	head := fstest.MapFS{"materialized_configs/a.json": {Data: []byte("{\n  \"v\": 1\n}\n")}}
	rep, err := Run(context.Background(), fsys, head, compiler.Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"materialized_configs/a.json:2: hand-edited: changed since the last commit while source/a.cconf still compiles to the committed content (change the source and run cfg compile)",
		"materialized_configs/b.json:2: stale: differs from what source/b.cconf compiles to (run cfg compile)",
	}
	if diff := cmp.Diff(want, messages(rep.Diags)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

// TestDriftLargeFile changes one byte anywhere in materialized files
// several times the size of the chunks they are compared in (at the start,
// on both sides of chunk boundaries, at the end), cuts one byte off and adds
// one: validate reports each, at the line of the change, in JSON and in a
// Thrift encoding alike.
func TestDriftLargeFile(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		repo.SettingsFile: `{"encodings": ["json", "thrift-binary"]}`,
		"source/s.thrift": "struct S {\n  1: required list<string> names\n  2: required i32 v\n}\n",
		"source/big.cconf": "load(\"//s.thrift\", \"S\")\n" +
			"export(S(names = [\"name%d\" % (100000 + i) for i in range(10000)], v = 7))\n",
	})
	if _, err := compiler.Build(context.Background(), root, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := run(t, root); len(got) != 0 {
		t.Fatalf("compiled repository has drift:\n%s", strings.Join(got, "\n"))
	}
	for _, name := range []string{"big.json", "big.thrift-binary"} {
		p := filepath.Join(root, "materialized_configs", name)
		compiled, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(compiled) < 3*chunkSize {
			t.Fatalf("%s: %d bytes, want at least three chunks (%d)", name, len(compiled), 3*chunkSize)
		}
		edits := map[string][]byte{
			"one byte less":                  compiled[:len(compiled)-1],
			"one byte more":                  append(bytes.Clone(compiled), '\n'),
			"one byte less at a chunk's end": append(bytes.Clone(compiled[:chunkSize-1]), compiled[chunkSize:]...),
		}
		for _, off := range []int{0, chunkSize - 1, chunkSize, chunkSize + 1, 2 * chunkSize, len(compiled) - 2, len(compiled) - 1} {
			b := bytes.Clone(compiled)
			b[off] ^= 1
			edits[fmt.Sprintf("byte %d of %d changed", off, len(compiled))] = b
		}
		for what, data := range edits {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			got := run(t, root)
			if len(got) != 1 || !strings.HasPrefix(got[0], "materialized_configs/"+name+":") ||
				!strings.Contains(got[0], ": stale: ") && !strings.Contains(got[0], ": hand-edited: ") {
				t.Errorf("%s, %s: got %q, want it stale or hand-edited", name, what, got)
				continue
			}
			if name == "big.json" {
				line := 1 + bytes.Count(compiled[:firstDiff(compiled, data)], []byte("\n"))
				if prefix := fmt.Sprintf("materialized_configs/big.json:%d: ", line); !strings.HasPrefix(got[0], prefix) {
					t.Errorf("%s, %s: got %q, want it at line %d", name, what, got[0], line)
				}
			}
		}
		if err := os.WriteFile(p, compiled, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := run(t, root); len(got) != 0 {
		t.Fatalf("repository as compiled again has drift:\n%s", strings.Join(got, "\n"))
	}
}

// firstDiff returns the offset of the first byte where a and b differ, or
// the length of the shorter.
func firstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}
