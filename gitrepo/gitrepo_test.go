package gitrepo

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

// testRepo is a git repository in a temporary directory whose config
// repository root is the subdirectory "cfg" (so that path mapping is
// exercised); files outside it play the part of the rest of a monorepo.
type testRepo struct {
	t    testing.TB
	top  string // the git work tree
	root string // the config repository root
	git  *git.Repository
	when time.Time // the time of the next commit made by commitAll
}

func newTestRepo(t testing.TB) *testRepo {
	t.Helper()
	// No author from the environment or the user's configuration unless a
	// test sets one.
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	for _, k := range []string{"CFG_AUTHOR_NAME", "CFG_AUTHOR_EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"} {
		t.Setenv(k, "")
	}
	top := t.TempDir()
	g, err := git.PlainInit(top, false)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(top, "cfg")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, top: top, root: root, git: g, when: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// write writes files given as path, content pairs, relative to the work
// tree; empty content deletes the file.
func (r *testRepo) write(pairs ...string) {
	r.t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		name := filepath.Join(r.top, filepath.FromSlash(pairs[i]))
		if pairs[i+1] == "" {
			if err := os.Remove(name); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(pairs[i+1]), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// commitAll commits the whole work tree with go-git, as a user would with
// git add -A && git commit.
func (r *testRepo) commitAll(msg string) plumbing.Hash {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: r.sig()})
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func (r *testRepo) sig() *object.Signature {
	r.when = r.when.Add(time.Minute)
	return &object.Signature{Name: "Tester", Email: "tester@example.com", When: r.when}
}

func (r *testRepo) open() *Repo {
	r.t.Helper()
	g, err := Open(r.root)
	if err != nil {
		r.t.Fatal(err)
	}
	return g
}

// headFiles returns the files of the HEAD commit (work tree paths) with
// their contents.
func (r *testRepo) headFiles() map[string]string {
	r.t.Helper()
	ref, err := r.git.Head()
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := r.git.CommitObject(ref.Hash())
	if err != nil {
		r.t.Fatal(err)
	}
	files, err := c.Files()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]string{}
	err = files.ForEach(func(f *object.File) error {
		s, err := f.Contents()
		out[f.Name] = s
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// status returns the git status of the work tree as "XY path" lines.
func (r *testRepo) status() map[string]string {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	st, err := wt.Status()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]string{}
	for p, s := range st {
		out[p] = string(s.Staging) + string(s.Worktree)
	}
	return out
}

// fsck runs git fsck when git is installed, to check that the objects
// written by go-git and by this package are well formed.
func (r *testRepo) fsck() {
	r.t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		return
	}
	cmd := exec.Command("git", "fsck", "--strict", "--no-dangling")
	cmd.Dir = r.top
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git fsck: %v\n%s", err, out)
	}
}

func TestOpen(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	if g.Prefix() != "cfg" {
		t.Errorf("Prefix() = %q, want %q", g.Prefix(), "cfg")
	}
	if got := g.GitPath("source/a.cconf"); got != "cfg/source/a.cconf" {
		t.Errorf("GitPath = %q", got)
	}
	if got, ok := g.RepoPath("cfg/source/a.cconf"); got != "source/a.cconf" || !ok {
		t.Errorf("RepoPath = %q, %v", got, ok)
	}
	if _, ok := g.RepoPath("cfgx/a"); ok {
		t.Errorf("RepoPath(cfgx/a) is inside the config repository")
	}

	// The config repository at the top of the work tree.
	g, err := Open(r.top)
	if err != nil {
		t.Fatal(err)
	}
	if g.Prefix() != "" || g.GitPath("source/a") != "source/a" {
		t.Errorf("at the top: Prefix() = %q, GitPath = %q", g.Prefix(), g.GitPath("source/a"))
	}

	_, err = Open(t.TempDir())
	if !errors.Is(err, ErrNotRepository) || !strings.Contains(err.Error(), "not in a git repository") {
		t.Errorf("Open(non-git dir) = %v, want ErrNotRepository", err)
	}
}

// TestOpenSparseCheckout: git sparse-checkout turns on the worktreeConfig
// extension, which go-git does not take: Open says so, naming the
// extension and what turned it on.
func TestOpenSparseCheckout(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/a", "1", "other/b", "1")
	r.commitAll("initial")
	r.gitOK("sparse-checkout", "set", "--cone", "cfg")
	_, err := Open(filepath.Join(r.top, "cfg"))
	if err == nil || !strings.Contains(err.Error(), "worktreeconfig") || !strings.Contains(err.Error(), "git sparse-checkout turns on worktreeConfig") {
		t.Errorf("Open of a sparse checkout = %v, want an error naming worktreeConfig and git sparse-checkout", err)
	}
}

func TestWorkingChanges(t *testing.T) {
	r := newTestRepo(t)
	r.write(
		".gitignore", "*.log\n",
		"outside.txt", "1",
		"cfg/source/a.cconf", "a1",
		"cfg/source/b.cconf", "b1",
		"cfg/source/c.cconf", "c1",
		"cfg/source/d.cconf", "d1",
	)
	g := r.open()

	// No commits yet: everything not ignored is added.
	r.write("cfg/x.log", "ignored")
	got, err := g.WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"source/a.cconf", Added}, {"source/b.cconf", Added}, {"source/c.cconf", Added}, {"source/d.cconf", Added},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WorkingChanges before the first commit (-want +got):\n%s", diff)
	}

	r.commitAll("initial")
	if got, err := g.WorkingChanges(); err != nil || len(got) != 0 {
		t.Fatalf("WorkingChanges of a clean tree = %v, %v", got, err)
	}

	wt, _ := r.git.Worktree()
	r.write(
		"outside.txt", "2", // outside the config repository
		"cfg/source/a.cconf", "a2", // modified
		"cfg/source/b.cconf", "", // deleted
		"cfg/source/new.cconf", "n", // untracked
		"cfg/source/staged.cconf", "s", // added to the index
		"cfg/source/c.cconf", "c2", // staged, then changed back
		"cfg/source/y.log", "ignored",
	)
	for _, p := range []string{"cfg/source/staged.cconf", "cfg/source/c.cconf"} {
		if _, err := wt.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	r.write("cfg/source/c.cconf", "c1")
	if err := os.Chmod(filepath.Join(r.root, "source/d.cconf"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err = g.WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	want = []Change{
		{"source/a.cconf", Modified},
		{"source/b.cconf", Deleted},
		{"source/d.cconf", Modified}, // now executable
		{"source/new.cconf", Added},
		{"source/staged.cconf", Added},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WorkingChanges (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"source/a.cconf", "source/b.cconf", "source/d.cconf", "source/new.cconf", "source/staged.cconf"}, Paths(got)); diff != "" {
		t.Errorf("Paths (-want +got):\n%s", diff)
	}
}

// TestWorkingChangesIgnores checks which ignore files count: .gitignore
// files (at the top and in a directory) and .git/info/exclude do, the global
// ones (core.excludesFile of the user's configuration, and git's default
// $XDG_CONFIG_HOME/git/ignore) do not.
func TestWorkingChangesIgnores(t *testing.T) {
	r := newTestRepo(t)
	home := os.Getenv("HOME")
	r.write(
		".gitignore", "*.top\n",
		"cfg/source/.gitignore", "*.dir\n",
		".git/info/exclude", "*.exclude\n",
		"cfg/source/keep.cconf", "k",
	)
	global := filepath.Join(home, "global-ignore")
	for name, data := range map[string]string{
		global:                                "*.global\n",
		filepath.Join(home, ".gitconfig"):     "[core]\n\texcludesFile = " + global + "\n",
		filepath.Join(home, "xdg/git/ignore"): "*.xdg\n",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "xdg"))
	r.commitAll("initial")
	r.write(
		"cfg/source/a.top", "1",
		"cfg/source/b.dir", "1",
		"cfg/source/c.exclude", "1",
		"cfg/source/d.global", "1",
		"cfg/source/e.xdg", "1",
	)
	got, err := r.open().WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"source/d.global", Added}, {"source/e.xdg", Added}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WorkingChanges (-want +got):\n%s", diff)
	}
}

