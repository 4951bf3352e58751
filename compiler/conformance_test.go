package compiler

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"go.starlark.net/starlark"

	"github.com/cfg-dev/cfg/schema"
)

// The conformance test runs a corpus of IDL files and values through cfg
// and through the reference implementation: Apache Thrift's compiler
// (thrift, Debian's thrift-compiler) generating Python, and Apache Thrift's
// Python library (Debian's python3-thrift), driven by
// testdata/conformance/reference.py. Files under accept/ must load with
// both, with the same field IDs, defaults, enum values and constants;
// files under reject/ must fail with both (cfg's error is on their first
// line). Random values of the accepted structs go from cfg to the
// reference and back, in both encodings.

const conformanceDir = "testdata/conformance"

// reference returns the thrift compiler and a python3 that imports the
// thrift library, or skips the test.
func reference(t *testing.T) (thriftBin, python string) {
	t.Helper()
	thriftBin, err := exec.LookPath("thrift")
	if err != nil {
		t.Skip("the reference is not installed: want the thrift compiler (Debian package thrift-compiler) on PATH; .ci/run installs it")
	}
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import thrift.protocol.TCompactProtocol").Run() == nil {
			return thriftBin, py
		}
	}
	t.Skip("the reference is not installed: want a python3 that imports thrift (Debian package python3-thrift); .ci/run installs it")
	return "", ""
}

