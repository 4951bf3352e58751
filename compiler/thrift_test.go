package compiler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/rogpeppe/go-internal/txtar"
	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/schema"
)

var thriftEncodings = []string{EncodingThriftBinary, EncodingThriftCompact}

// compileValue compiles the config at p and returns its canonical JSON and
// its exported value.
func compileValue(t testing.TB, c *Compiler, p string) ([]byte, *Struct) {
	t.Helper()
	out := c.Compile(p)
	if len(out.Diags) > 0 {
		t.Fatalf("%s: %s", p, out.Diags.Error())
	}
	// Output carries encodings, not the value: run the program again (its
	// modules are cached by c) to get the value itself.
	v, _, diags := c.run(p, nil)
	if len(diags) > 0 {
		t.Fatalf("%s: %s", p, diags.Error())
	}
	return out.Data, v
}

// checkRoundTrip encodes the value of the config at p in every Thrift
// encoding, decodes it through the public API and compares the JSON with
// what the compiler writes. It also checks that the encoding is canonical:
// encoding the decoded value gives the same bytes.
func checkRoundTrip(t *testing.T, fsys fs.FS, c *Compiler, p string) {
	t.Helper()
	want, v := compileValue(t, c, p)
	for _, enc := range thriftEncodings {
		data, err := EncodeThrift(v, enc)
		if err != nil {
			t.Errorf("%s: EncodeThrift(%s): %v", p, enc, err)
			continue
		}
		if again, err := EncodeThrift(v, enc); err != nil || !bytes.Equal(data, again) {
			t.Errorf("%s: EncodeThrift(%s) differs between two calls", p, enc)
		}
		got, err := DecodeThrift(fsys, v.t.File, v.t.Name, data, enc)
		if err != nil {
			t.Errorf("%s: DecodeThrift(%s): %v", p, enc, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s round trip differs from the compiled JSON:\ngot:\n%s\nwant:\n%s", p, enc, got, want)
		}
		back, err := readThrift(v.t, data, enc)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := EncodeThrift(back, enc); err != nil || !bytes.Equal(again, data) {
			t.Errorf("%s: %s: encoding the decoded value gives other bytes (error %v)", p, enc, err)
		}
	}
}

// TestThriftRoundTripExamples round-trips every config of every example.
func TestThriftRoundTripExamples(t *testing.T) {
	roots, _ := filepath.Glob("../examples/*/source")
	if len(roots) == 0 {
		t.Fatal("no examples")
	}
	for _, src := range roots {
		root := filepath.Dir(src)
		t.Run(filepath.Base(root), func(t *testing.T) {
			fsys := os.DirFS(root)
			tree, err := repo.Scan(fsys)
			if err != nil {
				t.Fatal(err)
			}
			if len(tree.Configs) == 0 {
				t.Fatal("no configs")
			}
			c := New(fsys, Options{})
			for _, p := range tree.Configs {
				checkRoundTrip(t, fsys, c, p)
			}
		})
	}
}

// TestThriftRoundTripGolden round-trips every config of the golden archives
// that compiles; types.txtar holds every Thrift type.
func TestThriftRoundTripGolden(t *testing.T) {
	archives, _ := filepath.Glob("testdata/golden/*.txtar")
	n := 0
	for _, name := range archives {
		ar, err := txtar.ParseFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fsys := goldenFS(ar)
		tree, err := repo.Scan(fsys)
		if err != nil {
			t.Fatal(err)
		}
		c := New(fsys, Options{})
		for _, p := range tree.Configs {
			if len(c.Compile(p).Diags) > 0 {
				continue // errors.txtar and the like
			}
			checkRoundTrip(t, fsys, c, p)
			n++
		}
	}
	if n < 5 {
		t.Errorf("only %d golden configs round-tripped", n)
	}
}

const testSchema = `
enum Color { RED = 1, GREEN = 2 }
struct Inner {
  1: optional string label
  2: optional bool on
}
union U { 1: string s; 2: i64 i }
struct Msg {
  1: required string name
  2: optional bool flag
  3: optional i64 big
  4: optional Color color
  5: optional list<Inner> inners
  6: optional set<i32> nums
  7: optional map<string, binary> blobs
  8: optional double ratio
  9: optional i8 tiny
  10: optional i16 small
  11: optional U u
  12: optional map<Color, list<bool>> flags
  13: optional set<Inner> inner_set
}
struct Node {
  1: optional Node link
  2: optional list<Node> kids
}
typedef Msg Message
struct Mixed {
  3: optional i32 c
  1: optional i32 a
}
`

func testFS() fstest.MapFS {
	return fstest.MapFS{"source/s.thrift": {Data: []byte(testSchema)}}
}

func testStruct(t testing.TB, name string) *schema.Struct {
	t.Helper()
	f, err := schema.NewLoader(testFS()).Load("source/s.thrift")
	if err != nil {
		t.Fatal(err)
	}
	return f.Structs[name]
}

// writeThrift builds data with a protocol of Thrift's library directly, the
// way another writer (generated code in another language) would.
func writeThrift(t testing.TB, enc string, write func(ctx context.Context, p thrift.TProtocol) error) []byte {
	t.Helper()
	buf := thrift.NewTMemoryBuffer()
	p, err := newProtocol(enc, buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// field writes one field with a value written by v.
func field(ctx context.Context, p thrift.TProtocol, name string, tt thrift.TType, id int16, v func() error) error {
	return errors.Join(p.WriteFieldBegin(ctx, name, tt, id), v(), p.WriteFieldEnd(ctx))
}

// TestDecodeThriftForeignWriter decodes data written field by field with
// Thrift's protocols: fields out of order, fields the schema does not know
// (skipped), a set with duplicates and bools in fields and containers
// (which the compact protocol writes differently).
func TestDecodeThriftForeignWriter(t *testing.T) {
	want := `{
  "name": "hand made",
  "flag": true,
  "big": -9007199254740993,
  "color": "GREEN",
  "inners": [
    {
      "label": "a",
      "on": false
    },
    {}
  ],
  "nums": [
    -1,
    3,
    70000
  ],
  "blobs": {
    "k": "AAE="
  },
  "ratio": 0.25,
  "tiny": -7,
  "small": 300,
  "u": {
    "i": 5
  },
  "flags": {
    "RED": [
      true,
      false
    ]
  }
}
`
	for _, enc := range thriftEncodings {
		data := writeThrift(t, enc, func(ctx context.Context, p thrift.TProtocol) error {
			return errors.Join(
				p.WriteStructBegin(ctx, "Msg"),
				field(ctx, p, "color", thrift.I32, 4, func() error { return p.WriteI32(ctx, 2) }),
				// An unknown field holding a struct with a list and a bool.
				field(ctx, p, "future", thrift.STRUCT, 40, func() error {
					return errors.Join(
						p.WriteStructBegin(ctx, "Future"),
						field(ctx, p, "xs", thrift.LIST, 1, func() error {
							return errors.Join(p.WriteListBegin(ctx, thrift.STRING, 2), p.WriteString(ctx, "x"), p.WriteString(ctx, "y"), p.WriteListEnd(ctx))
						}),
						field(ctx, p, "b", thrift.BOOL, 2, func() error { return p.WriteBool(ctx, true) }),
						p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
				}),
				field(ctx, p, "name", thrift.STRING, 1, func() error { return p.WriteString(ctx, "hand made") }),
				field(ctx, p, "flag", thrift.BOOL, 2, func() error { return p.WriteBool(ctx, true) }),
				// Unknown: a bool, then a map.
				field(ctx, p, "old", thrift.BOOL, 41, func() error { return p.WriteBool(ctx, false) }),
				field(ctx, p, "oldmap", thrift.MAP, -3, func() error {
					return errors.Join(p.WriteMapBegin(ctx, thrift.I64, thrift.DOUBLE, 1), p.WriteI64(ctx, 1), p.WriteDouble(ctx, 2), p.WriteMapEnd(ctx))
				}),
				field(ctx, p, "big", thrift.I64, 3, func() error { return p.WriteI64(ctx, -(1<<53)-1) }),
				field(ctx, p, "inners", thrift.LIST, 5, func() error {
					return errors.Join(p.WriteListBegin(ctx, thrift.STRUCT, 2),
						p.WriteStructBegin(ctx, "Inner"),
						field(ctx, p, "on", thrift.BOOL, 2, func() error { return p.WriteBool(ctx, false) }),
						field(ctx, p, "label", thrift.STRING, 1, func() error { return p.WriteString(ctx, "a") }),
						p.WriteFieldStop(ctx), p.WriteStructEnd(ctx),
						p.WriteStructBegin(ctx, "Inner"), p.WriteFieldStop(ctx), p.WriteStructEnd(ctx),
						p.WriteListEnd(ctx))
				}),
				field(ctx, p, "nums", thrift.SET, 6, func() error {
					return errors.Join(p.WriteSetBegin(ctx, thrift.I32, 4),
						p.WriteI32(ctx, 70000), p.WriteI32(ctx, 3), p.WriteI32(ctx, -1), p.WriteI32(ctx, 3),
						p.WriteSetEnd(ctx))
				}),
				field(ctx, p, "blobs", thrift.MAP, 7, func() error {
					return errors.Join(p.WriteMapBegin(ctx, thrift.STRING, thrift.STRING, 1),
						p.WriteString(ctx, "k"), p.WriteBinary(ctx, []byte{0, 1}), p.WriteMapEnd(ctx))
				}),
				field(ctx, p, "ratio", thrift.DOUBLE, 8, func() error { return p.WriteDouble(ctx, 0.25) }),
				field(ctx, p, "tiny", thrift.BYTE, 9, func() error { return p.WriteByte(ctx, -7) }),
				field(ctx, p, "small", thrift.I16, 10, func() error { return p.WriteI16(ctx, 300) }),
				field(ctx, p, "u", thrift.STRUCT, 11, func() error {
					return errors.Join(p.WriteStructBegin(ctx, "U"),
						field(ctx, p, "i", thrift.I64, 2, func() error { return p.WriteI64(ctx, 5) }),
						p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
				}),
				field(ctx, p, "flags", thrift.MAP, 12, func() error {
					return errors.Join(p.WriteMapBegin(ctx, thrift.I32, thrift.LIST, 1),
						p.WriteI32(ctx, 1),
						p.WriteListBegin(ctx, thrift.BOOL, 2), p.WriteBool(ctx, true), p.WriteBool(ctx, false), p.WriteListEnd(ctx),
						p.WriteMapEnd(ctx))
				}),
				p.WriteFieldStop(ctx),
				p.WriteStructEnd(ctx))
		})
		got, err := DecodeThrift(testFS(), "source/s.thrift", "Msg", data, enc)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if string(got) != want {
			t.Errorf("%s: got\n%s\nwant\n%s", enc, got, want)
		}
	}
}

// defaultsSchema declares IDL defaults on fields of every requiredness, of
// a container type and of a struct type, and on the fields of a nested
// struct.
const defaultsSchema = `
struct Limits {
  1: optional i32 cpu = 2
  2: i32 mem = 512
}
struct Job {
  1: required string name
  2: optional i32 replicas = 3
  3: string owner = "ops"
  4: optional list<string> tags = ["a"]
  5: optional Limits limits
  6: Limits base = {"cpu": 1}
}
struct Port {
  1: required i32 number = 80
}
`

// TestDecodeThriftNoDefaults decodes, in both encodings, data from another
// writer that leaves out fields with IDL defaults: the JSON leaves them out
// too, in the value and in a nested struct, and a required field with a
// default is still missing. Compiling a config shows the defaults are
// there to apply.
func TestDecodeThriftNoDefaults(t *testing.T) {
	fsys := fstest.MapFS{
		"source/d.thrift": {Data: []byte(defaultsSchema)},
		"source/j.cconf":  {Data: []byte("load(\"//d.thrift\", \"Job\", \"Limits\")\nexport(Job(name = \"j\", limits = Limits()))\n")},
	}
	compiled := New(fsys, Options{}).Compile("source/j.cconf")
	if len(compiled.Diags) > 0 {
		t.Fatal(compiled.Diags.Error())
	}
	for _, name := range []string{`"replicas": 3`, `"owner": "ops"`, `"mem": 512`, `"base": {`} {
		if !strings.Contains(string(compiled.Data), name) {
			t.Fatalf("the compiled config lacks %s, a default the test relies on:\n%s", name, compiled.Data)
		}
	}

	want := "{\n  \"name\": \"j\",\n  \"limits\": {}\n}\n"
	for _, enc := range thriftEncodings {
		data := writeThrift(t, enc, func(ctx context.Context, p thrift.TProtocol) error {
			return errors.Join(
				p.WriteStructBegin(ctx, "Job"),
				field(ctx, p, "name", thrift.STRING, 1, func() error { return p.WriteString(ctx, "j") }),
				field(ctx, p, "limits", thrift.STRUCT, 5, func() error {
					return errors.Join(p.WriteStructBegin(ctx, "Limits"), p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
				}),
				p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
		})
		got, err := DecodeThrift(fsys, "source/d.thrift", "Job", data, enc)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if string(got) != want {
			t.Errorf("%s: got\n%s\nwant (no IDL default applied)\n%s", enc, got, want)
		}

		empty := writeThrift(t, enc, func(ctx context.Context, p thrift.TProtocol) error {
			return errors.Join(p.WriteStructBegin(ctx, "Port"), p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
		})
		got, err = DecodeThrift(fsys, "source/d.thrift", "Port", empty, enc)
		if want := "Port.number: missing required field"; err == nil || err.Error() != want {
			t.Errorf("%s: a required field with a default left out: got %q, error %v; want error %q", enc, got, err, want)
		}
	}
}

// fields writes a Msg struct holding the given fields.
func msg(fields ...func(ctx context.Context, p thrift.TProtocol) error) func(ctx context.Context, p thrift.TProtocol) error {
	return func(ctx context.Context, p thrift.TProtocol) error {
		errs := []error{p.WriteStructBegin(ctx, "Msg")}
		for _, f := range fields {
			errs = append(errs, f(ctx, p))
		}
		errs = append(errs, p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
		return errors.Join(errs...)
	}
}

func nameField(ctx context.Context, p thrift.TProtocol) error {
	return field(ctx, p, "name", thrift.STRING, 1, func() error { return p.WriteString(ctx, "n") })
}

func TestDecodeThriftErrors(t *testing.T) {
	type writeFunc = func(ctx context.Context, p thrift.TProtocol) error
	tests := []struct {
		name    string
		write   writeFunc
		extra   []byte // appended to what write writes
		wantErr string
	}{
		{
			name:    "missing required field",
			write:   msg(),
			wantErr: "Msg.name: missing required field",
		},
		{
			name: "wrong wire type",
			write: msg(func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "name", thrift.I32, 1, func() error { return p.WriteI32(ctx, 1) })
			}),
			wantErr: "Msg.name: got wire type i32, want string",
		},
		{
			name: "enum as string",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "color", thrift.STRING, 4, func() error { return p.WriteString(ctx, "RED") })
			}),
			wantErr: "Msg.color: got wire type string, want i32 (enum Color)",
		},
		{
			name: "wrong element type",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "inners", thrift.LIST, 5, func() error {
					return errors.Join(p.WriteListBegin(ctx, thrift.I32, 1), p.WriteI32(ctx, 1), p.WriteListEnd(ctx))
				})
			}),
			wantErr: "Msg.inners: got list elements of wire type i32, want list<Inner>",
		},
		{
			name: "list for a set",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "nums", thrift.LIST, 6, func() error {
					return errors.Join(p.WriteListBegin(ctx, thrift.I32, 0), p.WriteListEnd(ctx))
				})
			}),
			wantErr: "Msg.nums: got wire type list, want set",
		},
		{
			name: "wrong map value type",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "flags", thrift.MAP, 12, func() error {
					return errors.Join(p.WriteMapBegin(ctx, thrift.I32, thrift.SET, 1), p.WriteI32(ctx, 1),
						p.WriteSetBegin(ctx, thrift.BOOL, 0), p.WriteSetEnd(ctx), p.WriteMapEnd(ctx))
				})
			}),
			wantErr: "Msg.flags: got map values of wire type set, want map<Color, list<bool>>",
		},
		{
			name: "nested wrong type",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "inners", thrift.LIST, 5, func() error {
					return errors.Join(p.WriteListBegin(ctx, thrift.STRUCT, 2),
						p.WriteStructBegin(ctx, "Inner"), p.WriteFieldStop(ctx), p.WriteStructEnd(ctx),
						p.WriteStructBegin(ctx, "Inner"),
						field(ctx, p, "label", thrift.I16, 1, func() error { return p.WriteI16(ctx, 1) }),
						p.WriteFieldStop(ctx), p.WriteStructEnd(ctx),
						p.WriteListEnd(ctx))
				})
			}),
			wantErr: "Msg.inners[1].label: got wire type i16, want string",
		},
		{
			name: "unknown enum value",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "color", thrift.I32, 4, func() error { return p.WriteI32(ctx, 7) })
			}),
			wantErr: "Msg.color: got 7, want a value of enum Color",
		},
		{
			name: "unknown enum key",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "flags", thrift.MAP, 12, func() error {
					return errors.Join(p.WriteMapBegin(ctx, thrift.I32, thrift.LIST, 1), p.WriteI32(ctx, 0),
						p.WriteListBegin(ctx, thrift.BOOL, 0), p.WriteListEnd(ctx), p.WriteMapEnd(ctx))
				})
			}),
			wantErr: "Msg.flags[key 0]: got 0, want a value of enum Color",
		},
		{
			name: "truncated map value",
			write: func(ctx context.Context, p thrift.TProtocol) error {
				return errors.Join(p.WriteStructBegin(ctx, "Msg"), nameField(ctx, p),
					p.WriteFieldBegin(ctx, "blobs", thrift.MAP, 7), p.WriteMapBegin(ctx, thrift.STRING, thrift.STRING, 1),
					p.WriteString(ctx, "k"), p.WriteI32(ctx, 1000))
			},
			wantErr: `Msg.blobs["k"]: unexpected end of data`,
		},
		{
			name: "truncated string",
			write: func(ctx context.Context, p thrift.TProtocol) error {
				return errors.Join(p.WriteStructBegin(ctx, "Msg"), p.WriteFieldBegin(ctx, "name", thrift.STRING, 1),
					p.WriteI32(ctx, 6), p.WriteByte(ctx, 'a'))
			},
			wantErr: `Msg.name: unexpected end of data`,
		},
		{
			name: "truncated unknown field",
			write: func(ctx context.Context, p thrift.TProtocol) error {
				return errors.Join(p.WriteStructBegin(ctx, "Msg"), nameField(ctx, p),
					p.WriteFieldBegin(ctx, "x", thrift.STRUCT, 30), p.WriteFieldBegin(ctx, "y", thrift.I64, 1))
			},
			wantErr: "Msg.30 (a field not in the schema): unexpected end of data",
		},
		{
			name: "container longer than the data",
			write: func(ctx context.Context, p thrift.TProtocol) error {
				return errors.Join(p.WriteStructBegin(ctx, "Msg"), nameField(ctx, p),
					p.WriteFieldBegin(ctx, "x", thrift.LIST, 30), p.WriteListBegin(ctx, thrift.DOUBLE, 1000))
			},
			wantErr: "Msg.30 (a field not in the schema): container of 1000 elements needs at least 8000 bytes, only 0 remaining",
		},
		{
			name: "not finite",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "ratio", thrift.DOUBLE, 8, func() error { return p.WriteDouble(ctx, math.Inf(-1)) })
			}),
			wantErr: "Msg.ratio: got -inf, want a finite double",
		},
		{
			name: "union with two members",
			write: msg(nameField, func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "u", thrift.STRUCT, 11, func() error {
					return errors.Join(p.WriteStructBegin(ctx, "U"),
						field(ctx, p, "s", thrift.STRING, 1, func() error { return p.WriteString(ctx, "a") }),
						field(ctx, p, "i", thrift.I64, 2, func() error { return p.WriteI64(ctx, 1) }),
						p.WriteFieldStop(ctx), p.WriteStructEnd(ctx))
				})
			}),
			wantErr: "Msg.u: union takes exactly one member, got 2",
		},
		{
			name: "every problem reported",
			write: msg(func(ctx context.Context, p thrift.TProtocol) error {
				return field(ctx, p, "ratio", thrift.DOUBLE, 8, func() error { return p.WriteDouble(ctx, math.NaN()) })
			}),
			wantErr: "Msg.name: missing required field\nMsg.ratio: got nan, want a finite double",
		},
		{
			name:    "trailing data",
			write:   msg(nameField),
			extra:   []byte{0, 0},
			wantErr: "Msg: unexpected data after the value (2 more bytes)",
		},
		{
			name:    "empty",
			write:   func(context.Context, thrift.TProtocol) error { return nil },
			wantErr: "Msg: unexpected end of data",
		},
	}
	for _, tt := range tests {
		for _, enc := range thriftEncodings {
			data := append(writeThrift(t, enc, tt.write), tt.extra...)
			_, err := DecodeThrift(testFS(), "source/s.thrift", "Msg", data, enc)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("%s, %s: got error %v, want a *DecodeError", tt.name, enc, err)
				continue
			}
			if err.Error() != tt.wantErr {
				t.Errorf("%s, %s:\ngot error  %q\nwant error %q", tt.name, enc, err, tt.wantErr)
			}
		}
	}
}

