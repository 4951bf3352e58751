package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// These tests run the real cfg binary (this test binary, installed on PATH
// as cfg by TestMain): a daemon tailing a git repository, agents on
// 127.0.0.1, and cfg commit making the changes.

// proc is a background cfg process.
type proc struct {
	cmd  *exec.Cmd
	logs *syncbuf.Buffer
	done chan struct{}
}

func start(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("cfg", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CFG_TOKEN=e2e-token")
	return startCmd(t, cmd)
}

// startCmd starts cmd in the background; it is killed when the test ends,
// and its output logged if the test failed.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	// A buffer of its own, not one embedding bytes.Buffer: exec copies
	// into a writer's ReadFrom when it has one, past a Write's lock.
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s %s:\n%s", filepath.Base(cmd.Path), strings.Join(cmd.Args[1:], " "), logs.String())
		}
	})
	return p
}

// output returns what the process wrote so far, stdout and stderr.
func (p *proc) output() string {
	return p.logs.String()
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// run runs cfg to completion and returns its stdout.
func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("cfg", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CFG_AUTHOR_NAME=e2e", "CFG_AUTHOR_EMAIL=e2e@example.com", "GIT_CONFIG_NOSYSTEM=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cfg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// addr waits for a process to write its listening address.
func addr(t *testing.T, file string) string {
	t.Helper()
	var a string
	// A daemon over etcd writes its address once the store is open: on
	// a loaded machine, under the race detector, a process and a cluster
	// just started may take well over 10 s to get there.
	eventually(t, time.Minute, "address in "+file, func() bool {
		b, err := os.ReadFile(file)
		a = strings.TrimSpace(string(b))
		return err == nil && a != ""
	})
	return "http://" + a
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(url string) (string, int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// configRepo makes a git repository from examples/jobs with one commit.
func configRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "source"), os.DirFS("../../examples/jobs/source")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", dir, "init", "-q", "-b", "main").CombinedOutput(); err != nil {
		t.Skipf("git init: %v %s", err, out)
	}
	run(t, dir, "commit", "-m", "initial")
	return dir
}

// setMemory edits the cache job's memory and commits it with cfg commit.
func setMemory(t *testing.T, repo string, mb int) {
	t.Helper()
	p := filepath.Join(repo, "source/feed/cache_job.cconf")
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for i, l := range lines {
		if strings.Contains(l, "memory_mb = ") {
			lines[i] = fmt.Sprintf("    memory_mb = %d,", mb)
		}
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, repo, "commit", "-m", fmt.Sprintf("feed: memory %d", mb))
}

func memoryOf(t *testing.T, data string) int {
	t.Helper()
	var v struct {
		Resources struct {
			MemoryMB int `json:"memory_mb"`
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("config %q: %v", data, err)
	}
	return v.Resources.MemoryMB
}

// agentMemory is the cache job's memory as an agent serves it, or -1.
func agentMemory(t *testing.T, agentURL string) int {
	body, code, err := httpGet(agentURL + "/v1/configs/feed/cache_job")
	if err != nil || code != http.StatusOK {
		return -1
	}
	return memoryOf(t, body)
}

// watcher records the revisions of a config's updates (the cache job's
// unless config is set) that an agent's local watch stream delivers,
// reconnecting with from= after a failure.
type watcher struct {
	config string
	mu     sync.Mutex
	revs   []int64
}

func (w *watcher) run(ctx context.Context, url string) {
	from := int64(-1)
	for ctx.Err() == nil {
		q := url + "/v1/watch?configs=" + cmp.Or(w.config, "feed/cache_job")
		if from >= 0 {
			q += fmt.Sprintf("&from=%d", from)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev struct {
				Type     string `json:"type"`
				Revision int64  `json:"revision"`
				Configs  []struct {
					Revision int64 `json:"revision"`
				} `json:"configs"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev.Type == "update" || ev.Type == "snapshot" {
				w.mu.Lock()
				for _, c := range ev.Configs {
					w.revs = append(w.revs, c.Revision)
				}
				w.mu.Unlock()
			}
			if ev.Type != "heartbeat" || from < 0 {
				from = max(from, ev.Revision)
			}
		}
		resp.Body.Close()
	}
}

func (w *watcher) seen() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.revs...)
}

// TestDistribution: a daemon and three agents; a commit reaches every
// agent; the daemon is killed and the agents keep serving; an agent
// restarted while the daemon is down serves its cache; a daemon restart
// republishes nothing and watchers resume without gaps or duplicates.
func TestDistribution(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	repo := configRepo(t)
	work := t.TempDir()
	daemonArgs := []string{"serve", "--repo", repo, "--data-dir", filepath.Join(work, "d1"),
		"--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, "d1.addr"), "--poll", "200ms", "--heartbeat", "500ms"}
	d1 := start(t, work, daemonArgs...)
	daemonURL := addr(t, filepath.Join(work, "d1.addr"))
	eventually(t, 10*time.Second, "the daemon to publish", func() bool {
		_, code, _ := httpGet(daemonURL + "/healthz")
		return code == http.StatusOK
	})

	// The daemon knows each compiled config's Thrift type from the record
	// the compile committed.
	if resp, err := http.Get(daemonURL + "/v1/configs/feed/cache_job"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if got := resp.Header.Get("Cfg-Type"); got != "Job" {
			t.Errorf("Cfg-Type %q, want Job", got)
		}
	}

	agents := make([]string, 3)
	agentArgs := func(i int) []string {
		return []string{"agent", "--daemon", daemonURL, "--host", fmt.Sprintf("host-%d", i), "--label", "cluster=c1",
			"--cache-dir", filepath.Join(work, fmt.Sprintf("cache%d", i)), "--listen", "127.0.0.1:0",
			"--addr-file", filepath.Join(work, fmt.Sprintf("a%d.addr", i)), "--report-every", "200ms", "--heartbeat-timeout", "2s"}
	}
	procs := make([]*proc, 3)
	for i := range agents {
		procs[i] = start(t, work, agentArgs(i)...)
		agents[i] = addr(t, filepath.Join(work, fmt.Sprintf("a%d.addr", i)))
		if got := memoryOf(t, run(t, work, "get", "--agent", agents[i], "feed/cache_job")); got != 32768 {
			t.Fatalf("agent %d serves memory %d, want 32768", i, got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watcher{}
	go w.run(ctx, agents[0])

	// A commit reaches every agent.
	setMemory(t, repo, 40000)
	for i, a := range agents {
		eventually(t, 10*time.Second, fmt.Sprintf("agent %d to apply the commit", i), func() bool { return agentMemory(t, a) == 40000 })
	}
	eventually(t, 10*time.Second, "every host to report revision 2", func() bool {
		out := run(t, work, "status", "--daemon", daemonURL, "--format", "json")
		var hosts []struct {
			Applied int64 `json:"applied"`
			Behind  bool  `json:"behind"`
		}
		json.Unmarshal([]byte(out), &hosts)
		ok := len(hosts) == 3
		for _, h := range hosts {
			ok = ok && h.Applied >= 2 && !h.Behind
		}
		return ok
	})

	// The daemon dies; the agents keep serving.
	d1.kill()
	for i, a := range agents {
		if got := agentMemory(t, a); got != 40000 {
			t.Fatalf("agent %d with the daemon down serves %d, want 40000", i, got)
		}
	}
	// An agent restarted while the daemon is down serves its cache at once.
	procs[2].kill()
	os.Remove(filepath.Join(work, "a2.addr"))
	procs[2] = start(t, work, agentArgs(2)...)
	agents[2] = addr(t, filepath.Join(work, "a2.addr"))
	if got := agentMemory(t, agents[2]); got != 40000 {
		t.Fatalf("restarted agent serves %d from its cache, want 40000", got)
	}
	// So does the client library reading the cache when the agent is gone.
	procs[1].kill()
	out := run(t, work, "get", "--agent", agents[1], "--cache-dir", filepath.Join(work, "cache1"), "feed/cache_job")
	if got := memoryOf(t, out); got != 40000 {
		t.Fatalf("cache fallback serves %d, want 40000", got)
	}

	// The daemon restarts on the same data: nothing is republished, and a
	// commit made meanwhile and one made after both arrive, in order.
	setMemory(t, repo, 41000)
	os.Remove(filepath.Join(work, "d1.addr"))
	restartArgs := append([]string{}, daemonArgs...)
	for i, a := range restartArgs {
		if a == "127.0.0.1:0" {
			restartArgs[i] = strings.TrimPrefix(daemonURL, "http://") // the same port, which the agents know
		}
	}
	start(t, work, restartArgs...) // stopped by the test cleanup
	addr(t, filepath.Join(work, "d1.addr"))
	eventually(t, 10*time.Second, "revision 3", func() bool {
		body, _, _ := httpGet(daemonURL + "/v1/revisions/latest")
		return strings.Contains(body, `"revision":3`)
	})
	setMemory(t, repo, 42000)
	for _, i := range []int{0, 2} {
		eventually(t, 15*time.Second, fmt.Sprintf("agent %d to resume and apply revision 4", i), func() bool { return agentMemory(t, agents[i]) == 42000 })
	}
	if body, _, _ := httpGet(daemonURL + "/v1/revisions/5"); !strings.Contains(body, "error") {
		t.Fatalf("a revision 5 exists after four commits: %s", body)
	}
	// The revisions agent 0's watcher saw: each once, in order, none missing.
	eventually(t, 5*time.Second, "the watcher to see revision 4", func() bool {
		revs := w.seen()
		return len(revs) > 0 && revs[len(revs)-1] == 4
	})
	if got := w.seen(); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("revisions seen across the daemon restart: %v, want [1 2 3 4]", got)
	}
}

// TestFailover: two daemons tail the same repository; an agent that loses
// the first fails over to the second and misses no update.
func TestFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	repo := configRepo(t)
	work := t.TempDir()
	var urls []string
	var daemons []*proc
	for i := range 2 {
		daemons = append(daemons, start(t, work, "serve", "--repo", repo, "--data-dir", filepath.Join(work, fmt.Sprintf("d%d", i)),
			"--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, fmt.Sprintf("d%d.addr", i)), "--poll", "200ms", "--heartbeat", "300ms"))
		urls = append(urls, addr(t, filepath.Join(work, fmt.Sprintf("d%d.addr", i))))
		eventually(t, 10*time.Second, "daemon to publish", func() bool {
			_, code, _ := httpGet(urls[i] + "/healthz")
			return code == http.StatusOK
		})
	}
	start(t, work, "agent", "--daemon", strings.Join(urls, ","), "--host", "h", "--cache-dir", filepath.Join(work, "cache"),
		"--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, "a.addr"), "--heartbeat-timeout", "1s")
	agentURL := addr(t, filepath.Join(work, "a.addr"))
	eventually(t, 10*time.Second, "the agent to serve", func() bool { return agentMemory(t, agentURL) == 32768 })
	setMemory(t, repo, 40000)
	eventually(t, 10*time.Second, "the first update", func() bool { return agentMemory(t, agentURL) == 40000 })

	daemons[0].kill()
	setMemory(t, repo, 50000)
	eventually(t, 15*time.Second, "the update through the second daemon", func() bool { return agentMemory(t, agentURL) == 50000 })
	body, _, _ := httpGet(agentURL + "/v1/status")
	if !strings.Contains(body, urls[1]) {
		t.Errorf("agent status does not name the second daemon: %s", body)
	}
}

// TestKillDuringPublish kills the daemon (SIGKILL) at arbitrary moments
// while commits that change two configs at once arrive, and checks after
// every restart that each published revision holds both configs of its
// commit: a revision is visible whole or not at all, and the sequence is
// dense.
func TestKillDuringPublish(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	repo := configRepo(t)
	work := t.TempDir()
	args := []string{"serve", "--repo", repo, "--data-dir", filepath.Join(work, "d"),
		"--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, "d.addr"), "--poll", "50ms"}
	shared := filepath.Join(repo, "source/lib/create_job.cinc")
	orig, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 8 {
		os.Remove(filepath.Join(work, "d.addr"))
		d := start(t, work, args...)
		addr(t, filepath.Join(work, "d.addr"))
		// Both jobs get the tag the shared module adds.
		edited := strings.Replace(string(orig), `["managed-by-cfg"]`, fmt.Sprintf(`["managed-by-cfg-%d"]`, round), 1)
		if err := os.WriteFile(shared, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, repo, "commit", "-m", fmt.Sprintf("round %d", round))
		time.Sleep(time.Duration(round*7) * time.Millisecond)
		d.kill()
	}
	os.Remove(filepath.Join(work, "d.addr"))
	start(t, work, args...)
	url := addr(t, filepath.Join(work, "d.addr"))
	var latest struct {
		Revision int64 `json:"revision"`
	}
	eventually(t, 10*time.Second, "every commit to be published", func() bool {
		body, _, _ := httpGet(url + "/v1/revisions/latest")
		json.Unmarshal([]byte(body), &latest)
		return latest.Revision == 9 // the initial commit and eight rounds
	})
	for n := int64(2); n <= latest.Revision; n++ {
		body, code, err := httpGet(fmt.Sprintf("%s/v1/revisions/%d", url, n))
		if err != nil || code != http.StatusOK {
			t.Fatalf("revision %d: %d %v %s", n, code, err, body)
		}
		var rev struct {
			Configs []string `json:"configs"`
		}
		json.Unmarshal([]byte(body), &rev)
		if fmt.Sprint(rev.Configs) != "[feed/cache_job security/security_job]" {
			t.Errorf("revision %d holds %v, want both jobs", n, rev.Configs)
		}
	}
}