// conformanceFS returns the corpus as a repository: the files of dir under
// source/.
func conformanceFS(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".thrift") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fsys["source/"+filepath.ToSlash(rel)] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// topLevel lists the .thrift files directly in dir (included files sit in
// subdirectories or are included by these).
func topLevel(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.thrift"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .thrift files in %s (%v)", dir, err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

var wantErrLine = regexp.MustCompile(`^// error: (.*)\n`)

// TestConformanceAcceptance checks which files cfg accepts and, when the
// reference is installed, that it accepts the same.
func TestConformanceAcceptance(t *testing.T) {
	accept := filepath.Join(conformanceDir, "accept")
	reject := filepath.Join(conformanceDir, "reject")
	afs, rfs := conformanceFS(t, accept), conformanceFS(t, reject)
	for _, name := range topLevel(t, accept) {
		if _, err := schema.NewLoader(afs).Load("source/" + name); err != nil {
			t.Errorf("accept/%s: cfg refuses it: %v", name, err)
		}
	}
	for _, name := range topLevel(t, reject) {
		m := wantErrLine.FindSubmatch(rfs["source/"+name].Data)
		if m == nil {
			t.Fatalf("reject/%s: no // error: line", name)
		}
		_, err := schema.NewLoader(rfs).Load("source/" + name)
		if err == nil || err.Error() != string(m[1]) {
			t.Errorf("reject/%s: got error %v, want %s", name, err, m[1])
		}
	}
	thriftBin, _ := reference(t)
	for dir, names := range map[string][]string{accept: topLevel(t, accept), reject: topLevel(t, reject)} {
		for _, name := range names {
			out, err := exec.Command(thriftBin, "-r", "--gen", "py", "-out", t.TempDir(), filepath.Join(dir, name)).CombinedOutput()
			if ok := err == nil; ok != (dir == accept) {
				t.Errorf("%s: the reference accepts it: %v, cfg: %v\n%s", filepath.Join(dir, name), ok, dir == accept, out)
			}
		}
	}
}

var pyNamespace = regexp.MustCompile(`(?m)^namespace py ([\w.]+)`)

// generate runs the reference compiler on an accepted file and returns the
// directory of the Python code and the module of the file.
func generate(t *testing.T, thriftBin, name string) (dir, module string) {
	t.Helper()
	p := filepath.Join(conformanceDir, "accept", name)
	dir = t.TempDir()
	if out, err := exec.Command(thriftBin, "-r", "--gen", "py", "-out", dir, p).CombinedOutput(); err != nil {
		t.Fatalf("thrift %s: %v\n%s", p, err, out)
	}
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	module = strings.TrimSuffix(name, ".thrift")
	if m := pyNamespace.FindSubmatch(src); m != nil {
		module = string(m[1])
	}
	return dir, module
}

// noPython lists the accepted files whose Python code, as the reference
// generates it, cannot be imported or differs on purpose (see the files).
var noPython = map[string]bool{
	"twodups.thrift":              true, // both includes become the module dup
	"typedef_struct_const.thrift": true, // the reference drops the constant's fields
}

// TestConformanceSchemas checks that cfg reads the field IDs, defaults,
// enum values and constants of every accepted file as the reference does.
func TestConformanceSchemas(t *testing.T) {
	thriftBin, python := reference(t)
	fsys := conformanceFS(t, filepath.Join(conformanceDir, "accept"))
	for _, name := range topLevel(t, filepath.Join(conformanceDir, "accept")) {
		if noPython[name] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			f, err := schema.NewLoader(fsys).Load("source/" + name)
			if err != nil {
				t.Fatal(err)
			}
			dir, module := generate(t, thriftBin, name)
			out, err := exec.Command(python, filepath.Join(conformanceDir, "reference.py"), "dump", dir, module).Output()
			if err != nil {
				t.Fatalf("reference.py dump: %v\n%s", err, stderrOf(err))
			}
			want := normalizeShape(t, decodeShape(t, out))
			got := normalizeShape(t, roundJSON(t, dumpFile(f)))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("schema as cfg reads it differs from the reference (-reference +cfg):\n%s", diff)
			}
		})
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestConformanceValues sends random values of the accepted structs from
// cfg to the reference library and back, in both encodings: the reference
// reads what cfg writes as the same value, and cfg reads what the
// reference writes back as the same canonical JSON.
func TestConformanceValues(t *testing.T) {
	thriftBin, python := reference(t)
	fsys := conformanceFS(t, filepath.Join(conformanceDir, "accept"))
	cases := []struct{ file, typ string }{{"every.thrift", "Every"}, {"every.thrift", "NoIDs"}, {"every.thrift", "Plain"}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			f, err := schema.NewLoader(fsys).Load("source/" + c.file)
			if err != nil {
				t.Fatal(err)
			}
			st := f.Structs[c.typ]
			dir, module := generate(t, thriftBin, c.file)
			cmd := exec.Command(python, filepath.Join(conformanceDir, "reference.py"), "roundtrip", dir, module)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			outPipe, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				in.Close()
				if err := cmd.Wait(); err != nil {
					t.Errorf("reference.py roundtrip: %v\n%s", err, stderr.String())
				}
			}()
			out := bufio.NewReader(outPipe)
			for i := range 200 {
				v := randomStruct(rng, st, 0)
				want, errs := encodeRoot(v)
				if len(errs) > 0 {
					t.Fatalf("value %d: %v", i, errs[0].err)
				}
				for _, enc := range thriftEncodings {
					data, err := EncodeThrift(v, enc)
					if err != nil {
						t.Fatalf("value %d: %s: %v", i, enc, err)
					}
					fmt.Fprintf(in, "%s %s %x\n", c.typ, enc, data)
					line, err := out.ReadString('\n')
					if err != nil {
						t.Fatalf("value %d: reading the reference: %v\n%s", i, err, stderr.String())
					}
					hexData, js, _ := strings.Cut(strings.TrimSpace(line), " ")
					back, err := hex.DecodeString(hexData)
					if err != nil {
						t.Fatal(err)
					}
					got, err := decodeThrift(st, back, enc)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("value %d: %s: what the reference wrote back decodes to (err %v)\n%s\nwant\n%s", i, enc, err, got, want)
					}
					// The reference's value itself, in the common shape.
					read, err := readThrift(st, back, enc)
					if err != nil {
						t.Fatal(err)
					}
					ref := normalizeShape(t, decodeShape(t, []byte(js)))
					mine := normalizeShape(t, roundJSON(t, shapeValue(&schema.Type{Kind: schema.StructKind, Struct: st}, read)))
					if diff := cmp.Diff(ref, mine); diff != "" {
						t.Fatalf("value %d: %s: the reference reads another value (-reference +cfg):\n%s", i, enc, diff)
					}
				}
			}
		})
	}
}

// Values in the shape of reference.py.

func decodeShape(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return v
}

// roundJSON gives a shape built in Go the types JSON decoding gives.
func roundJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decodeShape(t, data)
}