// TestDecodeThriftUnknownWireType checks data whose type codes are none of
// Thrift's.
func TestDecodeThriftUnknownWireType(t *testing.T) {
	tests := []struct {
		enc     string
		data    []byte
		wantErr string
	}{
		{EncodingThriftBinary, []byte{104, 0, 1}, "Msg.name: got unknown wire type 104"},
		{EncodingThriftBinary, []byte{104, 0, 99}, "Msg.99 (a field not in the schema): got unknown wire type 104"},
		{EncodingThriftBinary, []byte{thrift.LIST, 0, 5, 99, 0, 0, 0, 1, 0, 0}, "Msg.inners: got list elements of unknown wire type 99, want list<Inner>"},
		{EncodingThriftCompact, []byte{0x1e}, "Msg: don't know what type: 14"},
	}
	for _, tt := range tests {
		_, err := DecodeThrift(testFS(), "source/s.thrift", "Msg", tt.data, tt.enc)
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("%s %x: got error %v, want %q", tt.enc, tt.data, err, tt.wantErr)
		}
	}
}

// TestDepthLimit checks that values may nest MaxDepth deep, structs and
// containers counted, and no deeper, in canonical JSON and in both Thrift
// encodings alike, when writing and when reading.
func TestDepthLimit(t *testing.T) {
	node := testStruct(t, "Node")
	kids := node.Field("kids")
	// chain returns a value n deep: Node.link.link... or, through lists,
	// Node.kids[0].kids[0]... (two levels a step).
	chain := func(n int, lists bool) *Struct {
		v := newStruct(node, origin{})
		for d := 1; d < n; {
			outer := newStruct(node, origin{})
			if lists && d+2 <= n {
				outer.fields[kids.Index] = starlark.NewList([]starlark.Value{v})
				d += 2
			} else {
				outer.fields[0] = v
				d++
			}
			v = outer
		}
		return v
	}
	wantMsg := "value nested more than 64 deep (structs, lists, sets and maps count, the exported struct as 1)"
	for _, lists := range []bool{false, true} {
		ok, deep := chain(MaxDepth, lists), chain(MaxDepth+1, lists)
		if _, errs := encodeRoot(ok); len(errs) > 0 {
			t.Fatalf("lists %v: JSON of %d levels: %v", lists, MaxDepth, errs[0].err)
		}
		_, errs := encodeRoot(deep)
		if len(errs) != 1 || !strings.HasSuffix(errs[0].err.Error(), ": "+wantMsg) {
			t.Errorf("lists %v: JSON of %d levels: got %v, want one error %q", lists, MaxDepth+1, errs, wantMsg)
		}
		for _, enc := range thriftEncodings {
			data, err := EncodeThrift(ok, enc)
			if err != nil {
				t.Fatalf("%s: lists %v: %d levels: %v", enc, lists, MaxDepth, err)
			}
			if _, err := DecodeThrift(testFS(), "source/s.thrift", "Node", data, enc); err != nil {
				t.Errorf("%s: lists %v: decoding %d levels: %v", enc, lists, MaxDepth, err)
			}
			_, err = EncodeThrift(deep, enc)
			if err == nil || !strings.HasSuffix(err.Error(), ": "+wantMsg) {
				t.Errorf("%s: lists %v: encoding %d levels: got error %v, want %q", enc, lists, MaxDepth+1, err, wantMsg)
			}
		}
	}
	for _, enc := range thriftEncodings {
		// Hand-made data nested one level too deep.
		deep := writeThrift(t, enc, func(ctx context.Context, p thrift.TProtocol) error {
			var errs []error
			for range MaxDepth + 1 {
				errs = append(errs, p.WriteStructBegin(ctx, "Node"), p.WriteFieldBegin(ctx, "link", thrift.STRUCT, 1))
			}
			return errors.Join(errs...)
		})
		_, err := DecodeThrift(testFS(), "source/s.thrift", "Node", deep, enc)
		if want := "Node" + strings.Repeat(".link", MaxDepth) + ": " + wantMsg; err == nil || err.Error() != want {
			t.Errorf("%s: decoding %d levels: got error %v, want %q", enc, MaxDepth+1, err, want)
		}
	}
}

