package cache

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// TestLoadAfterKilledWriter: a writer process killed (SIGKILL) at an
// arbitrary point of its writes, again and again, never leaves a damaged
// entry: Load finds one version of the config, whole (or its tombstone),
// no newer than the writer got to, and removes whatever the kill left
// behind (temporary files, data files no metadata names), so that the
// cache holds that version's files only. A new writer then carries on.
func TestLoadAfterKilledWriter(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, version(1)); err != nil {
		t.Fatal(err)
	}
	var held int64 = 1 // the revision the cache holds
	for kill := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), writerEnv+"="+dir, writerEnv+"_FIRST="+strconv.FormatInt(held+1, 10), writerEnv+"_LAST=1000000")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let the writer get a few revisions further each time (kill+1),
		// then kill it while it writes a temporary file: of metadata
		// (after the data file of the version it writes, before the
		// metadata that commits it) one time, of data the next.
		want := held + int64(kill) + 1
		sub := []string{"meta", "data"}[kill%2]
		deadline := time.Now().Add(time.Minute)
		for {
			if m, err := os.ReadFile(metaPath(dir, racedName)); err == nil {
				if pm, err := parseMeta(racedName, m); err == nil && pm.Revision >= want && writing(dir, sub) {
					break
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the writer did not reach revision %d:\n%s", want, out)
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Fatalf("the writer exited before it was killed:\n%s", out)
		}
		left := cacheFiles(t, dir)

		ld, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ld.Damaged) != 0 || len(ld.Configs) != 1 {
			t.Fatalf("kill %d: Load after the kill (files %q) = %+v", kill+1, left, ld)
		}
		cv := ld.Configs[0]
		if cv.Revision < want {
			t.Fatalf("kill %d: Load found revision %d, but the writer had committed %d", kill+1, cv.Revision, want)
		}
		wantCV := version(cv.Revision)
		if diff := gocmp.Diff(wantCV, cv); diff != "" {
			t.Fatalf("kill %d: Load (files %q) found revision %d (-want +got):\n%s", kill+1, left, cv.Revision, diff)
		}
		wantFiles := []string{"meta/" + racedName + ".json"}
		if !wantCV.Deleted {
			wantFiles = append(wantFiles, "data/"+racedName+dataSuffix+checksum(wantCV.Data))
		}
		slices.Sort(wantFiles)
		if got := cacheFiles(t, dir); !slices.Equal(got, wantFiles) {
			t.Errorf("kill %d: files after Load %q, want %q (after the kill: %q)", kill+1, got, wantFiles, left)
		}
		if got, err := Read(dir, racedName); wantCV.Deleted && !errors.Is(err, ErrNotFound) || !wantCV.Deleted && (err != nil || !gocmp.Equal(got, wantCV)) {
			t.Errorf("kill %d: Read after Load = %+v, %v; want revision %d", kill+1, got, err, cv.Revision)
		}
		held = cv.Revision
	}
}

// writing reports whether DIR/sub/feed holds a temporary file: a writer
// is writing a file there.
func writing(dir, sub string) bool {
	ents, _ := os.ReadDir(filepath.Join(dir, sub, "feed"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			return true
		}
	}
	return false
}

// cacheFiles lists the files under dir, relative to it, with slashes,
// sorted.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}