// normalizeShape orders sets and maps by the Go JSON text of their
// elements and keys, whichever side made them.
func normalizeShape(t *testing.T, v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = normalizeShape(t, x[i])
		}
		return x
	case map[string]any:
		if elems, ok := x["set"].([]any); ok && len(x) == 1 {
			texts := make([]string, len(elems))
			for i, e := range elems {
				s, _ := e.(string)
				texts[i] = text(t, normalizeShape(t, decodeShape(t, []byte(s))))
			}
			slices.Sort(texts)
			return map[string]any{"set": texts}
		}
		if items, ok := x["map"].([]any); ok && len(x) == 1 {
			for _, it := range items {
				kv := it.([]any)
				kv[0], kv[1] = normalizeShape(t, kv[0]), normalizeShape(t, kv[1])
			}
			slices.SortFunc(items, func(a, b any) int { return strings.Compare(text(t, a.([]any)[0]), text(t, b.([]any)[0])) })
			return map[string]any{"map": items}
		}
		for k, e := range x {
			x[k] = normalizeShape(t, e)
		}
		return x
	}
	return v
}

func text(t *testing.T, v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}

func shapeDouble(f float64) any {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(f))
	return map[string]any{"double": hex.EncodeToString(b[:])}
}

// shapeSet is a set of elements, without duplicates.
func shapeSet(elems []any) any {
	seen := map[string]bool{}
	texts := []any{}
	for _, e := range elems {
		data, _ := json.Marshal(e)
		if !seen[string(data)] {
			seen[string(data)] = true
			texts = append(texts, string(data))
		}
	}
	return map[string]any{"set": texts}
}

// dumpFile is what reference.py dump prints, from cfg's model.
func dumpFile(f *schema.File) any {
	structs := map[string]any{}
	for name, s := range f.Structs {
		ids := map[string]any{}
		for _, fld := range s.Fields {
			ids[fld.Name] = fld.ID
		}
		structs[name] = map[string]any{"ids": ids, "defaults": shapeConst(&schema.Type{Kind: schema.StructKind, Struct: s}, &schema.StructConst{Struct: s, Fields: map[string]schema.Const{}}).(map[string]any)["fields"]}
	}
	enums := map[string]any{}
	for name, e := range f.Enums {
		items := map[string]any{}
		for _, it := range e.Items {
			items[it.Name] = json.Number(fmt.Sprint(it.Value))
		}
		enums[name] = items
	}
	consts := map[string]any{}
	for name, c := range f.Constants {
		consts[name] = shapeConst(c.Type, c.Value)
	}
	return map[string]any{"structs": structs, "enums": enums, "constants": consts}
}

// shapeConst is a constant in the shape of reference.py. A struct constant
// has the defaults of the fields it does not set, as a constructor gives
// them (for a union, the member with a default when it sets none).
func shapeConst(t *schema.Type, c schema.Const) any {
	switch c := c.(type) {
	case bool, string:
		return c
	case int64:
		if t.Kind == schema.Double {
			return shapeDouble(float64(c))
		}
		return json.Number(fmt.Sprint(c))
	case float64:
		return shapeDouble(c)
	case []byte:
		return map[string]any{"binary": hex.EncodeToString(c)}
	case *schema.EnumItem:
		return json.Number(fmt.Sprint(c.Value))
	case []schema.Const:
		elems := make([]any, len(c))
		for i, e := range c {
			elems[i] = shapeConst(t.Elem, e)
		}
		if t.Kind == schema.Set {
			return shapeSet(elems)
		}
		return elems
	case []schema.ConstPair:
		byKey := map[string][]any{}
		for _, kv := range c {
			k := shapeConst(t.Key, kv.Key)
			data, _ := json.Marshal(k)
			byKey[string(data)] = []any{k, shapeConst(t.Elem, kv.Value)}
		}
		items := []any{}
		for _, kv := range byKey {
			items = append(items, kv)
		}
		return map[string]any{"map": items}
	case *schema.StructConst:
		fields := map[string]any{}
		for _, fld := range c.Struct.Fields {
			switch v, ok := c.Fields[fld.Name]; {
			case ok:
				fields[fld.Name] = shapeConst(fld.Type, v)
			case fld.Default != nil && (c.Struct.Type != schema.Union || len(c.Fields) == 0):
				fields[fld.Name] = shapeConst(fld.Type, fld.Default)
			}
		}
		return map[string]any{"struct": c.Struct.Name, "fields": fields}
	}
	panic(fmt.Sprintf("unexpected constant %T", c))
}

