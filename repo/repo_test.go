package repo

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestNames(t *testing.T) {
	tests := []struct {
		src, name, materialized string
		kind                    Kind
	}{
		{"source/feed/cache_job.cconf", "feed/cache_job", "materialized_configs/feed/cache_job.json", Config},
		{"source/service/banner.txt", "service/banner.txt", "materialized_configs/service/banner.txt", Raw},
		{"source/limits.cconf.yaml", "limits.cconf.yaml", "materialized_configs/limits.cconf.yaml", Raw},
		{"source/lib/x.cinc", "lib/x.cinc", "materialized_configs/lib/x.cinc", Module},
		{"source/s/job.thrift", "s/job.thrift", "materialized_configs/s/job.thrift", Schema},
		{"source/s/job.thrift-cvalidator", "s/job.thrift-cvalidator", "materialized_configs/s/job.thrift-cvalidator", Validator},
	}
	for _, tt := range tests {
		if got := Classify(tt.src); got != tt.kind {
			t.Errorf("Classify(%q) = %v, want %v", tt.src, got, tt.kind)
		}
		if got := ConfigName(tt.src); got != tt.name {
			t.Errorf("ConfigName(%q) = %q, want %q", tt.src, got, tt.name)
		}
		if tt.kind == Config || tt.kind == Raw {
			if got := MaterializedPath(tt.src); got != tt.materialized {
				t.Errorf("MaterializedPath(%q) = %q, want %q", tt.src, got, tt.materialized)
			}
		}
	}
}

func TestMaterializedName(t *testing.T) {
	for _, tt := range []struct {
		p, name  string
		compiled bool
		ok       bool
	}{
		{"materialized_configs/feed/job.json", "feed/job", true, true},
		{"materialized_configs/service/banner.txt", "service/banner.txt", false, true},
		{"materialized_configs/feed/job.thrift-binary", "", false, false},
		{"materialized_configs/feed/job.thrift-compact", "", false, false},
		{TypesFile, "", false, false},
		{"materialized_configs/a/.hidden/x.json", "", false, false},
		{"source/feed/job.cconf", "", false, false},
	} {
		name, compiled, ok := MaterializedName(tt.p)
		if name != tt.name || compiled != tt.compiled || ok != tt.ok {
			t.Errorf("MaterializedName(%q) = %q, %v, %v; want %q, %v, %v", tt.p, name, compiled, ok, tt.name, tt.compiled, tt.ok)
		}
	}
}

func TestMaterializedConfig(t *testing.T) {
	types := map[string]string{"feed/job": "Job"}
	for _, tt := range []struct {
		p        string
		types    map[string]string
		name     string
		compiled bool
	}{
		{"materialized_configs/feed/job.json", types, "feed/job", true},
		{"materialized_configs/data/list.json", types, "data/list.json", false},
		{"materialized_configs/data/list.json", map[string]string{}, "data/list.json", false},
		{"materialized_configs/data/list.json", nil, "data/list", true},
		{"materialized_configs/service/banner.txt", types, "service/banner.txt", false},
	} {
		name, compiled, ok := MaterializedConfig(tt.p, tt.types)
		if name != tt.name || compiled != tt.compiled || !ok {
			t.Errorf("MaterializedConfig(%q, %v) = %q, %v, %v; want %q, %v, true", tt.p, tt.types, name, compiled, ok, tt.name, tt.compiled)
		}
	}
}

func TestScan(t *testing.T) {
	fsys := fstest.MapFS{
		"source/b.cconf":              {},
		"source/a.cconf":              {},
		"source/lib/m.cinc":           {},
		"source/s.thrift":             {},
		"source/s.thrift-cvalidator":  {},
		"source/raw/x.json":           {},
		"source/.hidden.cconf":        {},
		"source/.git/config":          {},
		"materialized_configs/a.json": {},
	}
	tree, err := Scan(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := &Tree{
		Configs:    []string{"source/a.cconf", "source/b.cconf"},
		Modules:    []string{"source/lib/m.cinc"},
		Schemas:    []string{"source/s.thrift"},
		Validators: []string{"source/s.thrift-cvalidator"},
		Raw:        []string{"source/raw/x.json"},
	}
	if diff := cmp.Diff(want, tree); diff != "" {
		t.Errorf("Scan (-want +got):\n%s", diff)
	}
}

func TestFindRoot(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "source", "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := FindRoot(deep)
	if err != nil || got != root {
		t.Errorf("FindRoot(%s) = %q, %v; want %q", deep, got, err, root)
	}
	if got, err := FindRoot(root); err != nil || got != root {
		t.Errorf("FindRoot(%s) = %q, %v; want the directory itself", root, got, err)
	}
	if _, err := FindRoot(t.TempDir()); err == nil {
		t.Error("FindRoot outside a repository: no error")
	}

	// The first directory holding source/ wins; a file named source does
	// not count.
	inner := filepath.Join(root, "source", "a", "inner")
	if err := os.MkdirAll(filepath.Join(inner, "source", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inner, "source", "c", "source"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindRoot(filepath.Join(inner, "source", "c")); err != nil || got != inner {
		t.Errorf("FindRoot in a nested repository = %q, %v; want %q", got, err, inner)
	}
}

func TestWriteIfChanged(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, SourceDir), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, tt := range []struct {
		data    string
		changed bool
	}{{"one\n", true}, {"one\n", false}, {"two\n", true}} {
		changed, err := w.WriteIfChanged("materialized_configs/x/y.json", []byte(tt.data))
		if err != nil || changed != tt.changed {
			t.Fatalf("write %d: changed = %v, %v; want %v", i, changed, err, tt.changed)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, "materialized_configs/x/y.json"))
	if err != nil || string(got) != "two\n" {
		t.Fatalf("content %q, %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "materialized_configs/x"))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}
