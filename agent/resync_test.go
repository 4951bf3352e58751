package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/internal/syncbuf"
	"github.com/cfg-dev/cfg/store"
)

// gitRepo is a config repository in a temporary git work tree.
type gitRepo struct {
	t    *testing.T
	dir  string
	git  *git.Repository
	when time.Time
}

func newGitRepo(t *testing.T) *gitRepo {
	dir := t.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &gitRepo{t: t, dir: dir, git: g, when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// commit writes materialized configs given as name, data pairs (empty
// data deletes the config), commits, and returns the commit.
func (r *gitRepo) commit(pairs ...string) string {
	r.t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		p := filepath.Join(r.dir, "materialized_configs", filepath.FromSlash(pairs[i])+".json")
		if pairs[i+1] == "" {
			if err := os.Remove(p); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(pairs[i+1]), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	wt, _ := r.git.Worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	r.when = r.when.Add(time.Minute)
	h, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: r.when}})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// reset moves the branch back to commit.
func (r *gitRepo) reset(commit string) {
	head, _ := r.git.Head()
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(head.Name(), plumbing.NewHash(commit))); err != nil {
		r.t.Fatal(err)
	}
}

// serveDaemon serves a daemon for repo with its data in data at addr
// (127.0.0.1:0 for any port), and returns its address and a function
// that stops it.
func serveDaemon(t *testing.T, repo, data, addr string) (string, func()) {
	t.Helper()
	d, err := daemon.New(daemon.Config{RepoPath: repo, DataDir: data, Token: "tok", Heartbeat: hb, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Serve(ctx, ln); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			d.Close()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// startRealAgent serves an agent of the daemon at addr, logging to logs.
func startRealAgent(t *testing.T, dir, addr string, logs *syncbuf.Buffer) *testAgent {
	t.Helper()
	a, err := New(Config{Daemons: []string{"http://" + addr}, Host: "web-1", CacheDir: dir, Token: "tok", ReportEvery: time.Hour,
		HeartbeatTimeout: 6 * hb, Heartbeat: hb, FetchTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a.retryMin, a.retryMax = 10*time.Millisecond, 50*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &testAgent{Agent: a, URL: "http://" + ln.Addr().String()}
}

func identityOf(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, daemon.StoreFile+store.IdentitySuffix))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestResyncWithRecreatedStore: an agent holds revision 5 of a store;
// the store is moved aside and a new one made, whose first revision holds
// the configs at the branch head. The agent does not wait for revision 5
// of the new store: it resynchronises from a snapshot, says so, serves the
// new store's configs (a config deleted meanwhile is gone), and follows
// its revisions from there.
func TestResyncWithRecreatedStore(t *testing.T) {
	r := newGitRepo(t)
	r.commit("feed/job", `{"v":1}`, "feed/old", `{"old":1}`)
	data := t.TempDir()
	addr, stop := serveDaemon(t, r.dir, data, "127.0.0.1:0")
	first := identityOf(t, data)
	logs := &syncbuf.Buffer{}
	a := startRealAgent(t, t.TempDir(), addr, logs)
	a.waitServes(t, "feed/job", `{"v":1}`)
	a.waitServes(t, "feed/old", `{"old":1}`)
	for v := 2; v <= 5; v++ {
		r.commit("feed/job", fmt.Sprintf(`{"v":%d}`, v))
	}
	a.waitServes(t, "feed/job", `{"v":5}`)
	waitFor(t, "the agent to apply revision 5", func() bool { return a.applied() == 5 })

	stop()
	r.commit("feed/job", `{"v":6}`, "feed/old", "")
	os.Rename(filepath.Join(data, daemon.StoreFile), filepath.Join(data, "moved-aside"))
	os.Rename(filepath.Join(data, daemon.StoreFile+store.IdentitySuffix), filepath.Join(data, "moved-aside.identity"))

	// The new store before its first revision (its API served without
	// the tailer): the agent keeps what it holds.
	d, err := daemon.New(daemon.Config{RepoPath: r.dir, DataDir: data, Token: "tok", Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	second := identityOf(t, data)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler()}
	go srv.Serve(ln)
	waitForLog(t, logs, `err="resynchronising: the daemon's store has no revision yet"`)
	a.waitServes(t, "feed/job", `{"v":5}`)
	a.waitServes(t, "feed/old", `{"old":1}`)
	srv.Close()
	d.Close()
	serveDaemon(t, r.dir, data, addr)
	if got := identityOf(t, data); got != second {
		t.Fatalf("identity %s, then %s", second, got)
	}

	a.waitServes(t, "feed/job", `{"v":6}`)
	waitFor(t, "feed/old to be gone", func() bool { return get(t, a.URL+"/v1/configs/feed/old").code == 404 })
	waitForLog(t, logs, fmt.Sprintf(`msg="resynchronising from a snapshot" daemon=http://%s reason="store changed: the daemon serves store %s, the agent holds revisions of store %s"`, addr, second, first))
	// The log line comes after state.json is written.
	waitForLog(t, logs, fmt.Sprintf(`msg="resynchronised from a snapshot" store=%s revision=1 previous_store=%s previous_revision=5 configs_changed=2`, second, first))
	if st := a.Status(); st.Store != second || st.Applied != 1 {
		t.Errorf("status after resynchronising: store %s, applied %d; want %s, 1", st.Store, st.Applied, second)
	}
	if state, err := cache.ReadState(a.cfg.CacheDir); err != nil || state.Store != second || state.Revision != 1 {
		t.Errorf("state.json after resynchronising: %+v, %v", state, err)
	}

	// The new store's next revision (2, below the 5 the agent held) is
	// applied.
	r.commit("feed/job", `{"v":7}`)
	a.waitServes(t, "feed/job", `{"v":7}`)
	waitFor(t, "the agent to apply revision 2", func() bool { return a.applied() == 2 })
}

// TestResyncWithOlderStore: the store is restored from a copy made at
// revision 1 and the branch moved back to that revision's commit, while
// the agent holds revision 3. The store's identity is the same, but its
// latest revision is below the agent's: the agent resynchronises.
func TestResyncWithOlderStore(t *testing.T) {
	r := newGitRepo(t)
	r.commit("feed/job", `{"v":1}`)
	c2 := r.commit("feed/job", `{"v":2}`)
	data := t.TempDir()
	addr, stop := serveDaemon(t, r.dir, data, "127.0.0.1:0")
	logs := &syncbuf.Buffer{}
	a := startRealAgent(t, t.TempDir(), addr, logs)
	a.waitServes(t, "feed/job", `{"v":2}`)
	stop()
	saved, err := os.ReadFile(filepath.Join(data, daemon.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	addr, stop = serveDaemon(t, r.dir, data, addr)
	r.commit("feed/job", `{"v":3}`, "feed/new", `{"new":3}`)
	r.commit("feed/job", `{"v":4}`)
	a.waitServes(t, "feed/job", `{"v":4}`)
	a.waitServes(t, "feed/new", `{"new":3}`)
	waitFor(t, "the agent to apply revision 3", func() bool { return a.applied() == 3 })

	stop()
	if err := os.WriteFile(filepath.Join(data, daemon.StoreFile), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	r.reset(c2)
	serveDaemon(t, r.dir, data, addr)

	a.waitServes(t, "feed/job", `{"v":2}`)
	waitFor(t, "feed/new to be gone", func() bool { return get(t, a.URL+"/v1/configs/feed/new").code == 404 })
	waitFor(t, "the agent to apply revision 1", func() bool { return a.applied() == 1 })
	waitForLog(t, logs, fmt.Sprintf(`msg="resynchronising from a snapshot" daemon=http://%s reason="store changed: the daemon's latest revision is 1, the agent holds revision 3"`, addr))
}

// waitForLog waits for line in an agent's log.
func waitForLog(t *testing.T, logs *syncbuf.Buffer, line string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(logs.String(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent's log lacks\n%s\nlog:\n%s", line, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