// shapeValue is a value in the shape of reference.py.
func shapeValue(t *schema.Type, v starlark.Value) any {
	switch t.Kind {
	case schema.Bool:
		return bool(v.(starlark.Bool))
	case schema.I8, schema.I16, schema.I32, schema.I64:
		return json.Number(v.(starlark.Int).String())
	case schema.Double:
		return shapeDouble(float64(v.(starlark.Float)))
	case schema.String:
		return string(v.(starlark.String))
	case schema.Binary:
		b, _ := asBytes(v)
		return map[string]any{"binary": hex.EncodeToString([]byte(b))}
	case schema.EnumKind:
		return json.Number(fmt.Sprint(v.(*Enum).item.Value))
	case schema.List, schema.Set:
		l := v.(*starlark.List)
		elems := make([]any, l.Len())
		for i := range l.Len() {
			elems[i] = shapeValue(t.Elem, l.Index(i))
		}
		if t.Kind == schema.Set {
			return shapeSet(elems)
		}
		return elems
	case schema.Map:
		items := []any{}
		for _, kv := range v.(*starlark.Dict).Items() {
			items = append(items, []any{shapeValue(t.Key, kv[0]), shapeValue(t.Elem, kv[1])})
		}
		return map[string]any{"map": items}
	case schema.StructKind:
		s := v.(*Struct)
		fields := map[string]any{}
		for i, fld := range s.t.Fields {
			if s.fields[i] != nil {
				fields[fld.Name] = shapeValue(fld.Type, s.fields[i])
			}
		}
		return map[string]any{"struct": s.t.Name, "fields": fields}
	}
	panic(t.String())
}

// Random values.

var randomRunes = []rune("aZ09 _-\"\\/\n\t\x00\x1féß€𝄞\u2028\u2029\ufeff中")

func randomString(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(8) {
		b.WriteRune(randomRunes[rng.IntN(len(randomRunes))])
	}
	return b.String()
}

func randomInt(rng *rand.Rand, k schema.Kind) int64 {
	lo, hi, _ := k.IntRange()
	switch rng.IntN(4) {
	case 0:
		return lo
	case 1:
		return hi
	case 2:
		return int64(rng.IntN(201)) - 100
	}
	return lo + int64(rng.Uint64()%uint64(hi-lo))
}

var randomDoubles = []float64{0, 1, -1, 0.1, -2.5e-300, 1e300, math.MaxFloat64, -math.SmallestNonzeroFloat64, 123456789.125, 1e21, 1e-7}

func randomValue(rng *rand.Rand, t *schema.Type, depth int) starlark.Value {
	switch t.Kind {
	case schema.Bool:
		return starlark.Bool(rng.IntN(2) == 0)
	case schema.I8, schema.I16, schema.I32, schema.I64:
		return starlark.MakeInt64(randomInt(rng, t.Kind))
	case schema.Double:
		if rng.IntN(2) == 0 {
			return starlark.Float(randomDoubles[rng.IntN(len(randomDoubles))])
		}
		return starlark.Float(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)))
	case schema.String:
		return starlark.String(randomString(rng))
	case schema.Binary:
		b := make([]byte, rng.IntN(6))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return starlark.Bytes(b)
	case schema.EnumKind:
		return &Enum{item: t.Enum.Items[rng.IntN(len(t.Enum.Items))]}
	case schema.List, schema.Set:
		n := rng.IntN(4)
		if depth > 3 {
			n = 0
		}
		elems := make([]starlark.Value, n)
		for i := range elems {
			elems[i] = randomValue(rng, t.Elem, depth+1)
		}
		return starlark.NewList(elems)
	case schema.Map:
		d := starlark.NewDict(0)
		n := rng.IntN(4)
		if depth > 3 {
			n = 0
		}
		for range n {
			_ = d.SetKey(randomValue(rng, t.Key, depth+1), randomValue(rng, t.Elem, depth+1))
		}
		return d
	case schema.StructKind:
		return randomStruct(rng, t.Struct, depth+1)
	}
	panic(t.String())
}

func randomStruct(rng *rand.Rand, st *schema.Struct, depth int) *Struct {
	s := newStruct(st, origin{})
	if st.Type == schema.Union {
		f := st.Fields[rng.IntN(len(st.Fields))]
		s.fields[f.Index] = randomValue(rng, f.Type, depth)
		return s
	}
	for i, f := range st.Fields {
		// Fields with defaults are set, as a constructor sets them: the
		// reference's readers give an absent field its default.
		if f.Required == schema.Required || f.Default != nil || rng.IntN(3) > 0 {
			s.fields[i] = randomValue(rng, f.Type, depth)
		}
	}
	return s
}
