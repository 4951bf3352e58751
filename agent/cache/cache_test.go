package cache

import (
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/repo"
)

// TestBadNames checks that the cache refuses, with the rule of config
// names, what it could not hold safely, and writes nothing for it.
func TestBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "/etc/passwd", "a/../../b", `a\b`, "a/.cfgtmp-x", "a\nb", "a,b"} {
		want := repo.CheckName(name)
		if want == nil {
			t.Fatalf("repo.CheckName(%q) = nil", name)
		}
		if err := Write(dir, ConfigVersion{Name: name, Revision: 1, Data: []byte("x")}); err == nil || err.Error() != want.Error() {
			t.Errorf("Write(%q) = %v, want %v", name, err, want)
		}
		if _, err := Read(dir, name); err == nil || err.Error() != want.Error() {
			t.Errorf("Read(%q) = %v, want %v", name, err, want)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("cache directory holds %v, %v; want nothing", entries, err)
	}
}

func TestWriteReadLoad(t *testing.T) {
	dir := t.TempDir()
	a := ConfigVersion{Name: "feed/job", Revision: 3, Commit: "c3", Type: "Job", Data: []byte("{}\n")}
	b := ConfigVersion{Name: "banner.txt", Revision: 4, Commit: "c4", Data: []byte{}}
	for _, cv := range []ConfigVersion{a, b} {
		if err := Write(dir, cv); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Read(dir, "feed/job")
	if err != nil || !gocmp.Equal(got, a) {
		t.Errorf("Read = %+v, %v", got, err)
	}
	meta, _ := os.ReadFile(filepath.Join(dir, "meta", "feed", "job.json"))
	if want := `{"name":"feed/job","revision":3,"commit":"c3","type":"Job","sha256":"ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"}` + "\n"; string(meta) != want {
		t.Errorf("meta = %s, want %s", meta, want)
	}
	if err := Write(dir, ConfigVersion{Name: "feed/job", Revision: 5, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, "feed/job"); !errors.Is(err, ErrNotFound) || err.Error() != `config "feed/job": deleted at revision 5: not in the cache` {
		t.Errorf("Read deleted = %v", err)
	}
	if _, err := Read(dir, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read missing = %v", err)
	}
	if err := WriteState(dir, State{Revision: 5, Commit: "c5", Configs: []string{"feed/job", "banner.txt"}}); err != nil {
		t.Fatal(err)
	}
	// A crash left a temporary file; Load skips it, RemoveTemp removes it.
	os.WriteFile(filepath.Join(dir, "meta", ".cfgtmp-x.json-1"), []byte("junk"), 0o644)
	all, st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(all, func(x, y ConfigVersion) int { return cmp.Compare(x.Name, y.Name) })
	want := []ConfigVersion{b, {Name: "feed/job", Revision: 5, Deleted: true}}
	if diff := gocmp.Diff(want, all); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff(State{Revision: 5, Commit: "c5", Configs: []string{"banner.txt", "feed/job"}}, st); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if err := RemoveTemp(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "meta", ".cfgtmp-x.json-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

// TestCrashBetweenDataAndMeta: the data of a new version with the
// metadata of the old one. Read returns the data; Load asks for a refetch.
func TestCrashBetweenDataAndMeta(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, ConfigVersion{Name: "x", Revision: 1, Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "x"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(dir, "x"); err != nil || string(got.Data) != "two" || got.Revision != 1 {
		t.Errorf("Read = %+v, %v", got, err)
	}
	all, _, err := Load(dir)
	if err != nil || len(all) != 1 || all[0].Revision != 0 || all[0].Data != nil {
		t.Errorf("Load = %+v, %v", all, err)
	}
}

func TestNameClash(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, ConfigVersion{Name: "a", Revision: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	err := Write(dir, ConfigVersion{Name: "a/b", Revision: 1, Data: []byte("x")})
	if err == nil {
		t.Fatal("writing a/b beside a: no error")
	}
}
