package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// linkedRepo makes a repository at dir/repo next to a directory dir/outside
// holding a secret, with links under source/ and materialized_configs/.
func linkedRepo(t *testing.T) (root, outside string) {
	t.Helper()
	dir := t.TempDir()
	root, outside = filepath.Join(dir, "repo"), filepath.Join(dir, "outside")
	for name, data := range map[string]string{
		"outside/secret":                   "TOPSECRET",
		"outside/.ssh/authorized_keys":     "ssh-ed25519 AAAA",
		"repo/source/ok.txt":               "ok",
		"repo/source/.hidden/x.cinc":       "X = 1",
		"repo/source/a/f.txt":              "original",
		"repo/.git/config":                 "[core]",
		"repo/materialized_configs/x.json": "{}\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"repo/source/out.txt":           "../../outside/secret",
		"repo/source/abs.txt":           filepath.Join(outside, "secret"),
		"repo/source/dir":               "../../outside",
		"repo/source/in.txt":            "ok.txt",
		"repo/source/git.txt":           "../.git/config",
		"repo/materialized_configs/out": "../../outside",
	} {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(link))); err != nil {
			t.Skipf("symbolic links: %v", err)
		}
	}
	return root, outside
}

func openRepo(t *testing.T, root string) *Repo {
	t.Helper()
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRepoReadsNoLink(t *testing.T) {
	root, outside := linkedRepo(t)
	r := openRepo(t, root)
	fsys := r.FS()
	if data, err := fs.ReadFile(fsys, "source/ok.txt"); err != nil || string(data) != "ok" {
		t.Fatalf("ReadFile(source/ok.txt) = %q, %v", data, err)
	}
	for _, tc := range []struct {
		p          string
		link, dest string // the *LinkError expected
		err        error  // or this error
	}{
		{p: "source/out.txt", link: "source/out.txt", dest: "../../outside/secret"},
		{p: "source/abs.txt", link: "source/abs.txt", dest: filepath.Join(outside, "secret")},
		{p: "source/dir/secret", link: "source/dir", dest: "../../outside"},
		{p: "source/dir/.ssh/authorized_keys", err: ErrIgnored},
		{p: "source/in.txt", link: "source/in.txt", dest: "ok.txt"},
		{p: "source/git.txt", link: "source/git.txt", dest: "../.git/config"},
		{p: "source/.hidden/x.cinc", err: ErrIgnored},
		{p: ".git/config", err: ErrOutside},
		{p: "../outside/secret", err: fs.ErrInvalid},
		{p: "materialized_configs/out/secret", link: "materialized_configs/out", dest: "../../outside"},
	} {
		_, readErr := fs.ReadFile(fsys, tc.p)
		_, statErr := fs.Stat(fsys, tc.p)
		_, openErr := fsys.Open(tc.p)
		for op, err := range map[string]error{"ReadFile": readErr, "Stat": statErr, "Open": openErr} {
			var le *LinkError
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("%s(%s) = %v, want %v", op, tc.p, err, tc.err)
			case tc.err == nil && !errors.As(err, &le):
				t.Errorf("%s(%s) = %v, want a *LinkError", op, tc.p, err)
			case tc.err == nil && (le.Path != tc.link || le.Target != tc.dest):
				t.Errorf("%s(%s) = link %q to %q, want %q to %q", op, tc.p, le.Path, le.Target, tc.link, tc.dest)
			}
		}
	}

	// Listings show links as links, and Scan refuses them.
	tree, err := Scan(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"source/abs.txt", "source/dir", "source/git.txt", "source/in.txt", "source/out.txt"}
	if !slices.Equal(tree.Refused, want) {
		t.Errorf("Scan: Refused = %q, want %q", tree.Refused, want)
	}
	if !slices.Equal(tree.Raw, []string{"source/a/f.txt", "source/ok.txt"}) {
		t.Errorf("Scan: Raw = %q", tree.Raw)
	}
	var le *LinkError
	if _, err := ListMaterialized(fsys); !errors.As(err, &le) || le.Path != "materialized_configs/out" {
		t.Errorf("ListMaterialized = %v, want the link materialized_configs/out", err)
	}
}

