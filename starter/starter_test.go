package starter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// listTree returns every file under dir with its content, .git/ left out.
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestInitNewDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "configs")
	res, err := Init(context.Background(), dir, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.GitMade || res.GitTop != dir || res.Dir != dir {
		t.Errorf("Init = %+v, want a git repository made at %s", res, dir)
	}
	wantFiles := []string{
		".gitignore",
		"materialized_configs/.types.json",
		"materialized_configs/app/greeter.json",
		"materialized_configs/app/greeter_fr.json",
		"source/app/greeter.cconf",
		"source/app/greeter_fr.cconf",
		"source/lib/greeter.cinc",
		"source/schemas/greeter.thrift",
		"source/schemas/greeter.thrift-cvalidator",
	}
	if d := cmp.Diff(wantFiles, res.Files); d != "" {
		t.Errorf("files written (-want +got):\n%s", d)
	}
	var onDisk []string
	for p := range listTree(t, dir) {
		if !strings.HasPrefix(p, ".cfg/") {
			onDisk = append(onDisk, p)
		}
	}
	slices.Sort(onDisk)
	if d := cmp.Diff(wantFiles, onDisk); d != "" {
		t.Errorf("files on disk (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"app/greeter", "app/greeter_fr"}, res.Configs); d != "" {
		t.Errorf("configs (-want +got):\n%s", d)
	}

	// The two configs share the module, and compile to what the schema's
	// defaults and the module say.
	for name, want := range map[string]string{
		"app/greeter":    "{\n  \"greeting\": \"hello\",\n  \"rate_per_sec\": 5\n}\n",
		"app/greeter_fr": "{\n  \"greeting\": \"bonjour\",\n  \"rate_per_sec\": 2\n}\n",
	} {
		got, err := os.ReadFile(filepath.Join(dir, "materialized_configs", name+".json"))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}

	// Ready for cfg commit: the CI gate finds nothing, git ignores the
	// caches, and the branch is main, without commits.
	r, err := repo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := validate.Run(context.Background(), r.FS(), nil, compiler.Options{})
	if err != nil || len(rep.Diags) > 0 || rep.Checked != 2 {
		t.Fatalf("validate: %v, %v, %d checked", err, rep.Diags, rep.Checked)
	}
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := g.WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, c := range changes {
		changed = append(changed, c.Path)
	}
	if d := cmp.Diff(wantFiles, changed); d != "" {
		t.Errorf("untracked files (-want +got): .cfg/ must be ignored\n%s", d)
	}
	gr, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := gr.Storer.Reference("HEAD")
	if err != nil || head.Target().String() != "refs/heads/main" {
		t.Errorf("HEAD = %v, %v; want refs/heads/main", head, err)
	}
}

func TestInitInGitRepository(t *testing.T) {
	top := t.TempDir()
	if _, err := git.PlainInit(top, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, ".gitignore"), []byte("*.o"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A config repository in a directory of the git work tree: no second
	// git repository, and the directory gets an ignore file of its own.
	res, err := Init(context.Background(), filepath.Join(top, "configs"), compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.GitMade || res.GitTop != top {
		t.Errorf("Init = %+v, want the git repository at %s used", res, top)
	}
	if _, err := os.Stat(filepath.Join(top, "configs", ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a second git repository was made: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(top, ".gitignore")); string(got) != "*.o" {
		t.Errorf("the work tree's .gitignore changed: %q", got)
	}

	// At the top, an existing ignore file keeps its lines and gets one
	// more; one that already ignores the caches is left as it is.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, ".gitignore"), []byte("*.o"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(context.Background(), other, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(other, ".gitignore")); string(got) != "*.o\n/.cfg/\n" {
		t.Errorf(".gitignore = %q, want the line added", got)
	}
	third := t.TempDir()
	if err := os.WriteFile(filepath.Join(third, ".gitignore"), []byte(".cfg/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = Init(context.Background(), third, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(third, ".gitignore")); string(got) != ".cfg/\n" || slices.Contains(res.Files, ".gitignore") {
		t.Errorf(".gitignore = %q, files %v; want it untouched", got, res.Files)
	}
}

func TestInitRefusesRepository(t *testing.T) {
	for _, tt := range []struct {
		existing []string // made as directories, or files if they have an extension
		want     string
	}{
		{[]string{"source/feed/a.cconf"}, "source/"},
		{[]string{"materialized_configs"}, "materialized_configs/"},
		{[]string{"cfg.json"}, "cfg.json"},
		{[]string{".cfg", "source"}, "source/, .cfg/"},
	} {
		dir := t.TempDir()
		for _, p := range tt.existing {
			name := filepath.Join(dir, p)
			var err error
			if filepath.Ext(p) != "" {
				if err = os.MkdirAll(filepath.Dir(name), 0o755); err == nil {
					err = os.WriteFile(name, []byte("mine"), 0o644)
				}
			} else {
				err = os.MkdirAll(name, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		before := listTree(t, dir)
		_, err := Init(context.Background(), dir, compiler.Options{})
		var ee *ExistsError
		if !errors.As(err, &ee) {
			t.Fatalf("Init with %v: %v, want an *ExistsError", tt.existing, err)
		}
		want := dir + " already holds " + tt.want + ": cfg init makes a new config repository and writes over nothing; run it in a directory without these"
		if err.Error() != want {
			t.Errorf("Init with %v:\n got %s\nwant %s", tt.existing, err, want)
		}
		if d := cmp.Diff(before, listTree(t, dir)); d != "" {
			t.Errorf("Init with %v wrote files (-before +after):\n%s", tt.existing, d)
		}
		if _, err := os.Stat(filepath.Join(dir, ".git")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Init with %v made a git repository: %v", tt.existing, err)
		}
	}

	// A file where the directory should be.
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(context.Background(), file, compiler.Options{}); err == nil {
		t.Error("Init of a file succeeded")
	}
}

// TestInitRefusesLinkedIgnoreFile puts a symbolic link where Init adds its
// line to the ignore file, to a file outside the directory or to none yet:
// Init follows no link, so it refuses before anything is written, and the
// file outside is neither changed nor made.
func TestInitRefusesLinkedIgnoreFile(t *testing.T) {
	for _, target := range []string{"rc", "missing"} {
		t.Run(target, func(t *testing.T) {
			top := t.TempDir()
			dir, outside := filepath.Join(top, "configs"), filepath.Join(top, "outside")
			for _, d := range []string{dir, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "rc"), []byte("export SECRET=1"), 0o644); err != nil {
				t.Fatal(err)
			}
			link := "../outside/" + target
			if err := os.Symlink(link, filepath.Join(dir, IgnoreFile)); err != nil {
				t.Skipf("symbolic links: %v", err)
			}
			_, err := Init(context.Background(), dir, compiler.Options{})
			var le *repo.LinkError
			if !errors.As(err, &le) || le.Path != IgnoreFile || le.Target != link {
				t.Errorf("Init = %v, want the link %s to %s", err, IgnoreFile, link)
			}
			if data, err := os.ReadFile(filepath.Join(outside, "rc")); err != nil || string(data) != "export SECRET=1" {
				t.Errorf("outside/rc = %q, %v; want it unchanged", data, err)
			}
			if _, err := os.Lstat(filepath.Join(outside, "missing")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("outside/missing: %v, want none", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) != 1 {
				t.Errorf("Init wrote in %s: %v, %v; want only the link", dir, entries, err)
			}
		})
	}
}