func TestChangesSince(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/source/a.cconf", "a1", "cfg/source/b.cconf", "b1", "outside.txt", "1")
	first := r.commitAll("one")
	r.write("cfg/source/a.cconf", "a2", "cfg/source/b.cconf", "", "cfg/source/lib/c.cinc", "c", "outside.txt", "2")
	r.commitAll("two")
	r.write("cfg/source/a.cconf", "a3") // not committed: not in ChangesSince
	g := r.open()

	want := []Change{{"source/a.cconf", Modified}, {"source/b.cconf", Deleted}, {"source/lib/c.cinc", Added}}
	for _, rev := range []string{first.String(), first.String()[:8], "HEAD~1", "HEAD^", "master~1"} {
		got, err := g.ChangesSince(rev)
		if err != nil {
			t.Fatalf("ChangesSince(%s): %v", rev, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ChangesSince(%s) (-want +got):\n%s", rev, diff)
		}
	}
	if got, err := g.ChangesSince("HEAD"); err != nil || len(got) != 0 {
		t.Errorf("ChangesSince(HEAD) = %v, %v, want nothing", got, err)
	}
	// Since the first commit, uncommitted changes included: a.cconf is
	// changed again, and b.cconf, deleted since, is back as it was.
	r.write("cfg/source/b.cconf", "b1", "cfg/source/new.cconf", "n")
	got, err := g.WorkingChangesSince("HEAD~1")
	if err != nil {
		t.Fatal(err)
	}
	want = []Change{{"source/a.cconf", Modified}, {"source/lib/c.cinc", Added}, {"source/new.cconf", Added}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WorkingChangesSince(HEAD~1) (-want +got):\n%s", diff)
	}
	got, err = g.WorkingChangesSince("HEAD")
	if err != nil {
		t.Fatal(err)
	}
	want = []Change{{"source/a.cconf", Modified}, {"source/b.cconf", Added}, {"source/new.cconf", Added}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WorkingChangesSince(HEAD) (-want +got):\n%s", diff)
	}

	_, err = g.ChangesSince("nosuchbranch")
	if !errors.Is(err, ErrUnknownRevision) || err.Error() != `"nosuchbranch": unknown revision` {
		t.Errorf("ChangesSince(nosuchbranch) = %v, want unknown revision", err)
	}
}

func TestReadFileAndFS(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	if _, err := g.FS("HEAD"); !errors.Is(err, ErrNoCommits) {
		t.Errorf("FS(HEAD) without commits = %v, want ErrNoCommits", err)
	}
	r.write(
		"cfg/source/a.cconf", "a1",
		"cfg/materialized_configs/a.json", "{}\n",
		"cfg/materialized_configs/sub/b.txt", "b",
		"outside.txt", "x",
	)
	r.commitAll("one")
	r.write("cfg/source/a.cconf", "a2")
	r.commitAll("two")

	for _, tt := range []struct{ rev, want string }{{"HEAD", "a2"}, {"HEAD~1", "a1"}} {
		got, err := g.ReadFile(tt.rev, "source/a.cconf")
		if err != nil || string(got) != tt.want {
			t.Errorf("ReadFile(%s) = %q, %v, want %q", tt.rev, got, err, tt.want)
		}
	}
	if _, err := g.ReadFile("HEAD", "source/nope.cconf"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file = %v, want fs.ErrNotExist", err)
	}
	if _, err := g.ReadFile("HEAD", "../outside.txt"); err == nil {
		t.Errorf("ReadFile(../outside.txt) read outside the config repository")
	}

	fsys, err := g.FS("HEAD~1")
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "source/a.cconf", "materialized_configs/a.json", "materialized_configs/sub/b.txt"); err != nil {
		t.Fatal(err)
	}
	if data, err := fs.ReadFile(fsys, "source/a.cconf"); err != nil || string(data) != "a1" {
		t.Errorf("fs.ReadFile = %q, %v", data, err)
	}
	if _, err := fs.Stat(fsys, "outside.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FS shows files outside the config repository: %v", err)
	}
}

