package compiler

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/repo"
)

// TestBuildSnapshot checks what a snapshot holds: every source repo.Scan
// lists, the repository's settings, and every materialized file after the
// build, as the build read and produced them, whatever happens to the disk
// afterwards.
func TestBuildSnapshot(t *testing.T) {
	root := incrementalRepo(t)
	writeFile(t, root, "source/.editor-swap", "ignored")
	writeFile(t, root, repo.SettingsFile, `{"encodings": ["json", "thrift-binary"]}`+"\n")
	if err := os.Chmod(filepath.Join(root, "source/raw.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	build(t, root) // a first build: the next one finds outputs up to date
	writeFile(t, root, "source/c0.cconf", "load(\"//lib/shared.cinc\", \"make\")\nexport(make(\"c0 changed\"))\n")
	res, err := Build(context.Background(), root, Options{Jobs: 4, Snapshot: true})
	if err != nil || len(res.Diags()) > 0 {
		t.Fatalf("Build: %v %v", err, res.Diags())
	}
	snap := res.Snapshot
	disk := map[string]string{}
	var want []string
	err = fs.WalkDir(os.DirFS(root), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, repo.CacheDir+"/") || strings.HasPrefix(d.Name(), ".") && p != repo.TypesFile {
			return err
		}
		data, err := os.ReadFile(filepath.Join(root, p))
		disk[p] = string(data)
		want = append(want, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range snap.Files() {
		got[f.Path] = string(f.Data)
		if wantExec := f.Path == "source/raw.txt"; (f.Mode&0o111 != 0) != wantExec {
			t.Errorf("%s: mode %v", f.Path, f.Mode)
		}
	}
	if diff := cmp.Diff(disk, got); diff != "" {
		t.Errorf("snapshot differs from the files on disk after the build (-disk +snapshot):\n%s", diff)
	}
	if _, ok := disk["materialized_configs/c0.thrift-binary"]; !ok {
		t.Errorf("no Thrift encoding written, though %s publishes it", repo.SettingsFile)
	}
	if err := fstest.TestFS(snap, want...); err != nil {
		t.Fatal(err)
	}

	// The disk changes; the snapshot does not.
	writeFile(t, root, "source/c1.cconf", "broken")
	os.Remove(filepath.Join(root, "materialized_configs/c2.json"))
	if data, err := fs.ReadFile(snap, "source/c1.cconf"); err != nil || string(data) != disk["source/c1.cconf"] {
		t.Errorf("source/c1.cconf in the snapshot: %q, %v", data, err)
	}
	if data, err := fs.ReadFile(snap, "materialized_configs/c2.json"); err != nil || string(data) != disk["materialized_configs/c2.json"] {
		t.Errorf("materialized_configs/c2.json in the snapshot: %q, %v", data, err)
	}

	for p, want := range map[string]bool{
		"source/a.cconf":               true,
		"materialized_configs/x/y.bin": true,
		repo.TypesFile:                 true,
		repo.SettingsFile:              true,
		"source/.hidden":               false,
		"source/dir/.git/config":       false,
		"notes.txt":                    false,
		"sourcex/a":                    false,
		"source/../x":                  false,
	} {
		if got := snap.Holds(p); got != want {
			t.Errorf("Holds(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestBuildSnapshotReadsOnce edits a config's source while the build runs
// (after the first config is compiled, with one worker): the build
// compiles the bytes it read at the start, and the snapshot holds those
// bytes and their output. The config is compiled because a module it
// loads changed; its own file, unchanged since the last build, is one the
// compile cache would let the build read only when it compiles it.
func TestBuildSnapshotReadsOnce(t *testing.T) {
	root := incrementalRepo(t)
	past := time.Now().Add(-time.Hour)
	filepath.WalkDir(filepath.Join(root, "source"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			err = os.Chtimes(p, past, past)
		}
		return err
	})
	build(t, root)
	writeFile(t, root, "source/lib/other.cinc", "load(\"//s.thrift\", \"S\")\ndef make(name):\n    return S(name = name, n = 2)\n")
	edited := "load(\"//lib/other.cinc\", \"make\")\nexport(make(\"edited while compiling\"))\n"
	opts := Options{Jobs: 1, Snapshot: true}
	opts.Progress = func(done, total int) {
		if done == 1 {
			writeFile(t, root, "source/c9.cconf", edited)
		}
	}
	res, err := Build(context.Background(), root, opts)
	if err != nil || len(res.Diags()) > 0 {
		t.Fatalf("Build: %v %v", err, res.Diags())
	}
	src, _ := fs.ReadFile(res.Snapshot, "source/c9.cconf")
	out, _ := fs.ReadFile(res.Snapshot, "materialized_configs/c9.json")
	if strings.Contains(string(src), "edited") || !strings.Contains(string(out), `"name": "c9"`) {
		t.Errorf("snapshot holds source %q and output %q, want both from before the edit", src, out)
	}
	if disk, _ := os.ReadFile(filepath.Join(root, "source/c9.cconf")); string(disk) != edited {
		t.Errorf("the edit is not on disk: %q", disk)
	}
	// The next build sees the edit.
	res, err = Build(context.Background(), root, Options{Snapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := fs.ReadFile(res.Snapshot, "materialized_configs/c9.json"); !strings.Contains(string(out), "edited while compiling") {
		t.Errorf("output after the next build: %q", out)
	}
}

// TestBuildSnapshotRefusesLinks builds a repository with symbolic links
// under source/ (a raw config, a module a config loads, a directory, one
// leading out of the repository) with and without a snapshot: the
// diagnostics are the same, each naming the link, and the snapshot holds
// nothing read through a link, refusing them as repo.Repo does.
func TestBuildSnapshotRefusesLinks(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, outside, "secret.txt", "secret\n")
	writeFile(t, outside, "lib/m.cinc", "X = 1\n")
	root := incrementalRepo(t)
	for link, target := range map[string]string{
		"source/alias.txt":     "raw.txt",
		"source/lib/link.cinc": "shared.cinc",
		"source/out.txt":       filepath.Join(outside, "secret.txt"),
		"source/outdir":        filepath.Join(outside, "lib"),
	} {
		if err := os.Symlink(target, filepath.Join(root, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, root, "source/via_link.cconf", "load(\"//lib/link.cinc\", \"make\")\nexport(make(\"x\"))\n")
	writeFile(t, root, "source/via_dir.cconf", "load(\"//outdir/m.cinc\", \"X\")\n")

	diags := func(snapshot bool) ([]string, *Snapshot) {
		res, err := Build(context.Background(), root, Options{Jobs: 2, Snapshot: snapshot, Rebuild: true})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range res.Diags() {
			out = append(out, d.Error())
		}
		return out, res.Snapshot
	}
	plain, _ := diags(false)
	got, snap := diags(true)
	if diff := cmp.Diff(plain, got); diff != "" {
		t.Errorf("diagnostics with a snapshot differ from those without (-without +with):\n%s", diff)
	}
	for _, link := range []string{"source/alias.txt", "source/out.txt", "source/via_link.cconf", "source/via_dir.cconf"} {
		if !slices.ContainsFunc(got, func(d string) bool { return strings.HasPrefix(d, link+":") }) {
			t.Errorf("no diagnostic at %s: %q", link, got)
		}
	}
	for _, f := range snap.Files() {
		if strings.Contains(string(f.Data), "secret") || f.Path == "source/alias.txt" || strings.HasPrefix(f.Path, "source/outdir") {
			t.Errorf("the snapshot holds %s, read through a link", f.Path)
		}
	}
	for _, p := range []string{"source/alias.txt", "source/outdir/m.cinc"} {
		var le *repo.LinkError
		if _, err := fs.ReadFile(snap, p); !errors.As(err, &le) {
			t.Errorf("reading %s from the snapshot: %v, want a *repo.LinkError", p, err)
		}
	}
	if _, err := fs.ReadFile(snap, "source/.editor-swap"); !errors.Is(err, repo.ErrIgnored) {
		t.Errorf("reading an ignored name from the snapshot: %v, want repo.ErrIgnored", err)
	}
}
