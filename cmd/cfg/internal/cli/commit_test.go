package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/validate"
)

// commitRepo makes a git repository (with go-git) holding a config
// repository whose configs export a T, and commits it with cfg commit.
func commitRepo(t *testing.T) string {
	t.Helper()
	t.Setenv("CFG_AUTHOR_NAME", "Ann")
	t.Setenv("CFG_AUTHOR_EMAIL", "ann@example.com")
	dir := t.TempDir()
	writeAtomic(t, dir, "source/schemas/t.thrift", "struct T {\n  1: required string who\n  2: required i32 v\n}\n")
	writeAtomic(t, dir, "source/schemas/t.thrift-cvalidator", "load(\"//schemas/t.thrift\", \"T\")\n\ndef check(t):\n    if t.v < 0:\n        fail(\"v must not be negative\")\n\nadd_validator(T, check)\n")
	writeAtomic(t, dir, "source/base.cconf", config("base", 0))
	if _, err := git.PlainInit(dir, false); err != nil {
		t.Fatal(err)
	}
	if code, _, errb := runCfg(dir, "commit", "-m", "initial"); code != ExitOK {
		t.Fatalf("initial commit: exit %d\n%s", code, errb)
	}
	return dir
}

// config is a config program exporting T(who = who, v = v).
func config(who string, v int) string {
	return fmt.Sprintf("load(\"//schemas/t.thrift\", \"T\")\n\nexport(T(who = %q, v = %d))\n", who, v)
}

// writeAtomic writes a file of the repository at dir the way an editor
// that saves atomically does: a temporary file renamed over it.
func writeAtomic(t *testing.T, dir, p, data string) {
	t.Helper()
	name := filepath.Join(dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Error(err)
		return
	}
	tmp := filepath.Join(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Error(err)
	}
}

// runCfg runs cfg in-process in dir.
func runCfg(dir string, args ...string) (code int, stdout, stderr string) {
	f, out, errb := testFactory(dir, false)
	code = Run(context.Background(), f, args)
	return code, out.String(), errb.String()
}

var (
	committedRE = regexp.MustCompile(`(?m)^committed ([0-9a-f]{40}): `)
	waitingRE   = regexp.MustCompile(`(?m)^waiting for another cfg commit( \(pid [0-9]+ on host .*, since [0-9:]+\))? to finish\n`)
)

