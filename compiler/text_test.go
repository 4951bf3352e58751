package compiler

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/apache/thrift/lib/go/thrift"
)

const textSchema = `struct T {
  1: optional string s
  2: optional set<string> names
  3: optional map<string, i32> counts
  4: optional binary raw
  5: optional list<string> items
}
`

// TestInvalidUTF8 checks that a string value must be valid UTF-8, wherever
// it comes from (a raw byte in a literal, an escape, a set element, a map
// key), with the position of the value; binary holds any bytes.
func TestInvalidUTF8(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"raw byte", "load(\"//t.thrift\", \"T\")\nexport(T(\n    s = \"caf\xe9\",\n))\n",
			`source/c.cconf:3:13: got byte 0xe9, want UTF-8 text`},
		{"slice", "load(\"//t.thrift\", \"T\")\nexport(T(s = \"ok\" + \"é\"[:1]))\n",
			`source/c.cconf:2:10: T.s: got string with invalid UTF-8 (byte 0xc3 at offset 2), want UTF-8 text (binary holds bytes)`},
		{"set elements", "load(\"//t.thrift\", \"T\")\nexport(T(names = [\"é\"[1:], \"é\"[:1]]))\n",
			`source/c.cconf:2:10: T.names[0]: got string with invalid UTF-8 (byte 0xa9 at offset 0), want UTF-8 text (binary holds bytes)`},
		{"map key", "load(\"//t.thrift\", \"T\")\nexport(T(counts = {\"aé\"[:2]: 1}))\n",
			`source/c.cconf:2:10: T.counts["a\xc3"] (key): got string with invalid UTF-8 (byte 0xc3 at offset 1), want UTF-8 text (binary holds bytes)`},
		{"appended", "load(\"//t.thrift\", \"T\")\nt = T(items = [])\nt.items.append(\"é\"[1:])\nexport(t)\n",
			`source/c.cconf:2:6: T.items[0]: got string with invalid UTF-8 (byte 0xa9 at offset 0), want UTF-8 text (binary holds bytes)`},
		{"binary", "load(\"//t.thrift\", \"T\")\nexport(T(raw = b\"\\xff\\x00\", s = \"caf\xc3\xa9\"))\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"source/t.thrift": {Data: []byte(textSchema)},
				"source/c.cconf":  {Data: []byte(tt.src)},
			}
			o := New(fsys, Options{Jobs: 1}).Compile("source/c.cconf")
			if got := o.Diags.Error(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestDecodeInvalidUTF8 checks that decoding refuses a string field that is
// not UTF-8, as compiling does, and takes any bytes in a binary field.
func TestDecodeInvalidUTF8(t *testing.T) {
	fsys := fstest.MapFS{"source/t.thrift": {Data: []byte(textSchema)}}
	for _, enc := range thriftEncodings {
		data := writeThrift(t, enc, msg(func(ctx context.Context, p thrift.TProtocol) error {
			return field(ctx, p, "s", thrift.STRING, 1, func() error { return p.WriteString(ctx, "a\xffb") })
		}))
		_, err := DecodeThrift(fsys, "source/t.thrift", "T", data, enc)
		want := "T.s: got string with invalid UTF-8 (byte 0xff at offset 1), want UTF-8 text (binary holds bytes)"
		if err == nil || err.Error() != want {
			t.Errorf("%s: got error %v, want %q", enc, err, want)
		}
		data = writeThrift(t, enc, msg(func(ctx context.Context, p thrift.TProtocol) error {
			return field(ctx, p, "raw", thrift.STRING, 4, func() error { return p.WriteBinary(ctx, []byte{0xff}) })
		}))
		if got, err := DecodeThrift(fsys, "source/t.thrift", "T", data, enc); err != nil || !strings.Contains(string(got), `"raw": "/w=="`) {
			t.Errorf("%s: binary: got %s, %v", enc, got, err)
		}
	}
}

// TestNULByte checks that a NUL byte anywhere in a source file (a config, a
// module, a schema, a validator) is an error at its position, instead of
// silently ending the file.
func TestNULByte(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"config", map[string]string{"source/c.cconf": "load(\"//t.thrift\", \"T\")\nexport(T(s = \"é\"))\x00\nexport(T())\n"},
			"source/c.cconf:2:19: got a NUL byte, want text (source files hold no NUL bytes)"},
		{"module", map[string]string{"source/c.cconf": "load(\"//m.cinc\", \"x\")\n", "source/m.cinc": "x = 1\n  \x00y = 2\n"},
			"source/m.cinc:2:3: got a NUL byte, want text (source files hold no NUL bytes)\n    source/c.cconf: while compiling config \"c\""},
		{"schema", map[string]string{"source/c.cconf": "load(\"//n.thrift\", \"T\")\nexport(T())\n", "source/n.thrift": "struct T {\n  1: optional i32 a\n}\x00\nstruct U {}\n"},
			"source/n.thrift:3:2: got a NUL byte, want text (source files hold no NUL bytes)\n    source/c.cconf: while compiling config \"c\""},
		{"validator", map[string]string{"source/c.cconf": "load(\"//t.thrift\", \"T\")\nexport(T())\n", "source/t.thrift-cvalidator": "\x00"},
			"source/t.thrift-cvalidator:1:1: got a NUL byte, want text (source files hold no NUL bytes)\n    source/c.cconf: while compiling config \"c\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"source/t.thrift": {Data: []byte(textSchema)}}
			for p, src := range tt.files {
				fsys[p] = &fstest.MapFile{Data: []byte(src)}
			}
			o := New(fsys, Options{Jobs: 1}).Compile("source/c.cconf")
			var got []string
			for _, d := range o.Diags {
				got = append(got, d.Long())
			}
			if g := strings.TrimSpace(strings.Join(got, "\n")); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
		})
	}
}
