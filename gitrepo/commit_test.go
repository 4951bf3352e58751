package gitrepo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

// needGit skips a test that needs the git command.
func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
}

// gitIn runs git in dir and returns its output; failing is an error.
func gitIn(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "user.name=Git User", "-c", "user.email=git@example.com", "-c", "core.editor=true", "-c", "advice.detachedHead=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_EDITOR=true",
		"GIT_AUTHOR_NAME=Git User", "GIT_AUTHOR_EMAIL=git@example.com", "GIT_COMMITTER_NAME=Git User", "GIT_COMMITTER_EMAIL=git@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// git runs git in the work tree and returns its output.
func (r *testRepo) gitOK(args ...string) string {
	r.t.Helper()
	out, err := gitIn(r.top, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// firstParents returns the first-parent history of HEAD, newest first.
func (r *testRepo) firstParents() []plumbing.Hash {
	r.t.Helper()
	g := r.open()
	c, err := g.head()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []plumbing.Hash
	for c != nil {
		out = append(out, c.Hash)
		if c.NumParents() == 0 {
			break
		}
		if c, err = c.Parent(0); err != nil {
			r.t.Fatal(err)
		}
	}
	return out
}

// commitFiles makes one commit of the given path, content pairs on what
// Head reads.
func commitFiles(g *Repo, msg string, pairs ...string) (*CommitResult, error) {
	head, err := g.Head()
	if err != nil {
		return nil, err
	}
	var files []File
	for i := 0; i < len(pairs); i += 2 {
		f := File{Path: pairs[i], Kind: Modified, Data: []byte(pairs[i+1])}
		if pairs[i+1] == "" {
			f = File{Path: pairs[i], Kind: Deleted}
		}
		files = append(files, f)
	}
	return g.CommitFiles(files, CommitOptions{Message: msg, Author: &Signature{Name: "Ann", Email: "ann@example.com"}, Parent: head})
}

func TestHead(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	if h, err := g.Head(); err != nil || h != (Head{Branch: "refs/heads/master"}) {
		t.Fatalf("Head() without commits = %+v, %v", h, err)
	}
	r.write("cfg/a", "1")
	c := r.commitAll("one")
	want := Head{Branch: "refs/heads/master", Commit: c.String()}
	if h, err := g.Head(); err != nil || h != want {
		t.Fatalf("Head() = %+v, %v, want %+v", h, err, want)
	}
	if got := want.String(); got != "master at "+c.String()[:12] {
		t.Errorf("String() = %q", got)
	}

	// A branch only in packed-refs.
	ref := filepath.Join(r.top, ".git", "refs", "heads", "master")
	if err := os.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.top, ".git", "packed-refs"), []byte("# pack-refs with: peeled fully-peeled sorted\n"+c.String()+" refs/heads/master\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := g.Head(); err != nil || h != want {
		t.Errorf("Head() from packed-refs = %+v, %v, want %+v", h, err, want)
	}

	// A ref file caught while another program rewrites it in place is an
	// error, never a branch without commits.
	for _, content := range []string{"", c.String()[:17]} {
		if err := os.WriteFile(ref, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if h, err := g.Head(); err == nil || !strings.Contains(err.Error(), "reading refs/heads/master: empty or partly written (is another program writing it?)") {
			t.Errorf("Head() with %q in the ref file = %+v, %v, want an error", content, h, err)
		}
		if _, err := commitFiles(g, "x", "source/a", "2"); err == nil {
			t.Errorf("CommitFiles with %q in the ref file committed", content)
		}
	}
	if err := os.WriteFile(ref, []byte(c.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Detached.
	if err := os.WriteFile(filepath.Join(r.top, ".git", "HEAD"), []byte(c.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := g.Head(); err != nil || h != (Head{Commit: c.String()}) || h.String() != "detached HEAD at "+c.String()[:12] {
		t.Errorf("Head() detached = %+v (%s), %v", h, h, err)
	}
}

func TestCommitFilesBranchMoved(t *testing.T) {
	r := newTestRepo(t)
	g := r.open()
	author := &Signature{Name: "Ann", Email: "ann@example.com"}
	unborn, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	files := []File{{Path: "source/a", Kind: Added, Data: []byte("mine")}}

	// The branch got its first commit after unborn was read.
	r.write("cfg/source/a", "theirs")
	first := r.commitAll("theirs")
	_, err = g.CommitFiles(files, CommitOptions{Message: "mine", Author: author, Parent: unborn})
	var moved *BranchMovedError
	if !errors.As(err, &moved) || !errors.Is(err, ErrBranchMoved) || err.Error() != "the branch moved: master at "+first.String()[:12]+" now, not without commits" {
		t.Fatalf("CommitFiles on an unborn branch that got a commit = %v", err)
	}

	// Another commit landed after the parent was read.
	parent, _ := g.Head()
	r.write("cfg/source/b", "theirs")
	second := r.commitAll("theirs again")
	indexBefore, _ := os.ReadFile(filepath.Join(r.top, ".git", "index"))
	_, err = g.CommitFiles(files, CommitOptions{Message: "mine", Author: author, Parent: parent})
	if !errors.Is(err, ErrBranchMoved) || err.Error() != fmt.Sprintf("the branch moved: master at %.12s now, not at %.12s", second, first) {
		t.Fatalf("CommitFiles on a branch that moved = %v", err)
	}
	if got := r.firstParents(); !slices.Equal(got, []plumbing.Hash{second, first}) {
		t.Errorf("history after refused commits: %v", got)
	}
	if indexAfter, _ := os.ReadFile(filepath.Join(r.top, ".git", "index")); !bytes.Equal(indexBefore, indexAfter) {
		t.Errorf("a refused commit changed the index")
	}

	// HEAD was switched to another branch.
	parent, _ = g.Head()
	r.gitOK("switch", "-q", "-c", "other")
	_, err = g.CommitFiles(files, CommitOptions{Message: "mine", Author: author, Parent: parent})
	if !errors.Is(err, ErrBranchMoved) || err.Error() != "the branch moved: HEAD is on other now, not on master" {
		t.Fatalf("CommitFiles after a switch of branch = %v", err)
	}
	for _, name := range []string{"index.lock", "refs/heads/master.lock", "refs/heads/other.lock"} {
		if _, err := os.Stat(filepath.Join(r.top, ".git", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
}

// TestCommitFilesConcurrent runs two committers, each with its own Repo,
// against one repository, 100 commits each: with the commit lock held from
// reading HEAD to committing (as cfg commit does), and with HEAD read
// outside it, where the branch moves under a committer and only the
// compare-and-swap keeps the history whole. Each commit holds a pair of
// files whose contents must agree.
func TestCommitFilesConcurrent(t *testing.T) {
	for _, locked := range []bool{true, false} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			r := newTestRepo(t)
			r.write("cfg/source/base", "base")
			root := r.commitAll("initial")
			const committers, iterations = 2, 100
			var mu sync.Mutex
			var reported []plumbing.Hash
			moved := 0
			errs := make(chan error, committers)
			for w := range committers {
				go func() {
					g := r.open()
					for i := range iterations {
						for {
							var lk *Lock
							if locked {
								var err error
								if lk, err = g.Lock(context.Background(), time.Minute, nil); err != nil {
									errs <- err
									return
								}
							}
							v := fmt.Sprintf("%d.%d", w, i)
							res, err := commitFiles(g, "commit "+v, fmt.Sprintf("source/w%d", w), v, fmt.Sprintf("materialized_configs/w%d", w), v)
							if lk != nil {
								lk.Unlock()
							}
							if errors.Is(err, ErrBranchMoved) && !locked {
								mu.Lock()
								moved++
								mu.Unlock()
								continue
							}
							if err != nil {
								errs <- fmt.Errorf("committer %d, commit %d: %w", w, i, err)
								return
							}
							mu.Lock()
							reported = append(reported, plumbing.NewHash(res.Hash))
							mu.Unlock()
							break
						}
					}
					errs <- nil
				}()
			}
			for range committers {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d commits; %d compare-and-swap failures retried", len(reported), moved)

			history := r.firstParents()
			if history[len(history)-1] != root {
				t.Fatalf("the root commit changed: %s, want %s", history[len(history)-1], root)
			}
			if len(history) != 1+committers*iterations {
				t.Errorf("%d commits on the branch, want %d", len(history), 1+committers*iterations)
			}
			on := map[plumbing.Hash]bool{}
			for _, h := range history {
				on[h] = true
			}
			for _, h := range reported {
				if !on[h] {
					t.Errorf("reported commit %s is not on the branch", h)
				}
			}
			for _, h := range history {
				c, err := r.git.CommitObject(h)
				if err != nil {
					t.Fatal(err)
				}
				if err := pairsAgree(c); err != nil {
					t.Errorf("commit %s: %v", h, err)
				}
			}
			r.fsck()
		})
	}
}

// pairsAgree checks that a commit holds source/base and that every
// source/wN matches materialized_configs/wN.
func pairsAgree(c *object.Commit) error {
	files := map[string]string{}
	iter, err := c.Files()
	if err != nil {
		return err
	}
	err = iter.ForEach(func(f *object.File) error {
		s, err := f.Contents()
		files[f.Name] = s
		return err
	})
	if err != nil {
		return err
	}
	if files["cfg/source/base"] != "base" {
		return fmt.Errorf("source/base is missing: %d files", len(files))
	}
	for name, s := range files {
		if rest, ok := strings.CutPrefix(name, "cfg/source/w"); ok && files["cfg/materialized_configs/w"+rest] != s {
			return fmt.Errorf("%s is %q, its output %q", name, s, files["cfg/materialized_configs/w"+rest])
		}
	}
	return nil
}

// TestCommitRefRewrittenInPlace commits while another program keeps
// rewriting the branch's ref file in place, as go-git's reference storage
// does (truncate, then write): a reader can find the file empty. A commit
// must never take that for a branch without commits and replace the
// history with a commit without parent.
func TestCommitRefRewrittenInPlace(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/source/base", "base")
	root := r.commitAll("initial")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := r.git.Storer
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Rewrite the ref with its own value; if it changed meanwhile,
			// go-git leaves it alone.
			if ref, err := s.Reference(plumbing.Master); err == nil {
				s.CheckAndSetReference(ref, ref)
			}
		}
	}()
	g := r.open()
	var reported []plumbing.Hash
	for i := range 100 {
		r.write("cfg/source/a", fmt.Sprint(i))
		h, err := g.Commit([]string{"source/a"}, CommitOptions{Message: fmt.Sprint(i), Author: &Signature{Name: "Ann", Email: "ann@example.com"}})
		if err != nil {
			continue // an error is allowed; a wrong commit is not
		}
		reported = append(reported, plumbing.NewHash(h))
	}
	close(stop)
	<-done
	history := r.firstParents()
	if history[len(history)-1] != root {
		t.Fatalf("the root commit changed: %s, want %s (history of %d commits)", history[len(history)-1], root, len(history))
	}
	for _, h := range reported {
		if !slices.Contains(history, h) {
			t.Errorf("reported commit %s is not on the branch", h)
		}
	}
	if len(reported) < 50 {
		t.Errorf("only %d of 100 commits made", len(reported))
	}
}

// TestCommitFilesWithCommandLineGit commits in a loop while command-line
// git commits in another: each respects the other's lock files and
// compare-and-swap, so every commit either of them reports is on the
// branch.
func TestCommitFilesWithCommandLineGit(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/base", "base", "notes.txt", "0")
	root := r.commitAll("initial")
	const iterations = 100
	gitDone := make(chan error, 1)
	var gitCommits []plumbing.Hash
	go func() {
		for i := 1; i <= iterations; i++ {
			for {
				if err := os.WriteFile(filepath.Join(r.top, "notes.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
					gitDone <- err
					return
				}
				_, err := gitIn(r.top, "commit", "-q", "-m", fmt.Sprintf("notes %d", i), "notes.txt")
				if err != nil && (strings.Contains(err.Error(), "index.lock") || strings.Contains(err.Error(), "cannot lock ref")) {
					// Refused: our index.lock was there, or the branch
					// moved under git's own compare-and-swap.
					t.Log(err)
					continue
				}
				if err != nil {
					gitDone <- err
					return
				}
				out, err := gitIn(r.top, "rev-parse", "HEAD")
				if err != nil {
					gitDone <- err
					return
				}
				gitCommits = append(gitCommits, plumbing.NewHash(strings.TrimSpace(out)))
				break
			}
		}
		gitDone <- nil
	}()
	g := r.open()
	var ours []plumbing.Hash
	moved, refused := 0, 0
	for i := 0; len(ours) < iterations; i++ {
		v := fmt.Sprint(i)
		r.write("cfg/source/w0", v, "cfg/materialized_configs/w0", v)
		res, err := commitFiles(g, "cfg "+v, "source/w0", v, "materialized_configs/w0", v)
		var gl *GitLockedError
		switch {
		case errors.Is(err, ErrBranchMoved):
			moved++
			continue
		case errors.As(err, &gl):
			refused++
			continue
		case err != nil:
			t.Fatal(err)
		}
		ours = append(ours, plumbing.NewHash(res.Hash))
	}
	if err := <-gitDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cfg commits (%d retried after the branch moved, %d after git's lock), %d git commits", len(ours), moved, refused, len(gitCommits))
	history := r.firstParents()
	if history[len(history)-1] != root {
		t.Fatalf("the root commit changed")
	}
	for _, h := range append(ours, gitCommits...) {
		if !slices.Contains(history, h) {
			t.Errorf("reported commit %s is not on the branch", h)
		}
	}
	if len(history) != 1+2*iterations {
		t.Errorf("%d commits on the branch, want %d", len(history), 1+2*iterations)
	}
	for _, h := range history {
		c, err := r.git.CommitObject(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := pairsAgree(c); err != nil {
			t.Errorf("commit %s: %v", h, err)
		}
	}
	// Git agrees that the index matches the last commit of both.
	if st := r.gitOK("status", "--porcelain", "--untracked-files=no"); st != "" {
		t.Errorf("git status after the commits:\n%s", st)
	}
	r.fsck()
}

// TestCommitFilesWorkTree checks what a commit of given bytes leaves in the
// index, the work tree and the reflog, as git sees them.
func TestCommitFilesWorkTree(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/a", "a1", "cfg/source/b", "b1", "cfg/source/gone", "g")
	first := r.commitAll("initial")
	g := r.open()
	head, _ := g.Head()
	// The user edits a after it was read, and b to what is committed.
	r.write("cfg/source/a", "edited meanwhile", "cfg/source/b", "b2", "cfg/source/gone", "")
	res, err := g.CommitFiles([]File{
		{Path: "source/a", Data: []byte("a2")},
		{Path: "source/b", Data: []byte("b2")},
		{Path: "source/new", Data: []byte("n"), Executable: true},
		{Path: "source/link", Data: []byte("b"), Symlink: true},
		{Path: "source/gone", Kind: Deleted},
		{Path: "source/never", Kind: Deleted},
	}, CommitOptions{Message: "second\n\nbody", Author: &Signature{Name: "Ann", Email: "ann@example.com"}, Parent: head})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"source/a", Modified}, {"source/b", Modified}, {"source/gone", Deleted}, {"source/link", Added}, {"source/new", Added}}
	if diff := cmp.Diff(want, res.Changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"cfg/source/a": "a2", "cfg/source/b": "b2", "cfg/source/new": "n", "cfg/source/link": "b"}, r.headFiles()); diff != "" {
		t.Errorf("committed files (-want +got):\n%s", diff)
	}
	if data, _ := os.ReadFile(filepath.Join(r.root, "source/a")); string(data) != "edited meanwhile" {
		t.Errorf("the work tree's edit was overwritten: %q", data)
	}
	// The edit shows as not staged; the new file was never in the work
	// tree, so git sees it deleted there.
	if got, want := r.gitOK("status", "--porcelain"), " M cfg/source/a\n D cfg/source/link\n D cfg/source/new\n"; got != want {
		t.Errorf("git status:\n%s\nwant:\n%s", got, want)
	}
	if got := r.gitOK("ls-files", "-s", "cfg/source/new"); !strings.HasPrefix(got, "100755 ") {
		t.Errorf("source/new in the index: %q, want mode 100755", got)
	}
	if got := r.gitOK("ls-tree", "HEAD", "cfg/source/link"); !strings.HasPrefix(got, "120000 blob ") {
		t.Errorf("source/link in the commit: %q, want a symbolic link", got)
	}
	// The reflogs record the commit as git's own would (go-git, which made
	// the first commit, writes none).
	for _, ref := range []string{"master", "HEAD"} {
		if got, want := r.gitOK("reflog", "show", "--format=%H %gs", ref), res.Hash+" commit: second\n"; got != want {
			t.Errorf("git reflog %s:\n%s\nwant:\n%s", ref, got, want)
		}
	}
	if c, _ := r.git.CommitObject(plumbing.NewHash(res.Hash)); c.ParentHashes[0] != first {
		t.Errorf("parent %v, want %s", c.ParentHashes, first)
	}
	r.fsck()
}

// TestLock attacks the commit lock: a holder in another process keeps
// others out until it ends, however it ends; one killed while it held the
// lock and a lock file of git's is detected, reported, and cleaned up
// after.
func TestLock(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/source/a", "1")
	r.commitAll("initial")
	g := r.open()

	// In one process, a second Lock waits for the first.
	l1, err := g.Lock(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l1.Stale() != nil {
		t.Errorf("a fresh repository's lock is stale: %+v", l1.Stale())
	}
	g2 := r.open()
	var le *LockedError
	if _, err := g2.Lock(context.Background(), 0, nil); !errors.As(err, &le) || le.Holder.PID != os.Getpid() {
		t.Fatalf("Lock while held in this process = %v", err)
	}
	acquired := make(chan error)
	go func() {
		l, err := g2.Lock(context.Background(), time.Minute, nil)
		if err == nil {
			err = l.Unlock()
		}
		acquired <- err
	}()
	l1.Unlock()
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}

	// Another process holds the lock and has created index.lock.
	helper := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	helper.Env = append(os.Environ(), "GITREPO_LOCK_HELPER="+r.root)
	stdout, _ := helper.StdoutPipe()
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	var waitedFor Holder
	_, err = g.Lock(context.Background(), 50*time.Millisecond, func(h Holder) { waitedFor = h })
	if !errors.As(err, &le) || le.Holder.PID != helper.Process.Pid || waitedFor.PID != helper.Process.Pid {
		t.Fatalf("Lock while another process holds it = %v (waited for %+v)", err, waitedFor)
	}
	if want := fmt.Sprintf("another cfg commit (pid %d on host ", helper.Process.Pid); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	indexLock := filepath.Join(r.top, ".git", "index.lock")
	if _, err := os.Stat(indexLock); err != nil {
		t.Fatalf("helper's index.lock: %v", err)
	}
	// Git refuses to work while index.lock is there; so does CommitFiles.
	if _, err := gitIn(r.top, "commit", "-q", "--allow-empty", "-m", "x"); err == nil || !strings.Contains(err.Error(), "index.lock': File exists") {
		t.Errorf("git commit with the helper's index.lock: %v", err)
	}

	// The helper dies without releasing anything.
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	l, err := g.Lock(context.Background(), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := l.Stale()
	if s == nil || s.Holder.PID != helper.Process.Pid || !slices.Equal(s.Removed, []string{indexLock}) || len(s.Left) != 0 {
		t.Fatalf("Stale() = %+v, want the helper, with its index.lock removed", s)
	}
	if _, err := os.Stat(indexLock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index.lock still there: %v", err)
	}
	if _, err := commitFiles(g, "after", "source/a", "2"); err != nil {
		t.Errorf("commit after recovering the lock: %v", err)
	}
	l.Unlock()

	// Released properly: the next holder finds nothing stale.
	l, err = g.Lock(context.Background(), 0, nil)
	if err != nil || l.Stale() != nil {
		t.Fatalf("Lock after a release = %+v, %v", l, err)
	}
	l.Unlock()
	if _, err := gitIn(r.top, "commit", "-q", "--allow-empty", "-m", "git again"); err != nil {
		t.Error(err)
	}
}

// TestLockHelper is the process TestLock kills: it takes the commit lock
// and index.lock, says so, and waits to be killed.
func TestLockHelper(t *testing.T) {
	root := os.Getenv("GITREPO_LOCK_HELPER")
	if root == "" {
		t.Skip("the process TestLock starts")
	}
	g, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	l, err := g.Lock(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("GITREPO_LOCK_HELPER_LOOP") != "" {
		fmt.Println("looping")
		for {
			gl, err := l.lockGitFile(filepath.Join(g.gitDir, "index"))
			if err != nil {
				t.Fatal(err)
			}
			gl.rollback()
		}
	}
	if step := os.Getenv("GITREPO_LOCK_HELPER_STEP"); step != "" {
		testHookGitLock = func(s string) {
			if s == step {
				fmt.Println("at " + s)
				select {}
			}
		}
	}
	if _, err := l.lockGitFile(filepath.Join(g.gitDir, "index")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	select {}
}

// TestLockKilledCreatingGitLock kills a holder of the commit lock at each
// step of creating index.lock: the next holder leaves no lock file of
// git's behind, whatever the step, and git and CommitFiles work again.
func TestLockKilledCreatingGitLock(t *testing.T) {
	needGit(t)
	for _, step := range []string{"created", "recorded", "linked"} {
		t.Run(step, func(t *testing.T) {
			r := newTestRepo(t)
			r.write("cfg/source/a", "1")
			r.commitAll("initial")
			before := gitDirFiles(t, r.top)
			pid := killAt(t, "TestLockHelper", step, "GITREPO_LOCK_HELPER="+r.root, "GITREPO_LOCK_HELPER_STEP="+step)

			g := r.open()
			l, err := g.Lock(context.Background(), time.Minute, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s := l.Stale(); s == nil || s.Holder.PID != pid || len(s.Left) != 0 {
				t.Errorf("Stale() = %+v, want the helper, nothing left", s)
			}
			if _, err := commitFiles(g, "after", "source/a", "2"); err != nil {
				t.Errorf("commit after recovering the lock: %v", err)
			}
			l.Unlock()
			if after := gitDirFiles(t, r.top); !slices.Equal(before, after) {
				t.Errorf("files in .git/ (besides objects, logs and refs) before %q, after %q", before, after)
			}
			if _, err := gitIn(r.top, "commit", "-q", "--allow-empty", "-m", "git again"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLockKilledAnywhere kills, 40 times at random moments, a holder of
// the commit lock that creates and removes index.lock in a loop: each time
// the next holder finds the lock described (never a released-looking
// empty file), recovers it, and leaves nothing of git's or its own behind.
func TestLockKilledAnywhere(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/source/a", "1")
	r.commitAll("initial")
	before := gitDirFiles(t, r.top)
	g := r.open()
	for i := range 40 {
		helper := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
		helper.Env = append(os.Environ(), "GITREPO_LOCK_HELPER="+r.root, "GITREPO_LOCK_HELPER_LOOP=1")
		stdout, _ := helper.StdoutPipe()
		helper.Stderr = os.Stderr
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "looping\n" {
			helper.Process.Kill()
			t.Fatalf("helper: %q, %v", line, err)
		}
		time.Sleep(time.Duration(rand.N(20000)) * time.Microsecond) // a random moment, not a wait for a condition
		helper.Process.Signal(syscall.SIGKILL)
		helper.Wait()
		l, err := g.Lock(context.Background(), time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := l.Stale(); s == nil || s.Holder.PID != helper.Process.Pid || len(s.Left) != 0 {
			t.Errorf("kill %d: Stale() = %+v, want the helper, nothing left", i, s)
		}
		l.Unlock()
		if after := gitDirFiles(t, r.top); !slices.Equal(before, after) {
			t.Fatalf("kill %d: files in .git/ before %q, after %q", i, before, after)
		}
	}
}

// TestLockRecoveryKeepsOthersLockFiles kills a holder of the commit lock
// after it recorded the lock file it was about to create, and before it
// created it; then a git command creates that lock file. The next holder
// recovers the commit lock without removing git's lock file (it is not the
// one the killed holder recorded), and a commit fails naming it, committing
// nothing.
func TestLockRecoveryKeepsOthersLockFiles(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/a", "1")
	root := r.commitAll("initial")
	before := gitDirFiles(t, r.top)
	pid := killAt(t, "TestLockHelper", "recorded", "GITREPO_LOCK_HELPER="+r.root, "GITREPO_LOCK_HELPER_STEP=recorded")

	// A git command takes index.lock, as git does.
	indexLock := filepath.Join(r.top, ".git", "index.lock")
	f, err := os.OpenFile(indexLock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("git's\n")
	f.Close()

	g := r.open()
	l, err := g.Lock(context.Background(), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := l.Stale(); s == nil || s.Holder.PID != pid || len(s.Removed) != 0 || len(s.Left) != 0 {
		t.Errorf("Stale() = %+v, want the helper, nothing removed or left", s)
	}
	if data, err := os.ReadFile(indexLock); err != nil || string(data) != "git's\n" {
		t.Fatalf("git's index.lock after the recovery: %q, %v", data, err)
	}
	_, err = commitFiles(g, "x", "source/a", "2")
	var gl *GitLockedError
	if !errors.As(err, &gl) || gl.Path != indexLock {
		t.Errorf("CommitFiles with git's index.lock = %v, want a GitLockedError naming %s", err, indexLock)
	}
	l.Unlock()
	if got := r.firstParents(); !slices.Equal(got, []plumbing.Hash{root}) {
		t.Errorf("history %v, want only %s", got, root)
	}
	if data, err := os.ReadFile(indexLock); err != nil || string(data) != "git's\n" {
		t.Errorf("git's index.lock after the commit: %q, %v", data, err)
	}

	// Once git is done, nothing else is left and commits work.
	if err := os.Remove(indexLock); err != nil {
		t.Fatal(err)
	}
	if after := gitDirFiles(t, r.top); !slices.Equal(before, after) {
		t.Errorf("files in .git/ before %q, after %q", before, after)
	}
	if _, err := commitFiles(g, "x", "source/a", "2"); err != nil {
		t.Error(err)
	}
}

// TestCommitHelper is the process TestCommitKilledAtEachStep kills: it
// commits source/a and materialized_configs/a as "2", and stops at the step
// of CommitFiles it is given, says so, and waits to be killed.
func TestCommitHelper(t *testing.T) {
	root := os.Getenv("GITREPO_COMMIT_HELPER")
	if root == "" {
		t.Skip("the process TestCommitKilledAtEachStep starts")
	}
	step := os.Getenv("GITREPO_COMMIT_HELPER_STEP")
	testHookCommit = func(s string) {
		if s == step {
			fmt.Println("at " + s)
			select {}
		}
	}
	g, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	res, err := commitFiles(g, "killed", "source/a", "2", "materialized_configs/a", "2")
	fmt.Printf("not stopped at %s: %+v, %v\n", step, res, err)
}

// TestCommitKilledAtEachStep kills a committing process (SIGKILL) at each
// step of CommitFiles after it created git's lock files: with both lock
// files held, after the index was written, and after the reflogs were
// written. Each time the branch has not moved, the index holds either what
// it held or the committed files staged, and the next commit recovers the
// lock files the killed process left, commits the files, and leaves the
// repository as git expects it.
func TestCommitKilledAtEachStep(t *testing.T) {
	needGit(t)
	for _, step := range []string{"locked", "index written", "reflog written"} {
		t.Run(step, func(t *testing.T) {
			r := newTestRepo(t)
			r.write("cfg/source/a", "1", "cfg/materialized_configs/a", "1")
			root := r.commitAll("initial")
			// The work tree holds what is being committed.
			r.write("cfg/source/a", "2", "cfg/materialized_configs/a", "2")
			before := gitDirFiles(t, r.top)
			indexFile := filepath.Join(r.top, ".git", "index")
			indexBefore, err := os.ReadFile(indexFile)
			if err != nil {
				t.Fatal(err)
			}

			pid := killAt(t, "TestCommitHelper", step, "GITREPO_COMMIT_HELPER="+r.root, "GITREPO_COMMIT_HELPER_STEP="+step)

			// The branch has not moved, whatever the step.
			if got := strings.TrimSpace(r.gitOK("rev-parse", "master")); got != root.String() {
				t.Fatalf("master at %s after the kill, want %s", got, root)
			}
			refLock := filepath.Join(r.top, ".git", "refs", "heads", "master.lock")
			indexLock := indexFile + ".lock"
			wantRemoved := []string{refLock}
			if step == "locked" {
				// Nothing written: the index is as it was.
				if after, _ := os.ReadFile(indexFile); !bytes.Equal(after, indexBefore) {
					t.Errorf("the index changed")
				}
				if got, want := r.gitOK("status", "--porcelain", "--untracked-files=no"), " M cfg/materialized_configs/a\n M cfg/source/a\n"; got != want {
					t.Errorf("git status after the kill:\n%s\nwant:\n%s", got, want)
				}
				wantRemoved = []string{indexLock, refLock}
			} else {
				// The index holds the committed files, staged on the old
				// commit.
				if got, want := r.gitOK("status", "--porcelain", "--untracked-files=no"), "M  cfg/materialized_configs/a\nM  cfg/source/a\n"; got != want {
					t.Errorf("git status after the kill:\n%s\nwant:\n%s", got, want)
				}
			}
			for _, p := range wantRemoved {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("the killed process's lock file: %v", err)
				}
			}

			// The next commit recovers the lock files and commits.
			g := r.open()
			l, err := g.Lock(context.Background(), time.Minute, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s := l.Stale(); s == nil || s.Holder.PID != pid || !slices.Equal(s.Removed, wantRemoved) || len(s.Left) != 0 {
				t.Errorf("Stale() = %+v, want the helper, with %q removed", s, wantRemoved)
			}
			h, err := g.Commit([]string{"source/a", "materialized_configs/a"}, CommitOptions{Message: "again", Author: &Signature{Name: "Ann", Email: "ann@example.com"}})
			l.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := r.firstParents(), []plumbing.Hash{plumbing.NewHash(h), root}; !slices.Equal(got, want) {
				t.Errorf("history %v, want %v", got, want)
			}
			if diff := cmp.Diff(map[string]string{"cfg/source/a": "2", "cfg/materialized_configs/a": "2"}, r.headFiles()); diff != "" {
				t.Errorf("committed files (-want +got):\n%s", diff)
			}
			if st := r.gitOK("status", "--porcelain", "--untracked-files=no"); st != "" {
				t.Errorf("git status after the next commit:\n%s", st)
			}
			if after := gitDirFiles(t, r.top); !slices.Equal(before, after) {
				t.Errorf("files in .git/ before %q, after %q", before, after)
			}
			if _, err := gitIn(r.top, "commit", "-q", "--allow-empty", "-m", "git again"); err != nil {
				t.Error(err)
			}
			r.fsck()
		})
	}
}

// gitDirFiles lists the files at the top of the git directory of the work
// tree top, but the commit lock.
func gitDirFiles(t *testing.T, top string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(top, ".git"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && e.Name() != LockFile {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestCheckState builds, with command-line git, each state in which a
// commit would be wrong, and checks that CommitFiles refuses it, commits
// nothing, and says what to do.
func TestCheckState(t *testing.T) {
	needGit(t)
	tests := []struct {
		name  string
		setup func(r *testRepo)
		state string
		want  string
	}{{
		name: "cherry-pick conflict",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "cherry-pick", "other")
		},
		state: "cherry-pick",
		want:  "a cherry-pick is in progress (CHERRY_PICK_HEAD in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git cherry-pick --continue, or abort it with git cherry-pick --abort",
	}, {
		name: "cherry-pick of several commits, first one concluded",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.write("cfg/source/b", "b")
			r.gitOK("add", ".")
			r.gitOK("commit", "-q", "-m", "b")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "cherry-pick", "other~1", "other")
			r.write("cfg/source/a", "resolved")
			r.gitOK("add", ".")
			r.gitOK("commit", "-q", "--no-edit")
		},
		state: "sequencer",
		want:  "a cherry-pick or revert of several commits is in progress (sequencer in the git directory): conclude it with git cherry-pick --continue (or git revert --continue), or abort it with --abort",
	}, {
		name: "revert conflict",
		setup: func(r *testRepo) {
			r.write("cfg/source/a", "2")
			r.gitOK("commit", "-q", "-am", "two")
			r.write("cfg/source/a", "3")
			r.gitOK("commit", "-q", "-am", "three")
			gitIn(r.top, "revert", "--no-edit", "HEAD~1")
		},
		state: "revert",
		want:  "a revert is in progress (REVERT_HEAD in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git revert --continue, or abort it with git revert --abort",
	}, {
		name: "merge conflict",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "merge", "other")
		},
		state: "merge",
		want:  "a merge is in progress (MERGE_HEAD in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git commit, or abort it with git merge --abort",
	}, {
		name: "rebase",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "rebase", "other")
		},
		state: "rebase",
		want:  "a rebase is in progress (rebase-merge in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git rebase --continue, or abort it with git rebase --abort",
	}, {
		name: "rebase --apply",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "rebase", "--apply", "other")
		},
		state: "rebase",
		want:  "a rebase is in progress (rebase-apply in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git rebase --continue, or abort it with git rebase --abort",
	}, {
		name: "am",
		setup: func(r *testRepo) {
			r.gitOK("switch", "-q", "-c", "other")
			r.write("cfg/source/a", "theirs")
			r.gitOK("commit", "-q", "-am", "theirs")
			r.gitOK("format-patch", "-q", "-1", "-o", "../patches")
			r.gitOK("switch", "-q", "master")
			r.write("cfg/source/a", "ours")
			r.gitOK("commit", "-q", "-am", "ours")
			gitIn(r.top, "am", "-3", "../patches/0001-theirs.patch")
		},
		state: "am",
		want:  "git am is in progress (rebase-apply/applying in the git directory), with unresolved conflicts in cfg/source/a: conclude it with git am --continue, or abort it with git am --abort",
	}, {
		name:  "bisect",
		setup: func(r *testRepo) { r.gitOK("bisect", "start") },
		state: "bisect",
		want:  "a bisect is in progress (BISECT_START in the git directory): end it with git bisect reset",
	}, {
		name: "stash pop conflict",
		setup: func(r *testRepo) {
			r.write("cfg/source/a", "stashed")
			r.gitOK("stash", "-q")
			r.write("cfg/source/a", "committed")
			r.gitOK("commit", "-q", "-am", "committed")
			gitIn(r.top, "stash", "pop")
		},
		state: "unmerged",
		want:  "files with unresolved conflicts: cfg/source/a: resolve each conflict and mark the file resolved with git add",
	}, {
		name:  "detached HEAD",
		setup: func(r *testRepo) { r.gitOK("switch", "-q", "--detach") },
		state: "detached",
		want:  "HEAD is detached at %s: a commit would be on no branch (switch to a branch with git switch NAME)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRepo(t)
			r.gitOK("config", "user.name", "Git User")
			r.gitOK("config", "user.email", "git@example.com")
			r.write("cfg/source/a", "1")
			r.gitOK("add", ".")
			r.gitOK("commit", "-q", "-m", "initial")
			tt.setup(r)
			g := r.open()
			head, err := g.Head()
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if tt.state == "detached" {
				want = fmt.Sprintf(want, head.Commit[:12])
			}
			err = g.CheckState(false)
			var se *StateError
			if !errors.As(err, &se) || se.State != tt.state || err.Error() != want {
				t.Fatalf("CheckState() = %v\nwant %s: %s", err, tt.state, want)
			}
			indexBefore, _ := os.ReadFile(filepath.Join(r.top, ".git", "index"))
			_, err = g.CommitFiles([]File{{Path: "source/x", Data: []byte("x")}}, CommitOptions{Message: "x", Author: &Signature{Name: "A", Email: "a@example.com"}, Parent: head})
			if err == nil || err.Error() != want {
				t.Errorf("CommitFiles = %v, want %s", err, want)
			}
			if after, _ := g.Head(); after != head {
				t.Errorf("HEAD moved: %s, was %s", after, head)
			}
			if indexAfter, _ := os.ReadFile(filepath.Join(r.top, ".git", "index")); !bytes.Equal(indexBefore, indexAfter) {
				t.Errorf("the index changed")
			}
			if tt.state == "detached" {
				res, err := g.CommitFiles([]File{{Path: "source/x", Data: []byte("x")}}, CommitOptions{Message: "x", Author: &Signature{Name: "A", Email: "a@example.com"}, Parent: head, AllowDetached: true})
				if err != nil {
					t.Fatal(err)
				}
				if after, _ := g.Head(); after != (Head{Commit: res.Hash}) {
					t.Errorf("HEAD after a detached commit: %s", after)
				}
				if got := r.gitOK("rev-parse", "master"); strings.TrimSpace(got) != head.Commit {
					t.Errorf("master moved to %s", got)
				}
			}
		})
	}
}

// TestCommitFilesRacyEntries rewrites an index holding a racily clean
// entry: a file changed after git recorded it, within the same second as
// the index was written, with the same size. Git (which compares times in
// whole seconds unless built otherwise) tells it from an unchanged file
// only because the entry is as new as the index file; the index
// CommitFiles writes is newer, and must not make the change vanish from
// git status.
func TestCommitFilesRacyEntries(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/a", "a", "notes.txt", "13")
	r.commitAll("initial")
	second := time.Now().Add(-time.Hour).Truncate(time.Second)
	notes := filepath.Join(r.top, "notes.txt")
	os.Chtimes(notes, second.Add(300*time.Millisecond), second.Add(300*time.Millisecond))
	r.gitOK("add", "notes.txt")
	os.Chtimes(filepath.Join(r.top, ".git", "index"), second.Add(900*time.Millisecond), second.Add(900*time.Millisecond))
	os.WriteFile(notes, []byte("14"), 0o644)
	os.Chtimes(notes, second.Add(500*time.Millisecond), second.Add(500*time.Millisecond))
	// (git diff reads the index without refreshing it, as git status would.)
	if got := r.gitOK("diff", "--name-only"); got != "notes.txt\n" {
		t.Fatalf("git diff before the commit: %q", got)
	}
	if _, err := commitFiles(r.open(), "x", "source/a", "b"); err != nil {
		t.Fatal(err)
	}
	r.write("cfg/source/a", "b")
	if got := r.gitOK("diff", "--name-only"); got != "notes.txt\n" {
		t.Errorf("git diff after the commit: %q, want notes.txt modified", got)
	}
}

// TestCommitFilesUnreadableIndex commits in a repository whose index git
// has split (git update-index --split-index) or made sparse (git
// sparse-checkout --sparse-index), which go-git cannot read: the commit
// fails, committing nothing, and the index is left as git wrote it.
func TestCommitFilesUnreadableIndex(t *testing.T) {
	needGit(t)
	for _, tc := range []struct {
		name  string
		index func(r *testRepo)
	}{
		{"split", func(r *testRepo) { r.gitOK("update-index", "--split-index") }},
		{"sparse", func(r *testRepo) {
			// As git sparse-checkout set --cone --sparse-index cfg does,
			// without the worktreeConfig extension it also turns on
			// (with which go-git does not open the repository at all).
			for _, kv := range [][2]string{{"core.sparseCheckout", "true"}, {"core.sparseCheckoutCone", "true"}, {"index.sparse", "true"}} {
				r.gitOK("config", kv[0], kv[1])
			}
			r.write(".git/info/sparse-checkout", "/*\n!/*/\n/cfg/\n")
			r.gitOK("sparse-checkout", "reapply")
			if got := r.gitOK("ls-files", "--sparse"); !strings.Contains(got, "other/\n") {
				t.Fatalf("git ls-files --sparse:\n%s\nwant other/ as a sparse directory", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t)
			r.write("cfg/source/a", "1", "notes.txt", "1", "other/b", "1")
			root := r.commitAll("initial")
			r.write("notes.txt", "2")
			r.gitOK("add", "notes.txt")
			tc.index(r)
			indexFile := filepath.Join(r.top, ".git", "index")
			indexBefore, err := os.ReadFile(indexFile)
			if err != nil {
				t.Fatal(err)
			}
			r.write("cfg/source/a", "2")
			if _, err := commitFiles(r.open(), "x", "source/a", "2"); err == nil || !strings.Contains(err.Error(), "reading the git index") {
				t.Errorf("CommitFiles with a %s index = %v, want an error reading the index", tc.name, err)
			}
			if got := r.firstParents(); !slices.Equal(got, []plumbing.Hash{root}) {
				t.Errorf("history %v, want only %s", got, root)
			}
			if after, _ := os.ReadFile(indexFile); !bytes.Equal(after, indexBefore) {
				t.Errorf("the index changed")
			}
			if got, want := r.gitOK("status", "--porcelain", "--untracked-files=no"), " M cfg/source/a\nM  notes.txt\n"; got != want {
				t.Errorf("git status:\n%s\nwant:\n%s", got, want)
			}
			if _, err := os.Stat(indexFile + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("index.lock left behind: %v", err)
			}
		})
	}
}

// TestCommitFilesLinkedWorkTree commits in a work tree added with git
// worktree add: HEAD and the index are the work tree's own, the branch and
// the commit lock are the repository's.
func TestCommitFilesLinkedWorkTree(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/source/a", "1")
	main := r.commitAll("initial")
	linked := filepath.Join(t.TempDir(), "linked")
	r.gitOK("worktree", "add", "-q", "-b", "feature", linked)
	g, err := Open(filepath.Join(linked, "cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(linked, "cfg/source/a"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := commitFiles(g, "in the linked work tree", "source/a", "2")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := gitIn(linked, "rev-parse", "feature"); strings.TrimSpace(got) != res.Hash {
		t.Errorf("feature is at %s, want %s", got, res.Hash)
	}
	if got, _ := gitIn(r.top, "rev-parse", "master"); strings.TrimSpace(got) != main.String() {
		t.Errorf("master moved to %s", got)
	}
	if st, err := gitIn(linked, "status", "--porcelain"); err != nil || st != "" {
		t.Errorf("git status in the linked work tree: %q, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(r.top, ".git", LockFile)); err != nil {
		t.Errorf("the commit lock is not in the common git directory: %v", err)
	}
	// The main work tree's index is untouched.
	if st := r.gitOK("status", "--porcelain"); st != "" {
		t.Errorf("git status in the main work tree: %q", st)
	}
}

// TestFilesAt reads files of a past commit, committed back with
// CommitFiles on a later one: a regular file, an executable one, a
// symbolic link, a file the commit lacks (deleted); the work tree is
// neither read nor written.
func TestFilesAt(t *testing.T) {
	r := newTestRepo(t)
	r.write("cfg/source/a", "a1", "cfg/source/x", "x1", "outside", "o")
	if err := os.Chmod(filepath.Join(r.root, "source/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(r.root, "source/l")); err != nil {
		t.Fatal(err)
	}
	first := r.commitAll("first")
	g := r.open()
	if _, err := commitFiles(g, "second", "source/a", "a2", "source/x", "", "source/l", "", "source/new", "n"); err != nil {
		t.Fatal(err)
	}
	second, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	r.write("cfg/source/a", "edited in the work tree", "cfg/source/new", "n")

	paths := []string{"source/a", "source/l", "source/new", "source/x"}
	files, err := g.FilesAt(first.String(), paths)
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Path: "source/a", Kind: Modified, Data: []byte("a1")},
		{Path: "source/l", Kind: Modified, Data: []byte("a"), Symlink: true},
		{Path: "source/new", Kind: Deleted},
		{Path: "source/x", Kind: Modified, Data: []byte("x1"), Executable: true},
	}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Fatalf("FilesAt (-want +got):\n%s", diff)
	}
	res, err := g.CommitFiles(files, CommitOptions{Message: "back", Author: &Signature{Name: "Ann", Email: "ann@example.com"}, Parent: second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.git.CommitObject(plumbing.NewHash(res.Hash))
	if err != nil {
		t.Fatal(err)
	}
	firstCommit, err := r.git.CommitObject(first)
	if err != nil {
		t.Fatal(err)
	}
	if c.TreeHash != firstCommit.TreeHash || len(c.ParentHashes) != 1 || c.ParentHashes[0].String() != second.Commit {
		t.Errorf("the commit has tree %s and parents %v, want the first commit's tree %s on %s", c.TreeHash, c.ParentHashes, firstCommit.TreeHash, second.Commit)
	}
	if data, _ := os.ReadFile(filepath.Join(r.root, "source/a")); string(data) != "edited in the work tree" {
		t.Errorf("the work tree's source/a is %q", data)
	}
	if _, err := os.Lstat(filepath.Join(r.root, "source/new")); err != nil {
		t.Errorf("source/new, deleted in the commit, is gone from the work tree: %v", err)
	}
	r.fsck()

	if files, err := g.FilesAt("", []string{"source/a"}); err != nil || len(files) != 1 || files[0].Kind != Deleted {
		t.Errorf("FilesAt before the first commit = %+v, %v", files, err)
	}
}

// TestWorkingChangesLinkedDirectory replaces a directory of the work tree
// by a link to a copy of it outside the repository: as for git, the link
// is a new file and the files under it are gone from the work tree;
// nothing is read through it.
func TestWorkingChangesLinkedDirectory(t *testing.T) {
	needGit(t)
	r := newTestRepo(t)
	r.write("cfg/materialized_configs/a.json", "{}\n", "cfg/source/a.json", "{}\n")
	r.commitAll("initial")
	dir := filepath.Join(r.root, "materialized_configs")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.CopyFS(outside, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, dir); err != nil {
		t.Fatal(err)
	}
	changes, err := r.open().WorkingChanges()
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{Path: "materialized_configs", Kind: Added}, {Path: "materialized_configs/a.json", Kind: Deleted}}
	if !slices.Equal(changes, want) {
		t.Errorf("WorkingChanges() = %+v, want %+v", changes, want)
	}
	if st, err := gitIn(r.top, "status", "--porcelain"); err != nil || st != " D cfg/materialized_configs/a.json\n?? cfg/materialized_configs\n" {
		t.Errorf("git status: %q, %v", st, err)
	}
}

// killAt runs this package's test helper test with env added to the
// environment, waits until it says it is at step, kills it (SIGKILL) and
// returns its process ID.
func killAt(t *testing.T, test, step string, env ...string) (pid int) {
	t.Helper()
	helper := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	helper.Env = append(os.Environ(), env...)
	stdout, _ := helper.StdoutPipe()
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "at "+step+"\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	return helper.Process.Pid
}
