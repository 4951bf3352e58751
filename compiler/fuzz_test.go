package compiler

import (
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rogpeppe/go-internal/txtar"
)

const fuzzSchema = `
enum Color { RED = 1, GREEN = 2 }
struct Inner { 1: required i32 n; 2: optional list<string> tags }
union U { 1: string s; 2: i64 i }
struct Root {
  1: required string name
  2: optional Inner inner
  3: optional map<string, Inner> m
  4: optional set<Color> colors
  5: optional U u
  6: optional double d = 1.5
  7: optional binary b
}
`

// FuzzCompile checks that compiling any program never panics, and that a
// failing program reports diagnostics positioned in a file and produces no
// output.
func FuzzCompile(f *testing.F) {
	archives, _ := filepath.Glob("testdata/golden/*.txtar")
	for _, name := range archives {
		ar, err := txtar.ParseFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range ar.Files {
			if strings.HasSuffix(file.Name, ".cconf") {
				f.Add(string(file.Data))
			}
		}
	}
	f.Add(`load("//s.thrift", "Root", "Inner", "Color", "U")
export(Root(name="x", inner=Inner(n=1, tags=["a"]), m={"k": Inner(n=2)}, colors=[Color.RED], u=U(i=3)))`)
	f.Add(`load("//m.cinc", "make")
export(make())`)
	f.Fuzz(func(t *testing.T, src string) {
		fsys := fstest.MapFS{
			"source/s.thrift": {Data: []byte(fuzzSchema)},
			"source/m.cinc":   {Data: []byte("load(\"s.thrift\", \"Root\")\ndef make():\n    return Root(name = \"m\")\n")},
			"source/x.cconf":  {Data: []byte(src)},
		}
		c := New(fsys, Options{Jobs: 1, MaxSteps: 100_000})
		out := c.Compile("source/x.cconf")
		if len(out.Diags) == 0 {
			if len(out.Data) == 0 || out.Data[len(out.Data)-1] != '\n' {
				t.Fatalf("successful compile with bad output %q", out.Data)
			}
			return
		}
		if out.Data != nil {
			t.Fatal("failed compile produced output")
		}
		for _, d := range out.Diags {
			if d.Pos.File == "" || d.Pos.Line == 0 {
				t.Fatalf("diagnostic not positioned: %q", d.Error())
			}
		}
	})
}
