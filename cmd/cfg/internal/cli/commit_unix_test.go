//go:build unix

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/gitrepo"
)

// TestCommitStaleLockFromAnotherHost runs cfg commit where the commit lock
// names a holder on another host (sharing the repository over a network
// file system) that ended without releasing it, leaving index.lock: cfg
// commit recovers the commit lock, names the lock file and leaves it (the
// other host's process may still run), and fails naming it, committing
// nothing. Once the file is removed, cfg commit commits.
func TestCommitStaleLockFromAnotherHost(t *testing.T) {
	dir := commitRepo(t)
	root := headHash(t, dir)
	writeAtomic(t, dir, "source/team/x.cconf", config("x", 1))

	indexLock := filepath.Join(dir, ".git", "index.lock")
	if err := os.WriteFile(indexLock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(indexLock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	host, _ := os.Hostname()
	other := gitrepo.Holder{
		PID:      4242,
		Host:     "elsewhere-" + host,
		Started:  time.Now().Add(-time.Hour),
		GitLocks: []gitrepo.LockedFile{{Path: indexLock, Dev: uint64(st.Dev), Ino: uint64(st.Ino)}},
	}
	data, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	commitLock := filepath.Join(dir, ".git", gitrepo.LockFile)
	if err := os.WriteFile(commitLock, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errb := runCfg(dir, "commit", "-m", "x")
	want := "a cfg commit (" + other.String() + ") ended without releasing the repository's commit lock; recovered it\n" +
		"  " + indexLock + ", which it left on another host, is still there: remove it if no git or cfg command is running there\n" +
		"cfg: " + indexLock + " exists: another git process seems to be running in this repository; if none is, one ended without cleaning up: remove the file and try again\n"
	if code != ExitInfra || out != "" || errb != want {
		t.Errorf("cfg commit with the other host's index.lock: exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", code, out, errb, ExitInfra, want)
	}
	if got := headHash(t, dir); got != root {
		t.Errorf("HEAD moved to %s", got)
	}
	if _, err := os.Stat(indexLock); err != nil {
		t.Errorf("the other host's index.lock: %v", err)
	}
	if data, err := os.ReadFile(commitLock); err != nil || len(data) != 0 {
		t.Errorf("the commit lock was not released: %q, %v", data, err)
	}

	if err := os.Remove(indexLock); err != nil {
		t.Fatal(err)
	}
	code, out, errb = runCfg(dir, "commit", "-m", "x")
	m := committedRE.FindStringSubmatch(out)
	if code != ExitOK || m == nil || errb != "" {
		t.Fatalf("cfg commit once index.lock is gone: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	checkHistory(t, dir, root, []string{m[1]})
}
