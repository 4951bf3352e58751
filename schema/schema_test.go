package schema

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/diag"
)

func testdataFS(t *testing.T) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"job.thrift", "common.thrift"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		fsys["source/schemas/"+name] = &fstest.MapFile{Data: data}
	}
	return fsys
}

func TestLoad(t *testing.T) {
	l := NewLoader(testdataFS(t))
	f, err := l.Load("source/schemas/job.thrift")
	if err != nil {
		t.Fatal(err)
	}
	job := f.Structs["Job"]
	if job == nil {
		t.Fatal("no Job")
	}
	if got, want := job.Pos, (diag.Pos{File: "source/schemas/job.thrift", Line: 32, Col: 1}); got != want {
		t.Errorf("Job.Pos = %v, want %v", got, want)
	}
	var types []string
	for _, fld := range job.Fields {
		types = append(types, fld.Name+" "+fld.Type.String())
	}
	want := []string{
		"name string", "priority Priority", "resources Resources", "targets list<Target>",
		"tags set<string>", "limits map<string, i32>", "owner_id i64", "ep Endpoint", "ratio double", "blob binary",
	}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if got := job.Field("resources").Pos; got.Line != 35 || got.Col != 3 {
		t.Errorf("resources declared at %v, want line 35 col 3", got)
	}
	if job.Field("name").Required != Required || job.Field("resources").Required != Optional || job.Field("ratio").Required != Default {
		t.Error("requiredness not read from the IDL")
	}
	if it, ok := job.Field("priority").Default.(*EnumItem); !ok || it.Name != "HIGH" {
		t.Errorf("priority default = %#v, want Priority.HIGH", job.Field("priority").Default)
	}
	if d := job.Field("ratio").Default; d != float64(1) {
		t.Errorf("ratio default = %#v, want float64 1", d)
	}
	ep := job.Field("ep").Default.(*StructConst)
	if ep.Struct != f.Includes["common"].Structs["Endpoint"] || ep.Fields["port"] != int64(8080) {
		t.Errorf("ep default = %#v", ep)
	}
	// The included file is the same object when loaded on its own.
	common, err := l.Load("source/schemas/common.thrift")
	if err != nil {
		t.Fatal(err)
	}
	if common.Structs["Endpoint"] != job.Field("ep").Type.Struct {
		t.Error("types of an included file are not shared")
	}
	if f.Includes["common"] != common {
		t.Error("the include is not the loaded file")
	}
	if it := f.Enums["Priority"].Item("LOW"); it == nil || it.Value != 1 || it.Pos.Line != 6 {
		t.Errorf("Priority.LOW = %+v", it)
	}
	if f.Structs["Target"].Type != Union || f.Structs["Oops"].Type != Exception {
		t.Error("union or exception kind lost")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax", "struct X {\n  1: required i32 a\n  2 i32 b\n}\n", `source/x.thrift:3:5: got "i32", want ":" after the field ID`},
		{"unknown type", "struct X {\n  1: required Foo a\n}\n", `source/x.thrift:2:15: unknown type "Foo"`},
		{"bad default", "struct X {\n  1: required i32 a = \"s\"\n}\n", `source/x.thrift:2:23: X.a: default: got string "s", want i32`},
		{"missing include", "include \"nope.thrift\"\nstruct X {}\n", `source/x.thrift:1:1: cannot read schema "source/nope.thrift": file does not exist`},
		{"duplicate", "struct X {}\nstruct X {}\n", "source/x.thrift"},
		{"keyword", "struct X {\n  1: optional i32 list\n}\n", `source/x.thrift:2:19: got keyword "list", want the name of the field`},
		{"enum range", "enum E {\n  A = 2147483648\n}\n", `source/x.thrift:2:3: E.A: got 2147483648, want a value in the range of i32 (-2147483648..2147483647)`},
		{"enum overflow", "enum E {\n  A = 2147483647,\n  B\n}\n", `source/x.thrift:3:3: E.B: the value after 2147483647 overflows i32`},
		{"duplicate field ID", "struct X {\n  1: i32 a\n  1: i32 b\n}\n", `source/x.thrift:3:3: X.b: field ID 1 is already used by "a"`},
		{"constant out of range", "const i8 X = 300\n", `source/x.thrift:1:14: const X: got 300, want i8 (range -128..127)`},
		{"default out of range", "struct X {\n  1: optional i16 a = 40000\n}\n", `source/x.thrift:2:23: X.a: default: got 40000, want i16 (range -32768..32767)`},
		{"field ID too large", "struct X {\n  32768: optional i16 a\n}\n", `source/x.thrift:2:3: X.a: got field ID 32768, want at most 32767`},
		{"infinite double", "const double D = 1e400\n", `source/x.thrift:1:18: const D: got 1e400, want a finite double`},
		{"include cycle", "include \"x.thrift\"\n", `source/x.thrift:1:1: include cycle: source/x.thrift -> source/x.thrift`},
		{"string constant not UTF-8", "const string S = \"caf\xe9\"\n", `source/x.thrift:1:18: const S: got string with invalid UTF-8, want UTF-8 text (binary holds bytes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLoader(fstest.MapFS{"source/x.thrift": {Data: []byte(tt.src)}}).Load("source/x.thrift")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n%s\nwant prefix:\n%s", err, tt.want)
			}
		})
	}
}

// TestFieldIDs checks the field IDs Thrift's compiler gives fields without
// one, or with one of 0 or less: -1, -2, ... in declaration order.
func TestFieldIDs(t *testing.T) {
	src := "struct X {\n  string a\n  2: i32 b\n  0: i32 c\n  -7: i32 d\n  i32 e\n}\n"
	f, err := NewLoader(fstest.MapFS{"source/x.thrift": {Data: []byte(src)}}).Load("source/x.thrift")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fld := range f.Structs["X"].Fields {
		got = append(got, fmt.Sprintf("%s=%d", fld.Name, fld.ID))
	}
	if want := "a=-1 b=2 c=-2 d=-3 e=-4"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

// TestStructConstThroughTypedef checks that a constant of a struct type
// used as a default where the type is written as a typedef keeps the
// fields the constant sets. The Python code Thrift's compiler generates
// drops them (a known difference, see the README), so the conformance
// corpus cannot check this against the reference.
func TestStructConstThroughTypedef(t *testing.T) {
	src := "struct P {\n  1: optional i32 x\n  2: optional i32 y = 2\n}\ntypedef P Alias\nconst P ONE = {\"x\": 1}\nstruct S {\n  1: optional Alias corner = ONE\n}\n"
	f, err := NewLoader(fstest.MapFS{"source/x.thrift": {Data: []byte(src)}}).Load("source/x.thrift")
	if err != nil {
		t.Fatal(err)
	}
	c, ok := f.Structs["S"].Field("corner").Default.(*StructConst)
	if !ok || c.Struct != f.Structs["P"] || len(c.Fields) != 1 || c.Fields["x"] != int64(1) {
		t.Errorf("S.corner default = %#v, want P with x = 1", f.Structs["S"].Field("corner").Default)
	}
}