func TestDecodeThriftLookup(t *testing.T) {
	data := writeThrift(t, EncodingThriftBinary, msg(nameField))
	fsys := testFS()
	fsys["source/inc.thrift"] = &fstest.MapFile{Data: []byte("include \"s.thrift\"\nstruct Local { 1: optional s.Inner inner }\n")}
	tests := []struct {
		path, name, enc string
		wantErr         string
	}{
		{"source/s.thrift", "Msg", EncodingThriftBinary, ""},
		{"source/s.thrift", "Message", EncodingThriftBinary, ""}, // a typedef
		{"source/inc.thrift", "s.Msg", EncodingThriftBinary, ""},
		{"source/s.thrift", "Msgs", EncodingThriftBinary, `source/s.thrift: no struct "Msgs" (did you mean "Msg"?)`},
		{"source/s.thrift", "Zzzzzz", EncodingThriftBinary, `source/s.thrift: no struct "Zzzzzz" (structs: Inner, Message, Mixed, Msg, Node, U)`},
		{"source/inc.thrift", "s.Msgs", EncodingThriftBinary, `source/inc.thrift: no struct "s.Msgs" (did you mean "s.Msg"?)`},
		{"source/inc.thrift", "t.Msg", EncodingThriftBinary, `source/inc.thrift: no struct "t.Msg": the schema does not include "t"`},
		{"source/s.thrift", "Color", EncodingThriftBinary, `source/s.thrift: "Color" is an enum, want a struct`},
		{"source/s.thrift", "Msg", "json", `unknown encoding "json" (want thrift-binary or thrift-compact)`},
		{"source/nope.thrift", "Msg", EncodingThriftBinary, `source/nope.thrift: cannot read schema "source/nope.thrift": file does not exist`},
	}
	for _, tt := range tests {
		_, err := DecodeThrift(fsys, tt.path, tt.name, data, tt.enc)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.wantErr {
			t.Errorf("DecodeThrift(%s, %s, %s): got error %q, want %q", tt.path, tt.name, tt.enc, got, tt.wantErr)
		}
	}
	for _, p := range []string{"source/nope.thrift", "source/s.thrift"} {
		var l diag.List
		if _, err := DecodeThrift(fsys, p, "Nope", data, EncodingThriftBinary); !errors.As(err, &l) {
			t.Errorf("DecodeThrift(%s, Nope): got %T, want a diag.List", p, err)
		}
	}
	if _, err := EncodeThrift(newStruct(testStruct(t, "Msg"), origin{}), "json"); err == nil || err.Error() != `unknown encoding "json" (want thrift-binary or thrift-compact)` {
		t.Errorf("EncodeThrift with an unknown encoding: got %v", err)
	}
}

