package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/internal/racecheck"
	"github.com/cfg-dev/cfg/validate"
)

// These tests run cfg commit as separate processes (this test binary,
// installed on PATH as cfg by TestMain), beside command-line git.

// cfgCommand returns cfg with args, to run in dir with an author.
func cfgCommand(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("cfg", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CFG_AUTHOR_NAME=e2e", "CFG_AUTHOR_EMAIL=e2e@example.com", "GIT_CONFIG_NOSYSTEM=1")
	return cmd
}

// runExit runs cfg to completion and returns its exit code and output.
func runExit(dir string, args ...string) (code int, stdout, stderr string, err error) {
	cmd := cfgCommand(dir, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String(), nil
	}
	return 0, out.String(), errb.String(), err
}

// gitOut runs command-line git in dir.
func gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=git", "GIT_AUTHOR_EMAIL=git@example.com", "GIT_COMMITTER_NAME=git", "GIT_COMMITTER_EMAIL=git@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// jobConfig is a config of examples/jobs.
func jobConfig(name string, memoryMB int) string {
	return fmt.Sprintf("load(\"//lib/create_job.cinc\", \"create_job\")\n\nexport(create_job(name = %q, memory_mb = %d))\n", name, memoryMB)
}

// writeFileAtomic writes a file as an editor that saves atomically does.
func writeFileAtomic(dir, p, data string) error {
	name := filepath.Join(dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

var (
	committedLine = regexp.MustCompile(`(?m)^committed ([0-9a-f]{40}): `)
	branchMoved   = regexp.MustCompile(`(?m)^cfg: nothing committed: the branch moved; run cfg commit again \(main at [0-9a-f]{12} now, not at [0-9a-f]{12}\)$`)
)

// checkBranch checks the branch of the repository at dir: its root commit
// is root, every commit in reported is on its first-parent history, and
// every commit there passes cfg validate as committed (each config
// repository tree once). It returns the number of commits on the branch.
func checkBranch(t *testing.T, dir, root string, reported []string) int {
	t.Helper()
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := gitOut(dir, "rev-list", "--first-parent", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	history := strings.Fields(out)
	if roots, err := gitOut(dir, "rev-list", "--max-parents=0", "HEAD"); err != nil || roots != root {
		t.Errorf("root commits %q, %v, want only %s", roots, err, root)
	}
	for _, h := range reported {
		if !slices.Contains(history, h) {
			t.Errorf("reported commit %s is not on the branch", h)
		}
	}
	validated := map[string]bool{}
	for _, h := range history {
		trees, err := gitOut(dir, "rev-parse", h+":source", h+":materialized_configs")
		if err != nil {
			t.Fatal(err)
		}
		if validated[trees] {
			continue
		}
		validated[trees] = true
		fsys, err := g.FS(h)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := validate.Run(context.Background(), fsys, nil, compiler.Options{Jobs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Diags) > 0 {
			t.Errorf("commit %.12s does not pass cfg validate:\n%s", h, rep.Diags.Error())
		}
	}
	// The working tree, checked out at the last commit, passes cfg
	// validate too, and git finds the repository whole.
	if code, _, errb, err := runExit(dir, "validate"); code != 0 || err != nil {
		t.Errorf("cfg validate: exit %d, %v\n%s", code, err, errb)
	}
	if out, err := gitOut(dir, "fsck", "--strict", "--no-dangling"); err != nil {
		t.Errorf("git fsck: %v\n%s", err, out)
	}
	for _, name := range []string{"index.lock", "refs/heads/main.lock"} {
		if _, err := os.Stat(filepath.Join(dir, ".git", name)); !os.IsNotExist(err) {
			t.Errorf(".git/%s left behind: %v", name, err)
		}
	}
	return len(history)
}

// TestCommitConcurrentProcesses runs two cfg commit processes at a time in
// one repository, 100 commits each, while command-line git commits a file
// outside the config repository in a loop, up to 100 times: every commit
// either reports is on the branch, the branch keeps its root, and every
// commit passes cfg validate. A cfg commit whose branch git moved exits 1,
// commits nothing, and is run again. Under the race detector, which
// looks for races within each process, 20 commits each.
func TestCommitConcurrentProcesses(t *testing.T) {
	t.Parallel()
	dir := configRepo(t)
	root, err := gitOut(dir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	const committers = 2
	iterations := 100
	if racecheck.Enabled {
		iterations = 20
	}
	var mu sync.Mutex
	var reported []string
	moved := 0
	var wg sync.WaitGroup
	errs := make(chan error, committers+1)
	for w := range committers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%d", w)
			for i := range iterations {
				if err := writeFileAtomic(dir, "source/team/"+name+".cconf", jobConfig(name, 1024+i)); err != nil {
					errs <- err
					return
				}
				for {
					code, out, errb, err := runExit(dir, "commit", "-m", fmt.Sprintf("%s %d", name, i))
					if err != nil {
						errs <- err
						return
					}
					if code == 1 && branchMoved.MatchString(errb) {
						mu.Lock()
						moved++
						mu.Unlock()
						continue
					}
					if code != 0 {
						errs <- fmt.Errorf("%s %d: exit %d\n%s", name, i, code, errb)
						return
					}
					if m := committedLine.FindStringSubmatch(out); m != nil {
						mu.Lock()
						reported = append(reported, m[1])
						mu.Unlock()
					}
					break
				}
			}
		}()
	}
	stop := make(chan struct{})
	gitDone := make(chan struct{})
	var gitCommits []string
	go func() {
		defer close(gitDone)
		for i := 0; len(gitCommits) < iterations; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
				errs <- err
				return
			}
			if i == 0 {
				if _, err := gitOut(dir, "add", "notes.txt"); err != nil {
					errs <- err
					return
				}
			}
			_, err := gitOut(dir, "commit", "-q", "-m", fmt.Sprintf("notes %d", i), "notes.txt")
			if err != nil && (strings.Contains(err.Error(), "index.lock") || strings.Contains(err.Error(), "cannot lock ref")) {
				continue // cfg commit held the index or moved the branch
			}
			if err != nil {
				errs <- err
				return
			}
			h, err := gitOut(dir, "rev-parse", "HEAD")
			if err != nil {
				errs <- err
				return
			}
			gitCommits = append(gitCommits, h)
		}
	}()
	wg.Wait()
	close(stop)
	<-gitDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d cfg commits (%d run again after git moved the branch), %d git commits", len(reported), moved, len(gitCommits))
	n := checkBranch(t, dir, root, append(reported, gitCommits...))
	if n != 1+len(reported)+len(gitCommits) {
		t.Errorf("%d commits on the branch, want %d", n, 1+len(reported)+len(gitCommits))
	}
}

// TestCommitKilled kills cfg commit at random moments, 30 times (10
// under the race detector): a later cfg commit finds nothing in its way
// (it recovers the commit lock and any lock file of git's the killed one
// left), and the branch stays whole.
func TestCommitKilled(t *testing.T) {
	t.Parallel()
	dir := configRepo(t)
	root, err := gitOut(dir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	var reported []string
	recovered := 0
	kills := 30
	if racecheck.Enabled {
		kills = 10
	}
	for i := range kills {
		if err := writeFileAtomic(dir, "source/team/k.cconf", jobConfig("k", 1024+i)); err != nil {
			t.Fatal(err)
		}
		cmd := cfgCommand(dir, "commit", "-m", fmt.Sprintf("killed %d", i))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.N(150)) * time.Millisecond) // a random moment, not a wait for a condition
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if m := committedLine.FindStringSubmatch(out.String()); m != nil {
			reported = append(reported, m[1])
		}

		code, stdout, stderr, err := runExit(dir, "commit", "-m", fmt.Sprintf("after %d", i))
		if err != nil || code != 0 {
			t.Fatalf("cfg commit after a killed one: exit %d, %v\n%s", code, err, stderr)
		}
		if strings.Contains(stderr, "ended without releasing the repository's commit lock; recovered it") {
			recovered++
		}
		if m := committedLine.FindStringSubmatch(stdout); m != nil {
			reported = append(reported, m[1])
		}
		if st, err := gitOut(dir, "status", "--porcelain", "--untracked-files=no"); err != nil || st != "" {
			t.Fatalf("git status after the commit: %q, %v", st, err)
		}
	}
	t.Logf("%d commits reported; %d stale locks recovered", len(reported), recovered)
	checkBranch(t, dir, root, reported)
}

// TestCommitWaitsForLock runs cfg commit while another process (this test)
// holds the repository's commit lock. With --lock-timeout it says whom it
// waits for, and when the wait runs out it exits 3 and commits nothing.
// Without, it waits while the holder commits, and then commits on the
// holder's commit: the branch it started from is the one it finds once it
// holds the lock.
func TestCommitWaitsForLock(t *testing.T) {
	t.Parallel()
	dir := configRepo(t)
	root, err := gitOut(dir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := g.Lock(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	data, err := os.ReadFile(filepath.Join(dir, ".git", gitrepo.LockFile))
	if err != nil {
		t.Fatal(err)
	}
	var holder gitrepo.Holder
	if err := json.Unmarshal(data, &holder); err != nil || holder.PID != os.Getpid() {
		t.Fatalf("the commit lock describes %+v, %v, want this process", holder, err)
	}
	waiting := "waiting for another cfg commit (" + holder.String() + ") to finish\n"
	if err := writeFileAtomic(dir, "source/team/w.cconf", jobConfig("w", 2048)); err != nil {
		t.Fatal(err)
	}

	// The wait runs out.
	code, stdout, stderr, err := runExit(dir, "commit", "-m", "timed out", "--lock-timeout", "100ms")
	want := waiting + "cfg: another cfg commit (" + holder.String() + ") holds the repository's commit lock; waited 100ms\n"
	if err != nil || code != 3 || stdout != "" || stderr != want {
		t.Errorf("cfg commit while the lock is held: exit %d, %v, stdout %q, stderr:\n%s\nwant exit 3, stderr:\n%s", code, err, stdout, stderr, want)
	}
	if head, err := gitOut(dir, "rev-parse", "HEAD"); err != nil || head != root {
		t.Errorf("HEAD at %s, %v, want %s", head, err, root)
	}
	if staged, err := gitOut(dir, "diff", "--cached", "--name-only"); err != nil || staged != "" {
		t.Errorf("staged after a commit that timed out: %q, %v", staged, err)
	}

	// It waits, and the holder commits meanwhile.
	cmd := cfgCommand(dir, "commit", "-m", "after waiting")
	var out bytes.Buffer
	cmd.Stdout = &out
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	errs := bufio.NewReader(errPipe)
	if line, err := errs.ReadString('\n'); err != nil || line != waiting {
		t.Fatalf("cfg commit's first line: %q, %v, want %q", line, err, waiting)
	}
	base, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("meanwhile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	meanwhile, err := g.CommitFiles([]gitrepo.File{{Path: "notes.txt", Data: []byte("meanwhile\n")}}, gitrepo.CommitOptions{Message: "meanwhile", Author: &gitrepo.Signature{Name: "Holder", Email: "holder@example.com"}, Parent: base})
	if err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	rest, _ := io.ReadAll(errs)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("cfg commit after waiting: %v\n%s", err, rest)
	}
	m := committedLine.FindStringSubmatch(out.String())
	if m == nil || len(rest) != 0 {
		t.Fatalf("cfg commit after waiting: stdout %q, stderr %q", out.String(), rest)
	}
	if parent, err := gitOut(dir, "rev-parse", m[1]+"^"); err != nil || parent != meanwhile.Hash {
		t.Errorf("the commit's parent is %s, %v, want the holder's commit %s", parent, err, meanwhile.Hash)
	}
	if files, err := gitOut(dir, "show", "--name-only", "--format=", m[1]); err != nil || files != "materialized_configs/.types.json\nmaterialized_configs/team/w.json\nsource/team/w.cconf" {
		t.Errorf("files of the commit: %q, %v", files, err)
	}
	if n := checkBranch(t, dir, root, []string{meanwhile.Hash, m[1]}); n != 3 {
		t.Errorf("%d commits on the branch, want 3", n)
	}
}