// checkHistory checks the branch of the repository at dir: its root commit
// is root, it holds every commit in reported, and every commit on it
// passes cfg validate as committed.
func checkHistory(t *testing.T, dir string, root plumbing.Hash, reported []string) {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var history []string
	c, err := r.CommitObject(head.Hash())
	for err == nil {
		history = append(history, c.Hash.String())
		fsys, ferr := g.FS(c.Hash.String())
		if ferr != nil {
			t.Fatal(ferr)
		}
		rep, verr := validate.Run(context.Background(), fsys, nil, compiler.Options{Jobs: 2})
		if verr != nil {
			t.Fatal(verr)
		}
		if len(rep.Diags) > 0 {
			t.Errorf("commit %.12s %q does not pass cfg validate:\n%s", c.Hash, strings.TrimSpace(c.Message), rep.Diags.Error())
		}
		if c.NumParents() == 0 {
			break
		}
		c, err = c.Parent(0)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := history[len(history)-1]; got != root.String() {
		t.Errorf("the root commit changed: %s, want %s (%d commits on the branch)", got, root, len(history))
	}
	for _, h := range reported {
		if !slices.Contains(history, h) {
			t.Errorf("reported commit %s is not on the branch", h)
		}
	}
	for _, name := range []string{"index.lock", "refs/heads/master.lock"} {
		if _, err := os.Stat(filepath.Join(dir, ".git", name)); !os.IsNotExist(err) {
			t.Errorf(".git/%s left behind: %v", name, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, ".git", gitrepo.LockFile)); err != nil || len(data) != 0 {
		t.Errorf("the commit lock was not released: %q, %v", data, err)
	}
}

// TestCommitConcurrentInProcess runs two cfg commits at a time in one
// repository, in one process, 100 times each: every commit reported is on
// the branch, the branch keeps its root, and every commit on it is valid.
func TestCommitConcurrentInProcess(t *testing.T) {
	dir := commitRepo(t)
	root := headHash(t, dir)
	const committers, iterations = 2, 100
	var mu sync.Mutex
	var reported []string
	var wg sync.WaitGroup
	for w := range committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := fmt.Sprintf("c%d", w)
			for i := range iterations {
				writeAtomic(t, dir, "source/team/"+who+".cconf", config(who, i))
				code, out, errb := runCfg(dir, "commit", "-m", fmt.Sprintf("%s %d", who, i))
				errb = waitingRE.ReplaceAllString(errb, "")
				if code != ExitOK {
					t.Errorf("%s %d: exit %d\n%s", who, i, code, errb)
					return
				}
				if m := committedRE.FindStringSubmatch(out); m != nil {
					mu.Lock()
					reported = append(reported, m[1])
					mu.Unlock()
				} else if errb != "nothing to commit: source/ and materialized_configs/ match HEAD\n" {
					// The other committer's commit took this edit.
					t.Errorf("%s %d: stdout %q, stderr %q", who, i, out, errb)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d commits", len(reported))
	checkHistory(t, dir, root, reported)
}

func headHash(t *testing.T, dir string) plumbing.Hash {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	return head.Hash()
}

// TestCommitWhileSourceEdited commits while a source is rewritten in a
// loop between two valid versions with different outputs: whatever a
// commit holds, its source and its output agree.
func TestCommitWhileSourceEdited(t *testing.T) {
	dir := commitRepo(t)
	root := headHash(t, dir)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			writeAtomic(t, dir, "source/team/edited.cconf", config("edited", i%2+1))
		}
	}()
	var reported []string
	for i := range 40 {
		code, out, errb := runCfg(dir, "commit", "-m", fmt.Sprint(i))
		if code != ExitOK {
			t.Errorf("commit %d: exit %d\n%s", i, code, errb)
		}
		if m := committedRE.FindStringSubmatch(out); m != nil {
			reported = append(reported, m[1])
		}
	}
	close(stop)
	wg.Wait()
	if len(reported) < 10 {
		t.Errorf("only %d of 40 commits made", len(reported))
	}
	checkHistory(t, dir, root, reported)
}

// TestCommitKeepsEditsMadeMeanwhile edits a source after cfg commit
// validated it and before it commits: the commit holds the validated
// version, the working tree keeps the edit, and cfg commit says so.
func TestCommitKeepsEditsMadeMeanwhile(t *testing.T) {
	dir := commitRepo(t)
	root := headHash(t, dir)
	writeAtomic(t, dir, "source/team/x.cconf", config("x", 1))
	testHookBeforeCommit = func() { writeAtomic(t, dir, "source/team/x.cconf", config("x", 2)) }
	defer func() { testHookBeforeCommit = nil }()
	f, out, errb := testFactory(filepath.Join(dir, "source"), false)
	if code := Run(context.Background(), f, []string{"commit", "-m", "x"}); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	m := committedRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("stdout %q", out)
	}
	if want := "committed " + m[1] + ": x\n  M ../materialized_configs/.types.json\n  A ../materialized_configs/team/x.json\n  A team/x.cconf\n"; out.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	want := "the working tree changed while cfg commit ran: the commit holds what was validated, and these files differ from it (edits kept, not committed):\n  team/x.cconf\n"
	if errb.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errb, want)
	}
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := g.ReadFile("HEAD", "source/team/x.cconf"); err != nil || string(data) != config("x", 1) {
		t.Errorf("committed source: %q, %v", data, err)
	}
	if data, err := g.ReadFile("HEAD", "materialized_configs/team/x.json"); err != nil || !strings.Contains(string(data), `"v": 1`) {
		t.Errorf("committed output: %q, %v", data, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "source/team/x.cconf")); string(data) != config("x", 2) {
		t.Errorf("the edit was lost: %q", data)
	}
	changes, err := g.WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(changes); got != "[{source/team/x.cconf modified}]" {
		t.Errorf("working changes after the commit: %s", got)
	}
	checkHistory(t, dir, root, []string{m[1]})
}

