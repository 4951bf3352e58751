package compiler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cfg-dev/cfg/diag"
)

// TestDiagnosticsDeterministic checks that the diagnostics of a compile do
// not depend on the number of workers or on which worker finished first: a
// schema, a module (loaded directly and through another module) and a
// validator file that fail while loading, each shared by several configs,
// are reported once each, at their own line, for the first config by path
// that loads them and with a note naming it; a check that fails is
// reported for every config it fails on. It checks the
// diagnostics a compile reports (Result.Diags) both from CompileAll and
// from Build.
func TestDiagnosticsDeterministic(t *testing.T) {
	fsys := fstest.MapFS{
		"source/bad.thrift":            {Data: []byte("struct T {\n  1: optional Missing m\n}\n")},
		"source/ok.thrift":             {Data: []byte("struct U {\n  1: optional i32 n\n}\n")},
		"source/ok.thrift-cvalidator":  {Data: []byte("load(\"//ok.thrift\", \"U\")\ndef check(u):\n    fail(\"no\")\nadd_validator(U, check)\n")},
		"source/v.thrift":              {Data: []byte("struct V {\n  1: optional i32 n\n}\n")},
		"source/v.thrift-cvalidator":   {Data: []byte("load(\"//v.thrift\", \"V\")\nfail(\"broken validator\")\n")},
		"source/lib/broken.cinc":       {Data: []byte("x = 1 +\n")},
		"source/lib/fails.cinc":        {Data: []byte("def f():\n    return 1 // 0\nX = f()\n")},
		"source/lib/also_broken.cinc":  {Data: []byte("load(\"//lib/broken.cinc\", \"x\")\ny = x\n")},
		"source/z/loads_broken.cconf":  {Data: []byte("load(\"//lib/also_broken.cinc\", \"y\")\n")},
		"source/a/loads_broken.cconf":  {Data: []byte("load(\"//lib/broken.cinc\", \"x\")\n")},
		"source/a/b/loads_fails.cconf": {Data: []byte("load(\"//lib/fails.cinc\", \"X\")\n")},
	}
	for i := range 25 {
		var src string
		switch i % 5 {
		case 0:
			src = "load(\"//bad.thrift\", \"T\")\nexport(T())\n"
		case 1:
			src = "load(\"//ok.thrift\", \"U\")\nexport(U(n = 1))\n"
		case 2:
			src = "load(\"//lib/broken.cinc\", \"x\")\n"
		case 3:
			src = "load(\"//lib/fails.cinc\", \"X\")\n"
		case 4:
			src = "load(\"//v.thrift\", \"V\")\nexport(V(n = 1))\n"
		}
		fsys[fmt.Sprintf("source/c%02d.cconf", i)] = &fstest.MapFile{Data: []byte(src)}
	}
	var paths []string
	for p := range fsys {
		if strings.HasSuffix(p, ".cconf") {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)

	// Each file that fails while loading: where, and the first config by
	// path that loads it (source/a/... comes before source/c00.cconf).
	shared := []struct{ pos, config string }{
		{"source/bad.thrift:2:15", "c00"},
		{"source/lib/broken.cinc:1:8", "a/loads_broken"},
		{"source/lib/fails.cinc:2:14", "a/b/loads_fails"},
		{"source/v.thrift-cvalidator:2:5", "c04"},
	}
	check := func(what string, l diag.List) {
		t.Helper()
		for _, s := range shared {
			var got []*diag.Diagnostic
			for _, d := range l {
				if d.Pos.String() == s.pos {
					got = append(got, d)
				}
			}
			if len(got) != 1 {
				t.Errorf("%s: %d diagnostics at %s, want 1:\n%s", what, len(got), s.pos, format(got))
				continue
			}
			note := diag.Note{Pos: diag.Pos{File: "source/" + s.config + ".cconf"}, Msg: fmt.Sprintf("while compiling config %q", s.config)}
			if d := got[0]; d.Config != s.config || !slices.Contains(d.Notes, note) {
				t.Errorf("%s: the diagnostic at %s is for config %q, want the first by path, %q, with the note %q:\n%s", what, s.pos, d.Config, s.config, note.Msg, format(got))
			}
		}
		// The check of U fails on each of its five configs.
		if n := len(l); n != len(shared)+5 {
			t.Errorf("%s: %d diagnostics, want %d:\n%s", what, n, len(shared)+5, format(l))
		}
	}

	run := func(jobs int) string {
		res := &Result{Outputs: New(fsys, Options{Jobs: jobs}).CompileAll(context.Background(), paths)}
		l := res.Diags()
		if jobs == 1 {
			check("CompileAll with 1 worker", l)
		}
		return format(l)
	}
	want := run(1)
	for i := range 20 {
		if got := run(4); got != want {
			t.Fatalf("run %d with 4 workers:\n%s\nwant (1 worker):\n%s", i, got, want)
		}
	}

	// What cfg compile reports.
	root := t.TempDir()
	for p, f := range fsys {
		writeFile(t, root, p, string(f.Data))
	}
	res, err := Build(context.Background(), root, Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	check("Build", res.Diags())
	if got := format(res.Diags()); got != want {
		t.Errorf("Build:\n%s\nwant (CompileAll, 1 worker):\n%s", got, want)
	}
}

// format lists diagnostics with their notes and configs, one block each.
func format(l []*diag.Diagnostic) string {
	var b strings.Builder
	for _, d := range l {
		fmt.Fprintf(&b, "%s [%s]\n", d.Long(), d.Config)
	}
	return b.String()
}
