package configdiff

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/gitrepo"
)

func TestValues(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     []string
		wantErr  string
	}{
		{
			name: "equal values in another layout",
			old:  `{"a": 1, "b": [1, 2]}`,
			new:  "{\n  \"b\": [1,2],\n  \"a\": 1\n}\n",
		},
		{
			name: "nested field",
			old:  `{"name": "cache", "resources": {"cpu_millis": 1000, "memory_mb": 2048}}`,
			new:  `{"name": "cache", "resources": {"cpu_millis": 1000, "memory_mb": 4096}}`,
			want: []string{"resources.memory_mb: 2048 -> 4096"},
		},
		{
			name: "document order, not alphabetical",
			old:  `{"zeta": 1, "alpha": "x", "mid": {"y": 1, "b": 2}}`,
			new:  `{"zeta": 2, "alpha": "y", "mid": {"y": 3, "b": 4}}`,
			want: []string{`zeta: 1 -> 2`, `alpha: "x" -> "y"`, `mid.y: 1 -> 3`, `mid.b: 2 -> 4`},
		},
		{
			name: "fields added and removed in place",
			old:  `{"a": 1, "b": 2, "c": 3}`,
			new:  `{"a": 1, "c": 3, "d": {"y": [1], "x": null}}`,
			want: []string{`b: removed 2`, `d: added {"y":[1],"x":null}`},
		},
		{
			name: "list elements",
			old:  `{"tags": ["a", "b", "c"]}`,
			new:  `{"tags": ["a", "b", "x", "c", "d"]}`,
			want: []string{`tags[2]: added "x"`, `tags[4]: added "d"`},
		},
		{
			name: "list element removed and changed",
			old:  `{"tags": ["a", "b", "c"], "ports": [80, 443]}`,
			new:  `{"tags": ["a", "c"], "ports": [80, 8443]}`,
			want: []string{`tags[1]: removed "b"`, `ports[1]: 443 -> 8443`},
		},
		{
			name: "structs in a list",
			old:  `{"jobs": [{"name": "a", "cpu": 1}, {"name": "b", "cpu": 2}]}`,
			new:  `{"jobs": [{"name": "a", "cpu": 1}, {"name": "b", "cpu": 3}]}`,
			want: []string{`jobs[1].cpu: 2 -> 3`},
		},
		{
			name: "map keys that are not names",
			old:  `{"env": {"us-east": 1, "80": "http"}}`,
			new:  `{"env": {"us-east": 2, "80": "https"}}`,
			want: []string{`env["us-east"]: 1 -> 2`, `env["80"]: "http" -> "https"`},
		},
		{
			name: "type change and exact integers",
			old:  `{"a": 9007199254740993, "b": "1", "c": null}`,
			new:  `{"a": 9007199254740992, "b": 1, "c": [true]}`,
			want: []string{`a: 9007199254740993 -> 9007199254740992`, `b: "1" -> 1`, `c: null -> [true]`},
		},
		{
			name: "strings are not HTML-escaped",
			old:  `{"s": "<a>"}`,
			new:  `{"s": "<b> & \"c\""}`,
			want: []string{`s: "<a>" -> "<b> & \"c\""`},
		},
		{
			name: "whole value",
			old:  `[1]`,
			new:  `{"a": 1}`,
			want: []string{`value: [1] -> {"a":1}`},
		},
		{name: "not JSON", old: `{"a": `, new: `{}`, wantErr: "old value: unexpected EOF"},
		{name: "trailing data", old: `{}`, new: `{} {}`, wantErr: "new value: invalid JSON: data after the top-level value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, err := Values([]byte(tt.old), []byte(tt.new))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fields {
				got = append(got, f.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		old, new string
		want     []string
	}{
		{"a\nb\nc\n", "a\nb\nc\n", nil},
		{"a\nb\nc\n", "a\nB\nc\nd\n", []string{`line 2: "b" -> "B"`, `line 4: added "d"`}},
		{"a\nb\nc\n", "a\nc\n", []string{`line 2: removed "b"`}},
		{"a\nb\n", "a\nb", []string{`line 2: "b\n" -> "b"`}},
		{"", "x\n", []string{`line 1: added "x"`}},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range Lines([]byte(tt.old), []byte(tt.new)) {
			got = append(got, f.String())
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Lines(%q, %q) (-want +got):\n%s", tt.old, tt.new, diff)
		}
	}
}

func TestCompare(t *testing.T) {
	old := fstest.MapFS{
		"source/a.cconf":                           {},
		"source/raw.json":                          {},
		"materialized_configs/a.json":              {Data: []byte(`{"n": 1, "s": "x"}`)},
		"materialized_configs/same.json":           {Data: []byte("{\n  \"n\": 1\n}\n")},
		"materialized_configs/layout.json":         {Data: []byte(`{"n":1}`)},
		"materialized_configs/gone.json":           {Data: []byte(`{}`)},
		"materialized_configs/raw.json":            {Data: []byte("x")},
		"materialized_configs/notes.txt":           {Data: []byte("one\ntwo\n")},
		"materialized_configs/logo.png":            {Data: []byte("\x89PNG\x00")},
		"materialized_configs/hand.json":           {Data: []byte("not json\n")},
		"materialized_configs/.tmp-a.json-1":       {Data: []byte("ignored")},
		"materialized_configs/a.thrift-binary":     {Data: []byte("\x00")}, // an encoding of a.json
		"materialized_configs/gone.thrift-compact": {Data: []byte("\x00")},
	}
	outs := []*compiler.Output{
		{Source: "source/a.cconf", Name: "a", Path: "materialized_configs/a.json", Type: "Job", Data: []byte(`{"n": 2, "s": "x"}`)},
		{Source: "source/same.cconf", Name: "same", Path: "materialized_configs/same.json", Data: []byte("{\n  \"n\": 1\n}\n")},
		{Source: "source/layout.cconf", Name: "layout", Path: "materialized_configs/layout.json", Data: []byte("{\n  \"n\": 1\n}\n")},
		{Source: "source/new.cconf", Name: "new", Path: "materialized_configs/new.json", Data: []byte(`{}`)},
		{Source: "source/notes.txt", Name: "notes.txt", Path: "materialized_configs/notes.txt", Data: []byte("one\n2\n")},
		{Source: "source/logo.png", Name: "logo.png", Path: "materialized_configs/logo.png", Data: []byte("\x89PNG\x01")},
		{Source: "source/hand.cconf", Name: "hand", Path: "materialized_configs/hand.json", Data: []byte("{}\n")},
		{Source: "source/broken.cconf", Name: "broken", Path: "materialized_configs/broken.json", // failed: skipped
			Diags: diag.List{diag.Errorf(diag.Pos{File: "source/broken.cconf"}, "broken")}},
	}
	got, err := Compare(old, outs)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteText(&b, got); err != nil {
		t.Fatal(err)
	}
	want := `~ a
  n: 1 -> 2
- gone
~ hand
  line 1: "not json" -> "{}"
~ logo.png
  binary content changed
+ new
~ notes.txt
  line 2: "two" -> "2"
- raw.json
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WriteText(Compare) (-want +got):\n%s", diff)
	}
	if got[0].Type != "Job" || got[0].Path != "materialized_configs/a.json" || got[0].Change != Changed {
		t.Errorf("first config = %+v", got[0])
	}

	// Against nothing, everything is added.
	got, err = Compare(nil, outs[:2])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Change != Added || got[1].Change != Added {
		t.Errorf("Compare(nil) = %+v", got)
	}
}

// TestRun compiles a repository committed with git against its HEAD.
func TestRun(t *testing.T) {
	t.Setenv("CFG_AUTHOR_NAME", "Tester")
	t.Setenv("CFG_AUTHOR_EMAIL", "tester@example.com")
	root := t.TempDir()
	if _, err := git.PlainInit(root, false); err != nil {
		t.Fatal(err)
	}
	write := func(pairs ...string) {
		t.Helper()
		for i := 0; i < len(pairs); i += 2 {
			name := filepath.Join(root, filepath.FromSlash(pairs[i]))
			if pairs[i+1] == "" {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(pairs[i+1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(
		"source/schemas/job.thrift", `
struct Resources {
  1: required i32 cpu_millis
  2: required i32 memory_mb
}
struct Job {
  1: required string name
  2: optional Resources resources
  3: optional list<string> tags = []
}
`,
		"source/lib/job.cinc", `
load("//schemas/job.thrift", "Job", "Resources")
def job(name, memory_mb = 2048, tags = []):
    return Job(name = name, resources = Resources(cpu_millis = 1000, memory_mb = memory_mb), tags = tags)
`,
		"source/feed/cache_job.cconf", `
load("//lib/job.cinc", "job")
export(job("cache", tags = ["a", "b"]))
`,
		"source/old.cconf", `
load("//lib/job.cinc", "job")
export(job("old"))
`,
		"source/banner.txt", "hello\n",
	)
	ctx := context.Background()
	res, err := compiler.Build(ctx, root, compiler.Options{})
	if err != nil || res.Failed > 0 {
		t.Fatalf("compile: %v %v", err, res.Diags())
	}
	g, err := gitrepo.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := g.WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Commit(gitrepo.Paths(changes), gitrepo.CommitOptions{Message: "initial"}); err != nil {
		t.Fatal(err)
	}

	write(
		"source/lib/job.cinc", `
load("//schemas/job.thrift", "Job", "Resources")
def job(name, memory_mb = 4096, tags = []):
    return Job(name = name, resources = Resources(cpu_millis = 1000, memory_mb = memory_mb), tags = tags)
`,
		"source/feed/cache_job.cconf", `
load("//lib/job.cinc", "job")
export(job("cache", tags = ["a", "b", "x"]))
`,
		"source/old.cconf", "",
		"source/new/config.cconf", `
load("//lib/job.cinc", "job")
export(job("new"))
`,
		"source/banner.txt", "hello\nworld\n",
	)
	head, err := g.FS("HEAD")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, root, head, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diags) > 0 {
		t.Fatal(rep.Diags)
	}
	var b bytes.Buffer
	if err := WriteText(&b, rep.Configs); err != nil {
		t.Fatal(err)
	}
	want := `~ banner.txt
  line 2: added "world"
~ feed/cache_job
  resources.memory_mb: 2048 -> 4096
  tags[2]: added "x"
+ new/config
- old
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("diff against HEAD (-want +got):\n%s", diff)
	}
	if rep.Compiled != 3 {
		t.Errorf("Compiled = %d, want 3", rep.Compiled)
	}

	// A compile error: diagnostics and no comparison.
	write("source/bad.cconf", `export(1)`)
	rep, err = Run(ctx, root, head, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diags) == 0 || rep.Configs != nil || !strings.Contains(rep.Diags.Error(), "source/bad.cconf") {
		t.Errorf("Run with a bad config: configs %v, diags %v", rep.Configs, rep.Diags)
	}
}

// FuzzValues checks that Values never panics, finds no difference between a
// document and itself, and finds one between documents of different values.
func FuzzValues(f *testing.F) {
	f.Add([]byte(`{"a": 1, "b": [1, "x", null, true], "c": {"d": 1.5}}`), []byte(`{"a": 2, "b": [1, "y"]}`))
	f.Add([]byte(`[]`), []byte(`{}`))
	f.Add([]byte(`"s"`), []byte(`{"x": {"x": {"x": []}}}`))
	f.Fuzz(func(t *testing.T, old, new []byte) {
		fields, err := Values(old, new)
		if err != nil {
			return
		}
		if same, err := Values(old, old); err != nil || len(same) != 0 {
			t.Fatalf("Values(x, x) = %v, %v", same, err)
		}
		if len(fields) == 0 && !jsonEqual(old, new) {
			t.Fatalf("no difference found between %s and %s", old, new)
		}
	})
}

// jsonEqual compares two JSON documents with encoding/json.
func jsonEqual(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return cmp.Equal(x, y)
}