func TestCommit(t *testing.T) {
	r := newTestRepo(t)
	r.write(
		"cfg/source/a.cconf", "a1",
		"cfg/source/lib.cinc", "l1", // beside a directory "lib": tree order
		"cfg/source/lib/x.cinc", "x1",
		"cfg/materialized_configs/a.json", "{}\n",
		"cfg/notes.txt", "unrelated",
		"outside.txt", "unrelated",
	)
	g := r.open()
	if _, err := g.Commit([]string{"source/a.cconf"}, CommitOptions{Message: "x"}); !errors.Is(err, ErrNoAuthor) {
		t.Fatalf("Commit without an author = %v, want ErrNoAuthor", err)
	}

	// The first commit, in a repository without commits.
	author := &Signature{Name: "Ann", Email: "ann@example.com"}
	paths := []string{"source/a.cconf", "source/lib.cinc", "source/lib/x.cinc", "materialized_configs/a.json"}
	h1, err := g.Commit(paths, CommitOptions{Message: "first", Author: author})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cfg/source/a.cconf":              "a1",
		"cfg/source/lib.cinc":             "l1",
		"cfg/source/lib/x.cinc":           "x1",
		"cfg/materialized_configs/a.json": "{}\n",
	}
	if diff := cmp.Diff(want, r.headFiles()); diff != "" {
		t.Errorf("first commit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"cfg/notes.txt": "??", "outside.txt": "??"}, r.status()); diff != "" {
		t.Errorf("status after the first commit (-want +got):\n%s", diff)
	}
	c, err := r.git.CommitObject(plumbing.NewHash(h1))
	if err != nil {
		t.Fatal(err)
	}
	if c.Message != "first\n" || c.Author.Name != "Ann" || c.Author.Email != "ann@example.com" || c.NumParents() != 0 {
		t.Errorf("first commit: message %q, author %v, %d parents", c.Message, c.Author, c.NumParents())
	}
	r.fsck()

	// The second: a modification, a deletion, a file replaced by a
	// directory, while the user has an unrelated file staged and others
	// modified.
	wt, _ := r.git.Worktree()
	r.write(
		"cfg/source/a.cconf", "a2",
		"cfg/source/lib.cinc", "",
		"cfg/source/lib.cinc/y.cinc", "y",
		"cfg/materialized_configs/a.json", "",
		"cfg/notes.txt", "staged by the user",
		"outside.txt", "still unrelated",
	)
	if _, err := wt.Add("cfg/notes.txt"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CFG_AUTHOR_NAME", "Bob")
	t.Setenv("CFG_AUTHOR_EMAIL", "bob@example.com")
	h2, err := g.Commit([]string{"source/a.cconf", "source/lib.cinc", "source/lib.cinc/y.cinc", "materialized_configs/a.json"}, CommitOptions{Message: "second"})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		"cfg/source/a.cconf":         "a2",
		"cfg/source/lib.cinc/y.cinc": "y",
		"cfg/source/lib/x.cinc":      "x1",
	}
	if diff := cmp.Diff(want, r.headFiles()); diff != "" {
		t.Errorf("second commit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"cfg/notes.txt": "A ", "outside.txt": "??"}, r.status()); diff != "" {
		t.Errorf("status after the second commit (-want +got):\n%s", diff)
	}
	c, err = r.git.CommitObject(plumbing.NewHash(h2))
	if err != nil {
		t.Fatal(err)
	}
	if c.Author.Name != "Bob" || c.Committer.Name != "Bob" || len(c.ParentHashes) != 1 || c.ParentHashes[0].String() != h1 {
		t.Errorf("second commit: author %v, committer %v, parents %v", c.Author, c.Committer, c.ParentHashes)
	}
	r.fsck()

	// Paths that match HEAD make no commit.
	if _, err := g.Commit([]string{"source/a.cconf", "source/gone.cconf"}, CommitOptions{Message: "again"}); !errors.Is(err, ErrNothingToCommit) {
		t.Errorf("Commit of unchanged paths = %v, want ErrNothingToCommit", err)
	}
	if _, err := g.Commit([]string{"../outside.txt"}, CommitOptions{Message: "x"}); err == nil {
		t.Errorf("Commit(../outside.txt) committed a file outside the config repository")
	}
	if _, err := g.Commit([]string{"source/a.cconf"}, CommitOptions{Message: "  "}); err == nil || err.Error() != "empty commit message" {
		t.Errorf("Commit with an empty message = %v", err)
	}

	// Not during a merge: the commit would drop the merge's other parent.
	mergeHead := filepath.Join(r.top, ".git", "MERGE_HEAD")
	if err := os.WriteFile(mergeHead, []byte(h1+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.write("cfg/source/a.cconf", "a3")
	if _, err := g.Commit([]string{"source/a.cconf"}, CommitOptions{Message: "x"}); err == nil || !strings.Contains(err.Error(), "a merge is in progress") {
		t.Errorf("Commit during a merge = %v", err)
	}
	if err := os.Remove(mergeHead); err != nil {
		t.Fatal(err)
	}
	r.write("cfg/source/a.cconf", "a2")

	// Real git agrees that the committed files are clean.
	if _, err := exec.LookPath("git"); err == nil {
		cmd := exec.Command("git", "status", "--porcelain")
		cmd.Dir = r.top
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(out), "A  cfg/notes.txt\n?? outside.txt\n"; got != want {
			t.Errorf("git status --porcelain:\n%s\nwant:\n%s", got, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	if _, err := g.Identity(); !errors.Is(err, ErrNoAuthor) {
		t.Fatalf("Identity() = %v, want ErrNoAuthor", err)
	}
	cfg, err := r.git.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.User.Name, cfg.User.Email = "Config User", "config@example.com"
	if err := r.git.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  []string
		want string
	}{
		{nil, "Config User <config@example.com>"},
		{[]string{"GIT_AUTHOR_NAME", "Git Env"}, "Git Env <config@example.com>"},
		{[]string{"GIT_AUTHOR_NAME", "Git Env", "CFG_AUTHOR_NAME", "Cfg Env", "CFG_AUTHOR_EMAIL", "cfg@example.com"}, "Cfg Env <cfg@example.com>"},
	}
	for _, tt := range tests {
		for i := 0; i < len(tt.env); i += 2 {
			t.Setenv(tt.env[i], tt.env[i+1])
		}
		got, err := g.Identity()
		if err != nil || got.String() != tt.want {
			t.Errorf("Identity() with %v = %v, %v, want %s", tt.env, got, err, tt.want)
		}
	}
}

func TestParseSignature(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"Ann Lee <ann@example.com>", "Ann Lee <ann@example.com>", ""},
		{"  Ann   <ann@example.com>  ", "Ann <ann@example.com>", ""},
		{"ann@example.com", "", `author "ann@example.com": want "Name <email>"`},
		{"<ann@example.com>", "", `author "<ann@example.com>": want "Name <email>"`},
		{"Ann <a <b>>", "", `author "Ann <a <b>>": want "Name <email>"`},
	}
	for _, tt := range tests {
		got, err := ParseSignature(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseSignature(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseSignature(%q) = %v, %v, want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestLog(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	if got, err := g.Log([]string{"a.json"}, 0); err != nil || len(got) != 0 {
		t.Fatalf("Log without commits = %v, %v", got, err)
	}
	r.write("cfg/a.json", "a1", "cfg/b.json", "b1")
	c1 := r.commitAll("add a and b")

	// A side branch changes a; the main branch changes b; a merge joins them.
	wt, _ := r.git.Worktree()
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("side"), Create: true}); err != nil {
		t.Fatal(err)
	}
	r.write("cfg/a.json", "a2")
	s1 := r.commitAll("side: change a")
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.Master}); err != nil {
		t.Fatal(err)
	}
	r.write("cfg/b.json", "b2")
	c2 := r.commitAll("main: change b")
	r.write("cfg/a.json", "a2")
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	m, err := wt.Commit("merge side", &git.CommitOptions{Author: r.sig(), Parents: []plumbing.Hash{c2, s1}})
	if err != nil {
		t.Fatal(err)
	}
	r.write("cfg/unrelated.json", "u")
	r.commitAll("unrelated")
	r.write("cfg/a.json", "")
	c4 := r.commitAll("delete a")

	hashes := func(cs []Commit) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Hash)
		}
		return out
	}
	tests := []struct {
		paths []string
		limit int
		want  []plumbing.Hash
	}{
		{[]string{"a.json"}, 0, []plumbing.Hash{c4, s1, c1}},
		{[]string{"a.json"}, 2, []plumbing.Hash{c4, s1}},
		{[]string{"b.json"}, 0, []plumbing.Hash{c2, c1}},
		// The merge differs from each parent in one of the files.
		{[]string{"a.json", "b.json"}, 0, []plumbing.Hash{c4, m, c2, s1, c1}},
		{[]string{"nope.json"}, 0, nil},
	}
	for _, tt := range tests {
		got, err := g.Log(tt.paths, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, h := range tt.want {
			want = append(want, h.String())
		}
		if diff := cmp.Diff(want, hashes(got)); diff != "" {
			t.Errorf("Log(%v, %d) (-want +got):\n%s", tt.paths, tt.limit, diff)
		}
	}
	got, err := g.Log([]string{"b.json"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := Commit{Hash: c2.String(), Message: "main: change b", Author: Signature{Name: "Tester", Email: "tester@example.com"}}
	want.Author.When = got[0].Author.When
	want.Committer = want.Author
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("Log commit (-want +got):\n%s", diff)
	}
	r.fsck()
}
