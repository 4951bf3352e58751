package compiler

import (
	"bytes"
	"math/rand/v2"
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

// FuzzThriftValue checks that decoding any bytes in either Thrift encoding
// never panics, and that what decodes is canonical: encoding the value
// read and decoding that gives the same JSON, and the same bytes again.
func FuzzThriftValue(f *testing.F) {
	st := testStruct(f, "Msg")
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		v := randomStruct(rng, st, 0)
		for i, enc := range thriftEncodings {
			data, err := EncodeThrift(v, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, i == 1)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, compact bool) {
		enc := thriftEncodings[0]
		if compact {
			enc = thriftEncodings[1]
		}
		js, err := decodeThrift(st, data, enc)
		if err != nil {
			return
		}
		v, err := readThrift(st, data, enc)
		if err != nil {
			t.Fatalf("decodes to JSON but not to a value: %v", err)
		}
		again, err := EncodeThrift(v, enc)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		js2, err := decodeThrift(st, again, enc)
		if err != nil || !bytes.Equal(js, js2) {
			t.Fatalf("re-encoded value decodes to\n%s\n(err %v), want\n%s", js2, err, js)
		}
		v2, err := readThrift(st, again, enc)
		if err != nil {
			t.Fatal(err)
		}
		if third, err := EncodeThrift(v2, enc); err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not canonical: %x then %x", again, third)
		}
	})
}