// TestCommitKeepsOutputEditsMadeMeanwhile: the commit holds the outputs
// the compile made and the cfg.json it read, not a hand edit of a
// materialized file or of cfg.json made between validation and commit;
// the edits stay in the working tree, listed.
func TestCommitKeepsOutputEditsMadeMeanwhile(t *testing.T) {
	dir := commitRepo(t)
	const settings = `{"encodings": ["json"]}` + "\n"
	writeAtomic(t, dir, "cfg.json", settings)
	writeAtomic(t, dir, "source/team/x.cconf", config("x", 1))
	testHookBeforeCommit = func() {
		writeAtomic(t, dir, "materialized_configs/team/x.json", "{\"who\": \"x\", \"v\": 99}\n")
		writeAtomic(t, dir, "cfg.json", `{"encodings": ["json", "thrift-binary"]}`+"\n")
	}
	defer func() { testHookBeforeCommit = nil }()
	f, out, errb := testFactory(filepath.Join(dir, "source"), false)
	if code := Run(context.Background(), f, []string{"commit", "-m", "x"}); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	want := "the working tree changed while cfg commit ran: the commit holds what was validated, and these files differ from it (edits kept, not committed):\n  ../cfg.json\n  ../materialized_configs/team/x.json\n"
	if errb.String() != want {
		t.Errorf("stdout:\n%s\nstderr:\n%s\nwant:\n%s", out, errb, want)
	}
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := g.ReadFile("HEAD", "cfg.json"); err != nil || string(data) != settings {
		t.Errorf("committed cfg.json: %q, %v; want %q", data, err, settings)
	}
	if data, err := g.ReadFile("HEAD", "materialized_configs/team/x.json"); err != nil || !strings.Contains(string(data), `"v": 1`) {
		t.Errorf("committed output: %q, %v; want the compiled one", data, err)
	}
	if data, err := g.ReadFile("HEAD", "materialized_configs/team/x.thrift-binary"); err == nil {
		t.Errorf("committed an encoding the edited cfg.json asks for: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "materialized_configs/team/x.json")); !strings.Contains(string(data), `"v": 99`) {
		t.Errorf("the edit of the output was lost: %q", data)
	}
}

// With --format json, the files edited while cfg commit ran are listed
// as worktree_differs, beside the commit and its files; stderr says
// nothing.
func TestCommitJSONNamesEditsMadeMeanwhile(t *testing.T) {
	dir := commitRepo(t)
	writeAtomic(t, dir, "source/team/x.cconf", config("x", 1))
	writeAtomic(t, dir, "source/team/y.cconf", config("y", 1))
	testHookBeforeCommit = func() {
		writeAtomic(t, dir, "source/team/x.cconf", config("x", 2))
		writeAtomic(t, dir, "source/team/y.cconf", config("y", 2))
	}
	defer func() { testHookBeforeCommit = nil }()
	f, out, errb := testFactory(filepath.Join(dir, "source"), false)
	if code := Run(context.Background(), f, []string{"commit", "-m", "x", "--format", "json"}); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	var got struct {
		Commit *string `json:"commit"`
		Files  []struct {
			Path, Change string
		} `json:"files"`
		WorktreeDiffers []string `json:"worktree_differs"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if got.Commit == nil || *got.Commit != headHash(t, dir).String() || len(got.Files) != 5 || got.Files[3].Path != "team/x.cconf" || got.Files[3].Change != "added" {
		t.Errorf("commit %v, files %v; want HEAD and its 5 files", got.Commit, got.Files)
	}
	if want := []string{"team/x.cconf", "team/y.cconf"}; !slices.Equal(got.WorktreeDiffers, want) {
		t.Errorf("worktree_differs %q, want %q", got.WorktreeDiffers, want)
	}
	if errb.Len() != 0 {
		t.Errorf("stderr %q, want nothing", errb)
	}
}

// In a repository with the worktreeConfig extension (git sparse-checkout
// turns it on), which go-git does not open, the commands that need git
// exit 3 naming the extension, and compile and validate work without it.
func TestWorktreeConfigRepository(t *testing.T) {
	dir := commitRepo(t)
	writeAtomic(t, dir, "source/team/x.cconf", config("x", 1))
	f, err := os.OpenFile(filepath.Join(dir, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("[extensions]\n\tworktreeConfig = true\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, args := range [][]string{{"compile"}, {"validate"}} {
		if code, _, errb := runCfg(dir, args...); code != ExitOK {
			t.Errorf("cfg %s: exit %d\n%s", args[0], code, errb)
		}
	}
	for _, args := range [][]string{{"commit", "-m", "x"}, {"diff"}, {"log", "team/x"}, {"affected"}} {
		if code, _, errb := runCfg(dir, args...); code != ExitInfra || !strings.Contains(errb, "worktreeconfig") || !strings.Contains(errb, "git sparse-checkout turns on worktreeConfig") {
			t.Errorf("cfg %s: exit %d\n%s\nwant exit 3 naming the extension", args[0], code, errb)
		}
	}
}