// TestEncodeThriftCanonical checks that sets and maps are written in
// canonical order, whatever order the value holds them in.
func TestEncodeThriftCanonical(t *testing.T) {
	fsys := testFS()
	fsys["source/a.cconf"] = &fstest.MapFile{Data: []byte(`load("//s.thrift", "Msg", "Color", "Inner")
export(Msg(name = "x", nums = [3, -1, 3, 2], blobs = {"b": "2", "a": "1"}, flags = {Color.GREEN: [], Color.RED: [True]},
    inner_set = [Inner(label = "b"), Inner(label = "a", on = True), Inner(label = "b"), Inner()]))
`)}
	fsys["source/b.cconf"] = &fstest.MapFile{Data: []byte(`load("//s.thrift", "Msg", "Color", "Inner")
export(Msg(name = "x", nums = [-1, 2, 3], blobs = {"a": "1", "b": "2"}, flags = {Color.RED: [True], Color.GREEN: []},
    inner_set = [Inner(), Inner(label = "a", on = True), Inner(label = "b")]))
`)}
	c := New(fsys, Options{})
	_, a := compileValue(t, c, "source/a.cconf")
	_, b := compileValue(t, c, "source/b.cconf")
	for _, enc := range thriftEncodings {
		da, err1 := EncodeThrift(a, enc)
		db, err2 := EncodeThrift(b, enc)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s: the same value in another order encodes differently:\n%x\n%x", enc, da, db)
		}
		back, err := readThrift(a.t, da, enc)
		if err != nil {
			t.Fatal(err)
		}
		if n := back.fields[a.t.Field("inner_set").Index].(*starlark.List).Len(); n != 3 {
			t.Errorf("%s: a set of 4 elements with one duplicate is written with %d elements, want 3", enc, n)
		}
	}
}

