package compiler

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cfg-dev/cfg/repo"
)

// TestIncrementalShapes changes one file at a time in a repository whose
// configs reach shared files in different ways, and checks that a compile
// recompiles exactly the configs that depend on the file, directly or
// transitively, and that deleting or renaming a source removes its output:
//
//	chain:    c_chain loads lib/a.cinc, which loads lib/b.cinc, which loads lib/c.cinc
//	diamond:  c_diamond loads lib/left.cinc and lib/right.cinc, both load lib/base.cinc
//	relative: team/c_rel loads ../lib/c.cinc by a relative path
//	include:  c_inc loads schemas/top.thrift, which includes common/base.thrift
//	          (checked by common/base.thrift-cvalidator, which loads lib/limits.cinc)
//	via:      c_via loads lib/mk.cinc, which loads schemas/top.thrift
//	plain:    c_plain loads schemas/other.thrift only
//	alone:    c_alone loads schemas/alone.thrift only; raw.txt is a raw config
func TestIncrementalShapes(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"source/common/base.thrift":            "struct Base {\n  1: required i32 n\n}\n",
		"source/common/base.thrift-cvalidator": "load(\"base.thrift\", \"Base\")\nload(\"//lib/limits.cinc\", \"MAX\")\ndef check(b):\n    if b.n > MAX:\n        fail(\"too big\")\nadd_validator(Base, check)\n",
		"source/schemas/top.thrift":            "include \"../common/base.thrift\"\nstruct Top {\n  1: required i32 x\n  2: base.Base b = {\"n\": 1}\n}\n",
		"source/schemas/other.thrift":          "struct Other {\n  1: required i32 n\n}\n",
		"source/schemas/alone.thrift":          "struct Alone {\n  1: required i32 n\n}\n",
		"source/lib/limits.cinc":               "MAX = 100\n",
		"source/lib/c.cinc":                    "C = 1\n",
		"source/lib/b.cinc":                    "load(\"c.cinc\", \"C\")\nB = C + 1\n",
		"source/lib/a.cinc":                    "load(\"//lib/b.cinc\", \"B\")\nA = B + 1\n",
		"source/lib/base.cinc":                 "BASE = 1\n",
		"source/lib/left.cinc":                 "load(\"//lib/base.cinc\", \"BASE\")\nLEFT = BASE\n",
		"source/lib/right.cinc":                "load(\"//lib/base.cinc\", \"BASE\")\nRIGHT = BASE\n",
		"source/lib/mk.cinc":                   "load(\"//schemas/top.thrift\", \"Top\")\ndef mk(x):\n    return Top(x = x)\n",
		"source/c_chain.cconf":                 "load(\"//schemas/other.thrift\", \"Other\")\nload(\"//lib/a.cinc\", \"A\")\nexport(Other(n = A))\n",
		"source/c_diamond.cconf":               "load(\"//schemas/other.thrift\", \"Other\")\nload(\"//lib/left.cinc\", \"LEFT\")\nload(\"//lib/right.cinc\", \"RIGHT\")\nexport(Other(n = LEFT + RIGHT))\n",
		"source/team/c_rel.cconf":              "load(\"//schemas/other.thrift\", \"Other\")\nload(\"../lib/c.cinc\", \"C\")\nexport(Other(n = C))\n",
		"source/c_inc.cconf":                   "load(\"//schemas/top.thrift\", \"Top\")\nexport(Top(x = 1))\n",
		"source/c_via.cconf":                   "load(\"//lib/mk.cinc\", \"mk\")\nexport(mk(2))\n",
		"source/c_plain.cconf":                 "load(\"//schemas/other.thrift\", \"Other\")\nexport(Other(n = 3))\n",
		"source/c_alone.cconf":                 "load(\"//schemas/alone.thrift\", \"Alone\")\nexport(Alone(n = 4))\n",
		"source/raw.txt":                       "raw\n",
	}
	for name, data := range files {
		writeFile(t, root, name, data)
	}
	all, _ := build(t, root)
	if len(all) != 8 {
		t.Fatalf("first build compiled %v, want 8 outputs", all)
	}
	rm := func(name string) func() {
		return func() {
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(name))); err != nil {
				t.Fatal(err)
			}
		}
	}
	mv := func(from, to string) func() {
		return func() {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, filepath.FromSlash(to))), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(root, filepath.FromSlash(from)), filepath.Join(root, filepath.FromSlash(to))); err != nil {
				t.Fatal(err)
			}
		}
	}
	var lastEdited string
	edit := func(name, data string) func() {
		return func() { writeFile(t, root, name, data); lastEdited = name }
	}
	steps := []struct {
		name    string
		change  func()
		want    []string // compiled
		removed []string // materialized files removed
	}{
		{"the end of a chain of loads", edit("source/lib/c.cinc", "C = 2\n"),
			[]string{"source/c_chain.cconf", "source/team/c_rel.cconf"}, nil},
		{"the middle of a chain of loads", edit("source/lib/b.cinc", "load(\"c.cinc\", \"C\")\nB = C + 2\n"),
			[]string{"source/c_chain.cconf"}, nil},
		{"the bottom of a diamond", edit("source/lib/base.cinc", "BASE = 2\n"),
			[]string{"source/c_diamond.cconf"}, nil},
		{"one side of a diamond", edit("source/lib/left.cinc", "load(\"//lib/base.cinc\", \"BASE\")\nLEFT = BASE * 2\n"),
			[]string{"source/c_diamond.cconf"}, nil},
		{"an included schema", edit("source/common/base.thrift", "struct Base {\n  1: required i32 n\n  2: optional i32 m\n}\n"),
			[]string{"source/c_inc.cconf", "source/c_via.cconf"}, nil},
		{"the validator of an included schema", edit("source/common/base.thrift-cvalidator", "load(\"base.thrift\", \"Base\")\nload(\"//lib/limits.cinc\", \"MAX\")\ndef check(b):\n    if b.n >= MAX:\n        fail(\"too big\")\nadd_validator(Base, check)\n"),
			[]string{"source/c_inc.cconf", "source/c_via.cconf"}, nil},
		{"a module a validator loads", edit("source/lib/limits.cinc", "MAX = 50\n"),
			[]string{"source/c_inc.cconf", "source/c_via.cconf"}, nil},
		{"a validator added to a schema", edit("source/schemas/other.thrift-cvalidator", "load(\"other.thrift\", \"Other\")\ndef ok(o):\n    pass\nadd_validator(Other, ok)\n"),
			[]string{"source/c_chain.cconf", "source/c_diamond.cconf", "source/c_plain.cconf", "source/team/c_rel.cconf"}, nil},
		{"the including schema", edit("source/schemas/top.thrift", "include \"../common/base.thrift\"\nstruct Top {\n  1: required i32 x\n  2: base.Base b = {\"n\": 1}\n  3: optional string note\n}\n"),
			[]string{"source/c_inc.cconf", "source/c_via.cconf"}, nil},
		{"a module no config loads", edit("source/lib/unused.cinc", "X = 1\n"), nil, nil},
		{"a config deleted", rm("source/c_plain.cconf"), nil, []string{"materialized_configs/c_plain.json"}},
		{"a config renamed", mv("source/c_alone.cconf", "source/c_lone.cconf"),
			[]string{"source/c_lone.cconf"}, []string{"materialized_configs/c_alone.json"}},
		{"a config moved to another directory", mv("source/team/c_rel.cconf", "source/other/c_rel.cconf"),
			[]string{"source/other/c_rel.cconf"}, []string{"materialized_configs/team/c_rel.json"}},
		{"a raw config renamed", mv("source/raw.txt", "source/raw2.txt"),
			[]string{"source/raw2.txt"}, []string{"materialized_configs/raw.txt"}},
		{"a raw config deleted", rm("source/raw2.txt"), nil, []string{"materialized_configs/raw2.txt"}},
	}
	for _, st := range steps {
		lastEdited = ""
		st.change()
		if edited := lastEdited; edited != "" {
			// What cfg affected, cfg compile PATH and cfg rdeps read: the
			// graph's dependents of the changed file are the same configs.
			fsys := os.DirFS(root)
			tree, err := repo.Scan(fsys)
			if err != nil {
				t.Fatal(err)
			}
			g, err := New(fsys, Options{}).NewGraph(tree)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(st.want, g.Affected([]string{edited}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: affected by %s (-want +got):\n%s", st.name, edited, diff)
			}
			var configs []string
			for _, p := range g.RDeps(edited) {
				if repo.Classify(p) == repo.Config {
					configs = append(configs, p)
				}
			}
			if diff := cmp.Diff(st.want, configs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: configs among the rdeps of %s (-want +got):\n%s", st.name, edited, diff)
			}
		}
		got, res := build(t, root)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: compiled (-want +got):\n%s", st.name, diff)
		}
		if n := outputs(t, root); res.UpToDate != n-len(st.want) {
			t.Errorf("%s: %d up to date, want %d", st.name, res.UpToDate, n-len(st.want))
		}
		removed := slices.Clone(res.Removed)
		slices.Sort(removed)
		if diff := cmp.Diff(st.removed, removed); diff != "" {
			t.Errorf("%s: removed (-want +got):\n%s", st.name, diff)
		}
		for _, p := range st.removed {
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); !os.IsNotExist(err) {
				t.Errorf("%s: %s still there (%v)", st.name, p, err)
			}
		}
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

// outputs counts the configs and raw configs under source/.
func outputs(t *testing.T, root string) int {
	t.Helper()
	n := 0
	for p := range readTree(t, filepath.Join(root, "source")) {
		if k := repo.Classify("source/" + p); k == repo.Config || k == repo.Raw {
			n++
		}
	}
	return n
}

// readTree returns the content of every file under dir by its slash path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
