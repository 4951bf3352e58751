package compiler

import (
	"bytes"
	"testing"
	"testing/fstest"
)

const orderSchema = `
enum E { B = 2, A = 1, C = 3 }
struct P {
  2: optional string s
  1: optional i32 n
}
struct All {
  1: optional set<double> doubles
  2: optional set<string> strings
  3: optional set<binary> blobs
  4: optional set<P> ps
  5: optional map<string, i32> by_name
  6: optional set<E> es
  7: optional set<bool> bools
  8: optional set<list<i32>> lists
  9: optional set<set<string>> sets
  10: optional set<map<i32, string>> maps
  11: optional double zero
  12: optional set<i64> ints
}
`

// TestCanonicalOrder checks the one order of Thrift values (compareValues)
// on sets and map keys of every element type: canonical JSON writes it,
// both Thrift encodings write it, and decoding data in any order, with
// duplicates, gives the same JSON as compiling.
func TestCanonicalOrder(t *testing.T) {
	fsys := fstest.MapFS{
		"source/o.thrift": {Data: []byte(orderSchema)},
		"source/o.cconf": {Data: []byte(`load("//o.thrift", "All", "P", "E")
export(All(
    doubles = [1.5, -0.0, 0.0, -2, 0.0, 1e300, -0.0],
    strings = ["a b", "a!", "a", "", "é", "z", "a"],
    blobs = [b"\xff", b"a", b"", b"\x00", b"a"],
    ps = [P(n = 2), P(s = "x"), P(n = 1, s = "b"), P(n = 1, s = "a"), P(), P(n = 1, s = "a")],
    by_name = {"a b": 1, "a!": 2, "a": 3, "B": 4},
    es = [E.C, E.A, E.B, E.A],
    bools = [True, False, True],
    lists = [[1, 2], [1], [], [0, 5], [1]],
    sets = [["b"], ["a", "c"], ["c", "a"], []],
    maps = [{2: "x"}, {1: "y"}, {1: "a", 2: "b"}, {1: "y"}],
    zero = -0.0,
    ints = [10, -1, 3, 10, -9223372036854775808, 9223372036854775807],
))
`)},
	}
	want := `{
  "doubles": [
    -2,
    0,
    1.5,
    1e+300
  ],
  "strings": [
    "",
    "a",
    "a b",
    "a!",
    "z",
    "é"
  ],
  "blobs": [
    "",
    "AA==",
    "YQ==",
    "/w=="
  ],
  "ps": [
    {},
    {
      "s": "x"
    },
    {
      "s": "a",
      "n": 1
    },
    {
      "s": "b",
      "n": 1
    },
    {
      "n": 2
    }
  ],
  "by_name": {
    "B": 4,
    "a": 3,
    "a b": 1,
    "a!": 2
  },
  "es": [
    "A",
    "B",
    "C"
  ],
  "bools": [
    false,
    true
  ],
  "lists": [
    [],
    [
      0,
      5
    ],
    [
      1
    ],
    [
      1,
      2
    ]
  ],
  "sets": [
    [],
    [
      "a",
      "c"
    ],
    [
      "b"
    ]
  ],
  "maps": [
    {
      "1": "a",
      "2": "b"
    },
    {
      "1": "y"
    },
    {
      "2": "x"
    }
  ],
  "zero": 0,
  "ints": [
    -9223372036854775808,
    -1,
    3,
    10,
    9223372036854775807
  ]
}
`
	c := New(fsys, Options{Jobs: 1})
	got, v := compileValue(t, c, "source/o.cconf")
	if string(got) != want {
		t.Fatalf("compiled JSON:\n%s\nwant:\n%s", got, want)
	}
	for _, enc := range thriftEncodings {
		data, err := EncodeThrift(v, enc)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		dec, err := DecodeThrift(fsys, "source/o.thrift", "All", data, enc)
		if err != nil || !bytes.Equal(dec, got) {
			t.Errorf("%s: decoded JSON differs from compiled (err %v):\n%s", enc, err, dec)
		}
		// The encoding of a value read back is the same bytes.
		back, err := readThrift(v.t, data, enc)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := EncodeThrift(back, enc); err != nil || !bytes.Equal(again, data) {
			t.Errorf("%s: encoding the decoded value gives other bytes (err %v)", enc, err)
		}
	}
}

// TestUnionDefault checks that a union built without a member takes the
// member with an IDL default, as the constructors Thrift generates do, and
// that a member given replaces it.
func TestUnionDefault(t *testing.T) {
	fsys := fstest.MapFS{
		"source/u.thrift": {Data: []byte("union U {\n  1: string a\n  2: i32 b = 5\n}\nstruct S {\n  1: optional U x\n  2: optional U y\n}\n")},
		"source/c.cconf":  {Data: []byte("load(\"//u.thrift\", \"S\", \"U\")\nexport(S(x = U(), y = U(a = \"given\")))\n")},
	}
	o := New(fsys, Options{Jobs: 1}).Compile("source/c.cconf")
	want := "{\n  \"x\": {\n    \"b\": 5\n  },\n  \"y\": {\n    \"a\": \"given\"\n  }\n}\n"
	if len(o.Diags) > 0 || string(o.Data) != want {
		t.Errorf("got %s%s, want\n%s", o.Data, o.Diags.Error(), want)
	}
}