// TestEncodeThriftFieldOrder checks that fields are written in field ID
// order, as Thrift's generated code writes them, and read in any order.
func TestEncodeThriftFieldOrder(t *testing.T) {
	v := newStruct(testStruct(t, "Mixed"), origin{})
	v.fields[0], v.fields[1] = starlark.MakeInt(3), starlark.MakeInt(1)
	data, err := EncodeThrift(v, EncodingThriftBinary)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{thrift.I32, 0, 1, 0, 0, 0, 1, thrift.I32, 0, 3, 0, 0, 0, 3, thrift.STOP}
	if !bytes.Equal(data, want) {
		t.Errorf("got %x, want %x", data, want)
	}
	got, err := DecodeThrift(testFS(), "source/s.thrift", "Mixed", data, EncodingThriftBinary)
	if want := "{\n  \"c\": 3,\n  \"a\": 1\n}\n"; err != nil || string(got) != want {
		t.Errorf("decoding: got %q, %v; want %q", got, err, want)
	}
}

// TestDecodeThriftCorrupt checks that every truncation of a valid encoding
// is an error and that no corruption panics.
func TestDecodeThriftCorrupt(t *testing.T) {
	ar, err := txtar.ParseFile("testdata/golden/types.txtar")
	if err != nil {
		t.Fatal(err)
	}
	fsys := goldenFS(ar)
	_, v := compileValue(t, New(fsys, Options{}), "source/all.cconf")
	for _, enc := range thriftEncodings {
		data, err := EncodeThrift(v, enc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(data) {
			_, err := decodeThrift(v.t, data[:i], enc)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%s: decoding the first %d of %d bytes: got error %v, want a *DecodeError", enc, i, len(data), err)
			}
		}
		for i := range len(data) {
			for _, b := range []byte{0x00, 0xff, 0x7f, 0x80, data[i] ^ 0x0f} {
				bad := bytes.Clone(data)
				bad[i] = b
				decodeThrift(v.t, bad, enc) // must not panic
			}
		}
	}
}

