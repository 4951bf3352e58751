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
	a := ConfigVersion{Name: "feed/job", Revision: 3, Commit: "c3", Type: "Job", Compiled: true, Data: []byte("{}\n")}
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
	const sum = "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
	meta, _ := os.ReadFile(filepath.Join(dir, "meta", "feed", "job.json"))
	if want := `{"name":"feed/job","revision":3,"commit":"c3","type":"Job","compiled":true,"sha256":"` + sum + `"}` + "\n"; string(meta) != want {
		t.Errorf("meta = %s, want %s", meta, want)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "data", "feed", "job.sha256-"+sum)); err != nil || string(data) != "{}\n" {
		t.Errorf("data file = %q, %v", data, err)
	}

	// A new version replaces the data file.
	a2 := ConfigVersion{Name: "feed/job", Revision: 4, Commit: "c4", Type: "Job", Compiled: true, Data: []byte("{\"v\": 2}\n")}
	if err := Write(dir, a2); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(dir, "feed/job"); err != nil || !gocmp.Equal(got, a2) {
		t.Errorf("Read = %+v, %v", got, err)
	}
	if files := dataFiles(t, dir, "feed"); !slices.Equal(files, []string{"job.sha256-" + checksum(a2.Data)}) {
		t.Errorf("data files after an update: %q, want the new version's only", files)
	}

	if err := Write(dir, ConfigVersion{Name: "feed/job", Revision: 5, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, "feed/job"); !errors.Is(err, ErrNotFound) || err.Error() != `config "feed/job": deleted at revision 5: not in the cache` {
		t.Errorf("Read deleted = %v", err)
	}
	if files := dataFiles(t, dir, "feed"); len(files) != 0 {
		t.Errorf("data files after a deletion: %q", files)
	}
	if _, err := Read(dir, "nope"); !errors.Is(err, ErrNotFound) || err.Error() != `config "nope": not in the cache` {
		t.Errorf("Read missing = %v", err)
	}
	if err := WriteState(dir, State{Revision: 5, Commit: "c5", Configs: []string{"feed/job", "banner.txt"}}); err != nil {
		t.Fatal(err)
	}
	// A crash left temporary files; Load removes them.
	temps := []string{filepath.Join(dir, "meta", ".cfgtmp-x.json-1"), filepath.Join(dir, "data", ".cfgtmp-x-1"), filepath.Join(dir, ".cfgtmp-state.json-1")}
	for _, p := range temps {
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ld, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ld.Configs, func(x, y ConfigVersion) int { return cmp.Compare(x.Name, y.Name) })
	want := Loaded{
		Configs: []ConfigVersion{b, {Name: "feed/job", Revision: 5, Deleted: true}},
		State:   State{Revision: 5, Commit: "c5", Configs: []string{"banner.txt", "feed/job"}},
	}
	if diff := gocmp.Diff(want, ld); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	for _, p := range temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary file %s left: %v", p, err)
		}
	}

	// Remove drops the entry.
	if err := Remove(dir, "banner.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, "banner.txt"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read after Remove = %v", err)
	}
	if files := dataFiles(t, dir, "."); len(files) != 0 {
		t.Errorf("data files after Remove: %q", files)
	}
}

// dataFiles lists the files in DIR/data/sub.
func dataFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "data", sub))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestCrashBetweenDataAndMeta: a crash after the new version's data file
// and before its metadata leaves the old version whole; Load removes the
// new data file.
func TestCrashBetweenDataAndMeta(t *testing.T) {
	dir := t.TempDir()
	one := ConfigVersion{Name: "x", Revision: 1, Commit: "c1", Data: []byte("one")}
	if err := Write(dir, one); err != nil {
		t.Fatal(err)
	}
	orphan := dataPath(dir, "x", checksum([]byte("two")))
	if err := os.WriteFile(orphan, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(dir, "x"); err != nil || !gocmp.Equal(got, one) {
		t.Errorf("Read = %+v, %v", got, err)
	}
	ld, err := Load(dir)
	if err != nil || len(ld.Configs) != 1 || !gocmp.Equal(ld.Configs[0], one) || len(ld.Damaged) != 0 {
		t.Errorf("Load = %+v, %v", ld, err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan data file left: %v", err)
	}
}

// TestNamesSharingAPrefix: a config named a and one named a/b are both
// cached (their data files are a.sha256-… and a/b.sha256-…).
func TestNamesSharingAPrefix(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "a/b"} {
		if err := Write(dir, ConfigVersion{Name: name, Revision: 1, Data: []byte(name)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "a/b"} {
		if cv, err := Read(dir, name); err != nil || string(cv.Data) != name {
			t.Errorf("Read(%s) = %+v, %v", name, cv, err)
		}
	}
	// The one clash left: a config named a and one under a.json/.
	if err := Write(dir, ConfigVersion{Name: "a.json/b", Revision: 1, Data: []byte("x")}); err == nil {
		t.Fatal("writing a.json/b beside a: no error")
	}
}
