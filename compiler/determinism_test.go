package compiler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cfg-dev/cfg/diag"
)

// TestDiagnosticsDeterministic checks that the diagnostics of a compile do
// not depend on the number of workers or on which worker finished first: a
// broken schema, module and validator shared by many configs are reported
// once each, attributed to the first config by path, with the same notes.
func TestDiagnosticsDeterministic(t *testing.T) {
	fsys := fstest.MapFS{
		"source/bad.thrift":           {Data: []byte("struct T {\n  1: optional Missing m\n}\n")},
		"source/ok.thrift":            {Data: []byte("struct U {\n  1: optional i32 n\n}\n")},
		"source/ok.thrift-cvalidator": {Data: []byte("load(\"//ok.thrift\", \"U\")\ndef check(u):\n    fail(\"no\")\nadd_validator(U, check)\n")},
		"source/lib/broken.cinc":      {Data: []byte("x = 1 +\n")},
		"source/lib/fails.cinc":       {Data: []byte("def f():\n    return 1 // 0\nX = f()\n")},
	}
	var paths []string
	for i := range 24 {
		p := fmt.Sprintf("source/c%02d.cconf", i)
		var src string
		switch i % 4 {
		case 0:
			src = "load(\"//bad.thrift\", \"T\")\nexport(T())\n"
		case 1:
			src = "load(\"//ok.thrift\", \"U\")\nexport(U(n = 1))\n"
		case 2:
			src = "load(\"//lib/broken.cinc\", \"x\")\n"
		case 3:
			src = "load(\"//lib/fails.cinc\", \"X\")\n"
		}
		fsys[p] = &fstest.MapFile{Data: []byte(src)}
		paths = append(paths, p)
	}
	run := func(jobs int) string {
		var l diag.List
		for _, o := range New(fsys, Options{Jobs: jobs}).CompileAll(context.Background(), paths) {
			l = append(l, o.Diags...)
		}
		l.Sort()
		var b strings.Builder
		for _, d := range l {
			fmt.Fprintf(&b, "%s [%s]\n", d.Long(), d.Config)
		}
		return b.String()
	}
	want := run(1)
	for i := range 20 {
		if got := run(4); got != want {
			t.Fatalf("run %d with 4 workers:\n%s\nwant (1 worker):\n%s", i, got, want)
		}
	}
}