// FuzzDecodeThrift decodes arbitrary data as the All struct of the golden
// types archive (every Thrift type). Decoding must not panic; what decodes
// must be valid JSON, and encoding the decoded value and decoding it again
// must give the same JSON.
func FuzzDecodeThrift(f *testing.F) {
	ar, err := txtar.ParseFile("testdata/golden/types.txtar")
	if err != nil {
		f.Fatal(err)
	}
	fsys := goldenFS(ar)
	c := New(fsys, Options{})
	_, v := compileValue(f, c, "source/all.cconf")
	for _, enc := range thriftEncodings {
		data, err := EncodeThrift(v, enc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, enc == EncodingThriftCompact)
		f.Add(data[:len(data)/2], enc == EncodingThriftCompact)
	}
	f.Add([]byte{}, false)
	all := v.t
	f.Fuzz(func(t *testing.T, data []byte, compact bool) {
		enc := EncodingThriftBinary
		if compact {
			enc = EncodingThriftCompact
		}
		out, err := decodeThrift(all, data, enc)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got error %T %v, want a *DecodeError", err, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON:\n%s", out)
		}
		back, err := readThrift(all, data, enc)
		if err != nil {
			t.Fatal(err)
		}
		again, err := EncodeThrift(back, enc)
		if err != nil {
			t.Fatalf("encoding a decoded value: %v", err)
		}
		out2, err := decodeThrift(all, again, enc)
		if err != nil {
			t.Fatalf("decoding a re-encoded value: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("re-encoding changes the value:\n%s\n%s", out, out2)
		}
	})
}
