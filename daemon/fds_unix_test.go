//go:build unix

package daemon

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// childProcess is a daemon running in a test binary of its own.
type childProcess struct {
	*testDaemon
	cmd  *exec.Cmd
	logs chan string // its log lines
}

// startChild runs a daemon for repoDir in a process of its own with a
// file descriptor limit of fds.
func startChild(t *testing.T, repoDir string, fds int) *childProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+repoDir, childDataEnv+"="+filepath.Join(dir, "data"),
		childFDsEnv+"="+strconv.Itoa(fds), childAddrFile+"="+addrFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childProcess{cmd: cmd, logs: make(chan string, 10000)}
	go func() {
		defer close(c.logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case c.logs <- sc.Text():
			default: // a test that reads no logs does not stop the daemon
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Process.Kill()
		cmd.Wait()
	})
	td := &testDaemon{t: t}
	td.waitFor("the daemon's address", func() bool {
		b, err := os.ReadFile(addrFile)
		td.url = "http://" + string(b)
		return err == nil
	})
	c.testDaemon = td
	return c
}

// waitLog waits for a log line holding every one of parts.
func (c *childProcess) waitLog(parts ...string) {
	c.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-c.logs:
			if !ok {
				c.t.Fatalf("the daemon ended before logging %q", parts)
			}
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		case <-timeout:
			c.t.Fatalf("timed out waiting for a log line with %q", parts)
		}
	}
}

// TestConnectionsKeepFDsForTheTailer attacks the connection limit: with
// more connections coming than the daemon has file descriptors, the daemon
// serves as many as its limit leaves room for, and keeps publishing (before,
// it took every connection it could and the tailer failed with "open
// packed-refs: too many open files").
func TestConnectionsKeepFDsForTheTailer(t *testing.T) {
	const fds = 200 // ReservedFDs for the daemon, 72 for connections
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := startChild(t, r.dir, fds)
	d.waitFor("healthz ok", func() bool {
		resp, err := http.Get(d.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	d.waitLog("published", "revision=1")

	// 300 watch streams: more than the daemon has file descriptors.
	var mu sync.Mutex
	served := 0
	var servedConns []net.Conn
	for range 300 {
		c := d.sendRequest("127.0.0.1", "/v1/watch?configs=a")
		go func() {
			br := bufio.NewReader(c)
			if line, err := br.ReadString('\n'); err == nil && strings.HasPrefix(line, "HTTP/1.1 200") {
				mu.Lock()
				served++
				servedConns = append(servedConns, c)
				mu.Unlock()
				io.Copy(io.Discard, br)
			}
		}()
	}
	d.waitFor("the daemon to serve as many streams as it may", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return served >= fds-ReservedFDs
	})
	r.commit("materialized_configs/a.json", `{"a":2}`)
	d.waitLog("published", "revision=2")
	mu.Lock()
	if served != fds-ReservedFDs {
		t.Errorf("%d streams served, want %d: the file descriptor limit, less the %d kept for the daemon", served, fds-ReservedFDs, ReservedFDs)
	}
	mu.Unlock()

	// Connections that end make room for those that wait.
	mu.Lock()
	for _, c := range servedConns {
		c.Close()
	}
	mu.Unlock()
	d.waitFor("as many streams served again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return served >= 2*(fds-ReservedFDs)
	})
}
