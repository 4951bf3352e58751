package cache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

var (
	good    = ConfigVersion{Name: "feed/job", Revision: 3, Commit: "c3", Type: "Job", Compiled: true, Data: []byte("{\"port\": 32768}\n")}
	goodSum = checksum(good.Data)
)

// damages are ways a cache entry of good gets damaged: by a disk, a
// crash of the file system or a hand.
var damages = []struct {
	name    string
	damage  func(t *testing.T, dir string)
	wantErr string // Read's error, after the cache directory
}{
	{"data truncated", func(t *testing.T, dir string) {
		rewrite(t, dataPath(dir, good.Name, goodSum), good.Data[:8])
	}, "/data/feed/job.sha256-" + goodSum + ": got sha256 " + checksum(good.Data[:8]) + ", want " + goodSum},
	{"data flipped", func(t *testing.T, dir string) {
		rewrite(t, dataPath(dir, good.Name, goodSum), []byte("{\"port\": 32668}\n"))
	}, "/data/feed/job.sha256-" + goodSum + ": got sha256 " + checksum([]byte("{\"port\": 32668}\n")) + ", want " + goodSum},
	{"data missing", func(t *testing.T, dir string) {
		if err := os.Remove(dataPath(dir, good.Name, goodSum)); err != nil {
			t.Fatal(err)
		}
	}, "/data/feed/job.sha256-" + goodSum + ": data file missing"},
	{"meta garbage", func(t *testing.T, dir string) {
		rewrite(t, metaPath(dir, good.Name), []byte("\x00\x00\x00\x00"))
	}, "/meta/feed/job.json: invalid character '\\x00' looking for beginning of value"},
	{"meta truncated", func(t *testing.T, dir string) {
		b, _ := os.ReadFile(metaPath(dir, good.Name))
		rewrite(t, metaPath(dir, good.Name), b[:len(b)/2])
	}, "/meta/feed/job.json: unexpected end of JSON input"},
	{"meta of another config", func(t *testing.T, dir string) {
		b, _ := os.ReadFile(metaPath(dir, good.Name))
		rewrite(t, metaPath(dir, good.Name), []byte(strings.Replace(string(b), `"feed/job"`, `"feed/other"`, 1)))
	}, `/meta/feed/job.json: name: got "feed/other", want "feed/job"`},
	{"meta without a checksum", func(t *testing.T, dir string) {
		b, _ := os.ReadFile(metaPath(dir, good.Name))
		rewrite(t, metaPath(dir, good.Name), []byte(strings.Replace(string(b), goodSum, "", 1)))
	}, `/meta/feed/job.json: sha256: got "", want 64 hex digits`},
	{"meta empty", func(t *testing.T, dir string) {
		rewrite(t, metaPath(dir, good.Name), nil)
	}, "/meta/feed/job.json: unexpected end of JSON input"},
}

func rewrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadDamaged: Read never returns bytes that fail their checksum, or
// a version whose metadata it cannot read: it says which file is damaged
// and how.
func TestReadDamaged(t *testing.T) {
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, good); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			cv, err := Read(dir, good.Name)
			want := `config "feed/job": cache damaged: ` + dir + tc.wantErr
			if !errors.Is(err, ErrDamaged) || err.Error() != want {
				t.Errorf("Read = %+v, %v\nwant error %s", cv, err, want)
			}
		})
	}
}

// TestLoadDamaged: Load skips and removes each damaged entry, says which
// and why, keeps the others, and reports a damaged state.json without
// failing.
func TestLoadDamaged(t *testing.T) {
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			other := ConfigVersion{Name: "other", Revision: 2, Commit: "c2", Data: []byte("x")}
			gone := ConfigVersion{Name: "feed/gone", Revision: 4, Commit: "c4", Deleted: true}
			for _, cv := range []ConfigVersion{good, other, gone} {
				if err := Write(dir, cv); err != nil {
					t.Fatal(err)
				}
			}
			st := State{Revision: 4, Commit: "c4", Store: "s1", Configs: []string{"feed/gone", "feed/job", "other"}}
			if err := WriteState(dir, st); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			ld, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ld.Damaged) != 1 || ld.Damaged[0].Config != "feed/job" || dir+tc.wantErr != ld.Damaged[0].Path+": "+ld.Damaged[0].Err.Error() {
				t.Errorf("Damaged = %+v, want feed/job: %s", ld.Damaged, tc.wantErr)
			}
			slices.SortFunc(ld.Configs, func(x, y ConfigVersion) int { return strings.Compare(x.Name, y.Name) })
			if diff := gocmp.Diff(Loaded{Configs: []ConfigVersion{gone, other}, State: st}, Loaded{Configs: ld.Configs, State: ld.State}); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
			// The entry is gone, data files included.
			if _, err := Read(dir, good.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("Read after Load = %v, want not found", err)
			}
			if files := dataFiles(t, dir, "feed"); len(files) != 0 {
				t.Errorf("data files left: %q", files)
			}
		})
	}
}

func TestLoadDamagedState(t *testing.T) {
	for _, tc := range []struct {
		name, state, wantErr string
	}{
		{"truncated", `{"revision":4,"commit":"c4","sto`, "unexpected end of JSON input"},
		{"garbage", "\x00\x00", "invalid character '\\x00' looking for beginning of value"},
		{"negative revision", `{"revision":-4}`, "revision: got -4, want 0 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, good); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "state.json")
			rewrite(t, p, []byte(tc.state))
			ld, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := Loaded{Configs: []ConfigVersion{good}, StateDamaged: true}
			if diff := gocmp.Diff(want, ld, gocmp.FilterPath(func(p gocmp.Path) bool { return p.String() == "Damaged" }, gocmp.Ignore())); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
			wantErr := "cache damaged: " + p + ": " + tc.wantErr
			if len(ld.Damaged) != 1 || ld.Damaged[0].Path != p || ld.Damaged[0].Config != "" || ld.Damaged[0].Err.Error() != wantErr {
				t.Errorf("Damaged = %+v, want %s", ld.Damaged, wantErr)
			}
		})
	}
}

// TestEarlierLayout: a cache written with the data in DIR/data/NAME is
// read, checksum verified, and Load moves its data files to the current
// layout.
func TestEarlierLayout(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, good); err != nil {
		t.Fatal(err)
	}
	legacy := legacyDataPath(dir, good.Name)
	if err := os.Rename(dataPath(dir, good.Name, goodSum), legacy); err != nil {
		t.Fatal(err)
	}
	if cv, err := Read(dir, good.Name); err != nil || !gocmp.Equal(cv, good) {
		t.Errorf("Read = %+v, %v", cv, err)
	}
	rewrite(t, legacy, []byte("torn"))
	if _, err := Read(dir, good.Name); !errors.Is(err, ErrDamaged) || err.Error() != `config "feed/job": cache damaged: `+legacy+": fails its checksum" {
		t.Errorf("Read of a damaged file of the earlier layout = %v", err)
	}
	rewrite(t, legacy, good.Data)
	ld, err := Load(dir)
	if err != nil || len(ld.Configs) != 1 || !gocmp.Equal(ld.Configs[0], good) || len(ld.Damaged) != 0 {
		t.Errorf("Load = %+v, %v", ld, err)
	}
	if files := dataFiles(t, dir, "feed"); !slices.Equal(files, []string{"job.sha256-" + goodSum}) {
		t.Errorf("data files after Load: %q", files)
	}
}