func TestRepoWritesNoLink(t *testing.T) {
	root, outside := linkedRepo(t)
	r := openRepo(t, root)
	var le *LinkError
	if _, err := r.WriteIfChanged("materialized_configs/out/secret", []byte("x")); !errors.As(err, &le) {
		t.Errorf("WriteIfChanged through a link: %v, want a *LinkError", err)
	}
	if err := r.Write("materialized_configs/out/new", []byte("x")); !errors.As(err, &le) {
		t.Errorf("Write through a link: %v, want a *LinkError", err)
	}
	if err := r.Remove("materialized_configs/out/secret"); !errors.As(err, &le) {
		t.Errorf("Remove through a link: %v, want a *LinkError", err)
	}
	if err := r.Remove("materialized_configs/out"); !errors.As(err, &le) {
		t.Errorf("Remove of a link: %v, want a *LinkError", err)
	}
	if err := r.CheckWritable("materialized_configs/x.json", "materialized_configs/new/y.json", "materialized_configs/out/z.json"); !errors.As(err, &le) || le.Path != "materialized_configs/out" {
		t.Errorf("CheckWritable = %v, want the link materialized_configs/out", err)
	}
	for _, p := range []string{"source/ok.txt", ".git/config", "materialized_configs", "cfg.json"} {
		if err := r.Write(p, []byte("x")); err == nil {
			t.Errorf("Write(%s): no error", p)
		}
		if err := r.Remove(p); err == nil {
			t.Errorf("Remove(%s): no error", p)
		}
	}
	if data, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(data) != "TOPSECRET" {
		t.Errorf("outside/secret = %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("outside/new: %v, want none", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "materialized_configs", "out")); err != nil {
		t.Errorf("the link was removed: %v", err)
	}

	// A link to a directory as .cfg/ or as materialized_configs/.
	if err := os.Symlink("../outside", filepath.Join(root, CacheDir)); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteCacheFile("compile-cache.gob", []byte("x")); !errors.As(err, &le) || le.Path != CacheDir {
		t.Errorf("WriteCacheFile through a linked .cfg: %v", err)
	}
	if _, err := r.ReadCacheFile("secret"); !errors.As(err, &le) {
		t.Errorf("ReadCacheFile through a linked .cfg: %v", err)
	}
}

// TestRepoKeepsCheckedDirectory replaces a directory by a link while a
// Repo holds it open: the Repo keeps reading the directory it checked.
func TestRepoKeepsCheckedDirectory(t *testing.T) {
	root, outside := linkedRepo(t)
	if err := os.WriteFile(filepath.Join(outside, "f.txt"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openRepo(t, root)
	if data, err := fs.ReadFile(r.FS(), "source/a/f.txt"); err != nil || string(data) != "original" {
		t.Fatalf("before: %q, %v", data, err)
	}
	a := filepath.Join(root, "source", "a")
	if err := os.Rename(a, a+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, a); err != nil {
		t.Fatal(err)
	}
	if data, err := fs.ReadFile(r.FS(), "source/a/f.txt"); err != nil || string(data) != "original" {
		t.Errorf("after the swap: %q, %v; want the directory checked", data, err)
	}
	var le *LinkError
	if _, err := fs.ReadFile(openRepo(t, root).FS(), "source/a/f.txt"); !errors.As(err, &le) {
		t.Errorf("a new Repo: %v, want a *LinkError", err)
	}
}

// TestRepoOpenDirsBounded reads files in more directories than a Repo
// holds open, from several goroutines.
func TestRepoOpenDirsBounded(t *testing.T) {
	root := t.TempDir()
	const dirs = MaxOpenDirs + 50
	for i := range dirs {
		dir := filepath.Join(root, "source", fmt.Sprintf("d%d", i), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := openRepo(t, root)
	var wg sync.WaitGroup
	errs := make(chan error, dirs)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < dirs; i += 4 {
				p := fmt.Sprintf("source/d%d/sub/f.txt", i)
				if data, err := fs.ReadFile(r.FS(), p); err != nil || string(data) != fmt.Sprint(i) {
					errs <- fmt.Errorf("%s: %q, %v", p, data, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.dirs.openDirs(); n > MaxOpenDirs-1 {
		t.Errorf("%d directories open besides the root, want at most %d", n, MaxOpenDirs-1)
	}
	// What the process holds, not only what the cache lists: its file
	// descriptors of the repository's directories (on Linux).
	if n, ok := fdsUnder(t, root); ok && n > MaxOpenDirs {
		t.Errorf("%d file descriptors of the repository's directories open, want at most %d", n, MaxOpenDirs)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n, ok := fdsUnder(t, root); ok && n != 0 {
		t.Errorf("%d file descriptors of the repository's directories open after Close, want none", n)
	}
	if _, err := fs.ReadFile(r.FS(), "source/d0/sub/f.txt"); err == nil {
		t.Error("read after Close: no error")
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		data    string
		want    []string
		wantErr string
	}{
		{`{"encodings": ["json"]}`, []string{"json"}, ""},
		{`{"encodings": ["thrift-compact", "json", "thrift-binary"]}`, []string{"json", "thrift-binary", "thrift-compact"}, ""},
		{`{"encodings": ["json", "thrift-binary"]}` + "\n", []string{"json", "thrift-binary"}, ""},
		{``, nil, `cfg.json: empty file (want a JSON object)`},
		{`{"encodings": ["thrift-binary"]}`, nil, `cfg.json: encodings: got ["thrift-binary"], want a list holding "json" (configs are always published as JSON)`},
		{`{}`, nil, `cfg.json: encodings: got [], want a list holding "json" (configs are always published as JSON)`},
		{`{"encodings": ["json", "json"]}`, nil, `cfg.json: encodings: "json" listed twice`},
		{`{"encodings": ["json", "xml"]}`, nil, `cfg.json: encodings: unknown encoding "xml" (want json, thrift-binary, thrift-compact)`},
		{`{"encoding": ["json"]}`, nil, `cfg.json: unknown field "encoding"`},
		{"{\n  \"encodings\": \"json\"\n}", nil, `cfg.json:2:22: encodings: got string, want a list of encodings`},
		{"{\n  \"encodings\": [json]\n}", nil, `cfg.json:2:17: invalid character 'j' looking for beginning of value`},
		{`{"encodings": ["json"]} {}`, nil, `cfg.json: more than one JSON value`},
	} {
		s, err := DecodeSettings([]byte(tc.data))
		if got := errText(err); got != tc.wantErr {
			t.Errorf("DecodeSettings(%q) = %q, want %q", tc.data, got, tc.wantErr)
			continue
		}
		if err == nil && !slices.Equal(s.Encodings, tc.want) {
			t.Errorf("DecodeSettings(%q) = %q, want %q", tc.data, s.Encodings, tc.want)
		}
		if err == nil {
			if again, err := DecodeSettings(EncodeSettings(s)); err != nil || !slices.Equal(again.Encodings, s.Encodings) {
				t.Errorf("DecodeSettings(EncodeSettings(%q)) = %v, %v", s.Encodings, again, err)
			}
		}
	}
}

// TestRepoReadsFileReplacedByRename reads a file while another goroutine
// replaces it by renaming new versions over it, as editors save: every
// read gets one whole version, never an error. A file swapped for a link
// while it is read is still refused (TestRepoReadsNoLink).
func TestRepoReadsFileReplacedByRename(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "source")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src, "f.txt")
	versions := []string{"version one", "version two, longer"}
	if err := os.WriteFile(p, []byte(versions[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openRepo(t, root)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			tmp := filepath.Join(src, fmt.Sprintf(".f.txt.%d", i))
			if err := os.WriteFile(tmp, []byte(versions[i%2]), 0o644); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 2000 {
		data, err := fs.ReadFile(r.FS(), "source/f.txt")
		if err != nil || !slices.Contains(versions, string(data)) {
			t.Errorf("read %q, %v; want one whole version", data, err)
			break
		}
	}
	close(done)
	wg.Wait()
}

// TestRepoRefusesLinkSwappedIn replaces a file or a directory by a link
// after the Repo checked it and before it opens it: the Repo opens only
// what it checked, and refuses the link, whether it points inside the
// repository (where an os.Root would follow it) or outside.
func TestRepoRefusesLinkSwappedIn(t *testing.T) {
	for _, tc := range []struct {
		read, swap, target string
		wantLink           bool // a *LinkError naming swap, or else any error
	}{
		{read: "source/f.txt", swap: "source/f.txt", target: "other.txt", wantLink: true},
		{read: "source/a/f.txt", swap: "source/a", target: "b", wantLink: true},
		{read: "source/f.txt", swap: "source/f.txt", target: "OUTSIDE/secret"},
		{read: "source/a/f.txt", swap: "source/a", target: "OUTSIDE"},
	} {
		t.Run(tc.swap+"->"+tc.target, func(t *testing.T) {
			dir := t.TempDir()
			root, outside := filepath.Join(dir, "repo"), filepath.Join(dir, "outside")
			for name, data := range map[string]string{
				"outside/secret":        "TOPSECRET",
				"outside/f.txt":         "TOPSECRET",
				"repo/source/f.txt":     "checked",
				"repo/source/other.txt": "TOPSECRET",
				"repo/source/a/f.txt":   "checked",
				"repo/source/b/f.txt":   "TOPSECRET",
			} {
				p := filepath.Join(dir, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			target := tc.target
			if rest, ok := strings.CutPrefix(target, "OUTSIDE"); ok {
				target = outside + rest
			}
			r := openRepo(t, root)
			swapped := 0
			testHookChecked = func(p string) {
				if p != tc.swap || swapped > 0 {
					return
				}
				swapped++
				abs := filepath.Join(root, filepath.FromSlash(p))
				if err := os.Rename(abs, abs+".gone"); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(target, abs); err != nil {
					t.Error(err)
				}
			}
			t.Cleanup(func() { testHookChecked = nil })
			data, err := fs.ReadFile(r.FS(), tc.read)
			if swapped != 1 {
				t.Fatalf("%s was checked %d times before it was opened, want 1", tc.swap, swapped)
			}
			var le *LinkError
			switch {
			case err == nil:
				t.Errorf("ReadFile(%s) = %q, want an error", tc.read, data)
			case tc.wantLink && (!errors.As(err, &le) || le.Path != tc.swap || le.Target != target):
				t.Errorf("ReadFile(%s) = %v, want the link %s to %s", tc.read, err, tc.swap, target)
			case strings.Contains(err.Error(), "TOPSECRET"):
				t.Errorf("ReadFile(%s) = %v", tc.read, err)
			}
		})
	}
}

// fdsUnder counts the process's open file descriptors of root and the
// files under it, from /proc/self/fd; ok is false where there is none.
func fdsUnder(t *testing.T, root string) (n int, ok bool) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (target == root || strings.HasPrefix(target, root+"/")) {
			n++
		}
	}
	return n, true
}
