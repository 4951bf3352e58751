package compiler

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/repo"
)

// incrementalRepo writes ten configs: c0..c2 load lib/shared.cinc, the rest
// load lib/other.cinc; every config uses the schema s.thrift.
func incrementalRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"source/s.thrift":        "struct S {\n  1: required string name\n  2: optional i32 n\n}\n",
		"source/lib/shared.cinc": "load(\"//s.thrift\", \"S\")\nN = 1\ndef make(name):\n    return S(name = name, n = N)\n",
		"source/lib/other.cinc":  "load(\"//s.thrift\", \"S\")\ndef make(name):\n    return S(name = name)\n",
		"source/raw.txt":         "raw\n",
	}
	for i := range 10 {
		lib := "other"
		if i < 3 {
			lib = "shared"
		}
		files[fmt.Sprintf("source/c%d.cconf", i)] = fmt.Sprintf("load(\"//lib/%s.cinc\", \"make\")\nexport(make(\"c%d\"))\n", lib, i)
	}
	for name, data := range files {
		writeFile(t, root, name, data)
	}
	return root
}

func writeFile(t *testing.T, root, name, data string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// build runs Build and returns the sources it compiled.
func build(t *testing.T, root string, targets ...string) ([]string, *Result) {
	t.Helper()
	res, err := Build(context.Background(), root, Options{Jobs: 4}, targets...)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Diags(); len(d) > 0 {
		t.Fatal(d.Error())
	}
	var compiled []string
	for _, o := range res.Outputs {
		compiled = append(compiled, o.Source)
	}
	slices.Sort(compiled)
	return compiled, res
}

func TestIncremental(t *testing.T) {
	root := incrementalRepo(t)
	all, _ := build(t, root)
	if len(all) != 11 {
		t.Fatalf("first build compiled %d, want 11", len(all))
	}
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"nothing changed", func() {}, nil},
		{"module used by three configs", func() {
			writeFile(t, root, "source/lib/shared.cinc", "load(\"//s.thrift\", \"S\")\nN = 2\ndef make(name):\n    return S(name = name, n = N)\n")
		}, []string{"source/c0.cconf", "source/c1.cconf", "source/c2.cconf"}},
		{"one config", func() {
			writeFile(t, root, "source/c7.cconf", "load(\"//lib/other.cinc\", \"make\")\nexport(make(\"seven\"))\n")
		},
			[]string{"source/c7.cconf"}},
		{"a raw config", func() { writeFile(t, root, "source/raw.txt", "raw 2\n") }, []string{"source/raw.txt"}},
		{"a validator added beside the schema", func() {
			writeFile(t, root, "source/s.thrift-cvalidator", "load(\"s.thrift\", \"S\")\ndef ok(s):\n    pass\nadd_validator(S, ok)\n")
		}, all[:10]},
		{"a materialized file edited by hand", func() { writeFile(t, root, "materialized_configs/c5.json", "{}\n") },
			[]string{"source/c5.cconf"}},
		{"a materialized file deleted", func() { os.Remove(filepath.Join(root, "materialized_configs/c4.json")) },
			[]string{"source/c4.cconf"}},
		{"the cache corrupted", func() { writeFile(t, root, ".cfg/compile-cache.gob", "not gob") }, all},
		{"the cache deleted", func() { os.RemoveAll(filepath.Join(root, ".cfg")) }, all},
	}
	for _, st := range steps {
		st.change()
		got, res := build(t, root)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: compiled (-want +got):\n%s", st.name, diff)
		}
		if res.UpToDate != 11-len(st.want) {
			t.Errorf("%s: %d up to date, want %d", st.name, res.UpToDate, 11-len(st.want))
		}
	}
	// The record of types lists every config.
	types, err := os.ReadFile(filepath.Join(root, repo.TypesFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 10 {
		want[fmt.Sprintf("c%d", i)] = "S"
	}
	if string(types) != string(repo.EncodeTypes(want)) {
		t.Errorf("%s:\n%s", repo.TypesFile, types)
	}

	// Whatever the history, the outputs are those of a fresh full compile.
	fresh := t.TempDir()
	if err := os.CopyFS(filepath.Join(fresh, "source"), os.DirFS(filepath.Join(root, "source"))); err != nil {
		t.Fatal(err)
	}
	build(t, fresh)
	want, got := readTree(t, filepath.Join(fresh, "materialized_configs")), readTree(t, filepath.Join(root, "materialized_configs"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("incremental outputs differ from a full compile (-full +incremental):\n%s", diff)
	}
}

// TestCompileTargets checks that naming a module compiles its dependents.
func TestCompileTargets(t *testing.T) {
	root := incrementalRepo(t)
	got, _ := build(t, root, "source/lib/shared.cinc")
	if want := []string{"source/c0.cconf", "source/c1.cconf", "source/c2.cconf"}; !slices.Equal(got, want) {
		t.Errorf("compile source/lib/shared.cinc compiled %v, want %v", got, want)
	}
	if got, _ := build(t, root, "source/lib/shared.cinc"); len(got) != 0 {
		t.Errorf("second compile of the same target compiled %v, want nothing", got)
	}
	if _, err := Build(context.Background(), root, Options{}, "source/nope.cinc"); err == nil || err.Error() != "source/nope.cinc: no such file in the repository" {
		t.Errorf("missing target: %v", err)
	}
}

// TestCacheDamaged damages the compile cache in ways that still decode (a
// byte of a dependency's path changed, as "lib/sharex.cinc") and in ways
// that do not (a bit flipped anywhere, the file cut short), each time
// before a change to a module three configs load: the damaged cache is
// ignored, every config is compiled, and the outputs are those of a fresh
// full compile.
func TestCacheDamaged(t *testing.T) {
	root := incrementalRepo(t)
	build(t, root)
	cachePath := filepath.Join(root, ".cfg", "compile-cache.gob")
	good, err := os.ReadFile(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	type damage struct {
		name string
		data []byte
	}
	var damages []damage
	dep := []byte("lib/shared.cinc")
	for i, off := 0, 0; ; i++ {
		j := bytes.Index(good[off:], dep)
		if j < 0 {
			if i == 0 {
				t.Fatalf("the cache does not name %s", dep)
			}
			break
		}
		d := bytes.Clone(good)
		d[off+j+len(dep)-6] = 'x' // lib/sharex.cinc
		damages = append(damages, damage{fmt.Sprintf("the dependency's path %d renamed", i), d})
		off += j + len(dep)
	}
	for i := 0; i < len(good); i += max(1, len(good)/32) {
		d := bytes.Clone(good)
		d[i] ^= 0x10
		damages = append(damages, damage{fmt.Sprintf("a bit of byte %d flipped", i), d})
	}
	for _, n := range []int{0, 3, len(good) / 2, len(good) - 4, len(good) - 1} {
		damages = append(damages, damage{fmt.Sprintf("cut to %d bytes", n), good[:n]})
	}
	for k, dm := range damages {
		if err := os.WriteFile(cachePath, dm.data, 0o644); err != nil {
			t.Fatal(err)
		}
		writeFile(t, root, "source/lib/shared.cinc", fmt.Sprintf("load(\"//s.thrift\", \"S\")\nN = %d\ndef make(name):\n    return S(name = name, n = N)\n", k+2))
		_, res := build(t, root)
		if res.UpToDate != 0 {
			t.Errorf("%s: %d configs taken as up to date, want the cache ignored", dm.name, res.UpToDate)
		}
		fresh := t.TempDir()
		if err := os.CopyFS(filepath.Join(fresh, "source"), os.DirFS(filepath.Join(root, "source"))); err != nil {
			t.Fatal(err)
		}
		build(t, fresh)
		if diff := cmp.Diff(readTree(t, filepath.Join(fresh, "materialized_configs")), readTree(t, filepath.Join(root, "materialized_configs"))); diff != "" {
			t.Errorf("%s: outputs differ from a full compile (-full +got):\n%s", dm.name, diff)
		}
	}
}
