package compiler

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestCacheIgnored checks that a cache written by another build of cfg, and
// any cache under --rebuild, mean a full compile.
func TestCacheIgnored(t *testing.T) {
	root := incrementalRepo(t)
	all, _ := build(t, root)
	if got, _ := build(t, root); len(got) != 0 {
		t.Fatalf("second build compiled %v, want nothing", got)
	}

	// Another build of cfg wrote the cache.
	p := filepath.Join(root, filepath.FromSlash(cachePath))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c cacheData
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Identity += " another build"
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := build(t, root); len(got) != len(all) {
		t.Errorf("with another build's cache: compiled %d, want all %d", len(got), len(all))
	}
	if got, _ := build(t, root); len(got) != 0 {
		t.Errorf("after it: compiled %v, want nothing", got)
	}

	res, err := Build(t.Context(), root, Options{Rebuild: true})
	if err != nil || len(res.Outputs) != len(all) || res.UpToDate != 0 {
		t.Errorf("--rebuild: %v; compiled %d, %d up to date; want all %d", err, len(res.Outputs), res.UpToDate, len(all))
	}
}

// rewriteShared writes incrementalRepo's lib/shared.cinc with N = n, and
// gives it the modification time mtime.
func rewriteShared(t *testing.T, root, n string, mtime time.Time) {
	t.Helper()
	writeFile(t, root, "source/lib/shared.cinc", "load(\"//s.thrift\", \"S\")\nN = "+n+"\ndef make(name):\n    return S(name = name, n = N)\n")
	if err := os.Chtimes(filepath.Join(root, "source/lib/shared.cinc"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestCacheStat checks that a source file whose size and modification time
// are those the cache recorded is not read again, unless it was modified
// in the last two seconds (or later): such a file is always read.
func TestCacheStat(t *testing.T) {
	root := incrementalRepo(t)
	rewrite := func(n string, mtime time.Time) { rewriteShared(t, root, n, mtime) }
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	rewrite("1", old)
	build(t, root)

	// Same size and time: not read, so the edit is not seen.
	rewrite("2", old)
	if got, _ := build(t, root); len(got) != 0 {
		t.Errorf("an edit keeping size and modification time: compiled %v, want nothing (the file is not read)", got)
	}
	// Another time: read.
	rewrite("3", old.Add(time.Second))
	if got, _ := build(t, root); len(got) != 3 {
		t.Errorf("an edit changing the modification time: compiled %v, want the 3 configs that load the module", got)
	}
	// A time too recent to trust: read on every compile.
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	rewrite("4", future)
	if got, _ := build(t, root); len(got) != 3 {
		t.Errorf("a recent edit: compiled %v, want the 3 configs that load the module", got)
	}
	rewrite("5", future)
	if got, _ := build(t, root); len(got) != 3 {
		t.Errorf("a recent edit keeping size and modification time: compiled %v, want the 3 configs that load the module", got)
	}
}

// TestCacheRacy checks the two sides of the two-second window of
// TestCacheStat with times in the past only. A module modified half a second
// before a compile is read again by the next compile even when an edit then
// keeps its size and modification time (the edit is in the output); one
// modified three seconds before is not.
func TestCacheRacy(t *testing.T) {
	root := incrementalRepo(t)
	rewrite := func(n string, mtime time.Time) { rewriteShared(t, root, n, mtime) }
	output := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, "materialized_configs/c0.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const c0 = "{\n  \"name\": \"c0\",\n  \"n\": %s\n}\n"
	rewrite("1", time.Now().Add(-time.Hour))
	build(t, root)

	// A module modified some time before a compile, then edited keeping
	// its size and time: read again inside the window (half a second is
	// well inside it, however slow the compile), not outside it (three
	// seconds), so that edit is not seen.
	for i, tc := range []struct {
		age  time.Duration
		read bool
	}{{500 * time.Millisecond, true}, {3 * time.Second, false}} {
		before, after := strconv.Itoa(2*i+2), strconv.Itoa(2*i+3)
		mtime := time.Now().Add(-tc.age)
		rewrite(before, mtime)
		if got, _ := build(t, root); len(got) != 3 {
			t.Fatalf("an edit %v ago: compiled %v, want the 3 configs that load the module", tc.age, got)
		}
		rewrite(after, mtime)
		want, wantN := after, 3
		if !tc.read {
			want, wantN = before, 0
		}
		if got, _ := build(t, root); len(got) != wantN {
			t.Errorf("an edit keeping size and a modification time %v before the last compile: compiled %v, want %d configs (read: %v)", tc.age, got, wantN, tc.read)
		}
		if got, want := output(), fmt.Sprintf(c0, want); got != want {
			t.Errorf("an edit %v old kept its size and time: materialized_configs/c0.json:\n%s\nwant:\n%s", tc.age, got, want)
		}
	}
}
