package durable

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is OS, recording what MkdirAll asks of it; made lists
// directories that a call beside MkdirAll makes just before it does.
type recorder struct {
	mu    sync.Mutex
	calls []string
	made  map[string]bool
}

func (r *recorder) Mkdir(name string, perm fs.FileMode) error {
	if r.made[name] {
		if err := os.Mkdir(name, perm); err != nil {
			return err
		}
	}
	r.add("mkdir " + name)
	return OS.Mkdir(name, perm)
}

func (r *recorder) SyncDir(name string) error {
	r.add("sync " + name)
	return OS.SyncDir(name)
}

func (r *recorder) add(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
}

// TestMkdirAll checks that each directory MkdirAll makes has its parent
// synced after it is made, parents first; that it changes nothing where
// the directory exists; and that a directory another caller made between
// MkdirAll looking and making it still has its parent synced.
func TestMkdirAll(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "a", "b", "c")
	r := &recorder{}
	if err := MkdirAll(r, dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(top, "a"), filepath.Join(top, "a", "b")
	want := []string{"mkdir " + a, "sync " + top, "mkdir " + b, "sync " + a, "mkdir " + dir, "sync " + b}
	if diff := cmp.Diff(want, r.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	for _, d := range []string{a, b, dir} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() || fi.Mode().Perm()&^0o700 != 0 {
			t.Errorf("%s: %v, %v; want a directory of mode 0700 or less", d, fi, err)
		}
	}

	r = &recorder{}
	if err := MkdirAll(r, dir, 0o700); err != nil || len(r.calls) != 0 {
		t.Errorf("again: %v, calls %q; want none", err, r.calls)
	}

	other := filepath.Join(top, "other")
	r = &recorder{made: map[string]bool{other: true}}
	if err := MkdirAll(r, other, 0o700); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mkdir " + other, "sync " + top}, r.calls); diff != "" {
		t.Errorf("a directory made beside: calls (-want +got):\n%s", diff)
	}
}

// TestMkdirAllNotADirectory checks that a file where a directory goes is
// an error naming it, and that nothing is made under it.
func TestMkdirAllNotADirectory(t *testing.T) {
	top := t.TempDir()
	file := filepath.Join(top, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		r := &recorder{}
		err := MkdirAll(r, dir, 0o700)
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("MkdirAll(%s): %v, want an error naming %s", dir, err, file)
		}
		if len(r.calls) != 0 {
			t.Errorf("MkdirAll(%s): calls %q, want none", dir, r.calls)
		}
	}
}

// TestMkdirAllConcurrent runs callers making overlapping trees at once:
// each succeeds, and every directory made has had its parent synced after
// it was made, by one caller or another.
func TestMkdirAllConcurrent(t *testing.T) {
	top := t.TempDir()
	r := &recorder{}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			errs <- MkdirAll(r, filepath.Join(top, "x", "y", fmt.Sprint(i%4)), 0o700)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	made := map[string]bool{}
	for _, c := range r.calls {
		if d, ok := strings.CutPrefix(c, "mkdir "); ok {
			made[d] = true
		} else if d, ok := strings.CutPrefix(c, "sync "); ok {
			for m := range made {
				if filepath.Dir(m) == d {
					delete(made, m)
				}
			}
		}
	}
	if len(made) != 0 {
		t.Errorf("made and never synced in their parent after: %v (calls %q)", made, r.calls)
	}
}
