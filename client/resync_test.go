package client

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// distribution is a real daemon tailing a git repository, and a real
// agent of it.
type distribution struct {
	t     *testing.T
	repo  string
	git   *git.Repository
	when  time.Time
	data  string // the daemon's data directory
	addr  string // the daemon's address
	agent string // the agent's URL
}

func newDistribution(t *testing.T) *distribution {
	d := &distribution{t: t, repo: t.TempDir(), data: t.TempDir(), when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	g, err := git.PlainInit(d.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	d.git = g
	return d
}

// commit commits data as the config app/greeter and returns the commit.
func (d *distribution) commit(data string) string {
	d.t.Helper()
	p := filepath.Join(d.repo, "materialized_configs", "app", "greeter.json")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		d.t.Fatal(err)
	}
	wt, _ := d.git.Worktree()
	wt.AddWithOptions(&git.AddOptions{All: true})
	d.when = d.when.Add(time.Minute)
	h, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: d.when}})
	if err != nil {
		d.t.Fatal(err)
	}
	return h.String()
}

// serveDaemon serves the daemon (at its address once it has one) and
// returns a function that stops it.
func (d *distribution) serveDaemon() func() {
	d.t.Helper()
	dm, err := daemon.New(daemon.Config{RepoPath: d.repo, DataDir: d.data, Token: "tok", Heartbeat: hb, Poll: 20 * time.Millisecond})
	if err != nil {
		d.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cmp.Or(d.addr, "127.0.0.1:0"))
	if err != nil {
		d.t.Fatal(err)
	}
	d.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dm.Serve(ctx, ln); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; dm.Close() }) }
	d.t.Cleanup(stop)
	return stop
}

// serveAgent serves an agent of the daemon.
func (d *distribution) serveAgent() {
	d.t.Helper()
	a, err := agent.New(agent.Config{Daemons: []string{"http://" + d.addr}, Host: "h", CacheDir: d.t.TempDir(), HeartbeatTimeout: 6 * hb, Heartbeat: hb})
	if err != nil {
		d.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Serve(ctx, ln); close(done) }()
	d.t.Cleanup(func() { cancel(); <-done })
	d.agent = "http://" + ln.Addr().String()
}

// nextAt returns the next value Watch delivers at revision rev or later.
func nextAt(t *testing.T, ch <-chan Config, rev int64) Config {
	t.Helper()
	for {
		if cfg := next(t, ch); cfg.Revision >= rev {
			return cfg
		}
	}
}

// TestWatchAcrossStoreChange: an application watches a config through a
// real agent of a real daemon, up to revision 4; the daemon's store is
// made again, whose first revision holds a new version. The agent
// resynchronises, and Watch delivers the new version although its
// revision (1) is below the one it delivered, and logs why.
func TestWatchAcrossStoreChange(t *testing.T) {
	d := newDistribution(t)
	d.commit(`{"greeting": "hello 1"}`)
	stop := d.serveDaemon()
	d.serveAgent()
	logs := &syncbuf.Buffer{}
	ch := watch(t, newClient(t, Options{AgentURL: d.agent, Logger: slog.New(slog.NewTextHandler(logs, nil))}), "app/greeter")
	if cfg := next(t, ch); cfg.Revision != 1 {
		t.Fatalf("first value %+v", cfg)
	}
	for i := 2; i <= 4; i++ {
		d.commit(fmt.Sprintf(`{"greeting": "hello %d"}`, i))
		nextAt(t, ch, int64(i))
	}

	stop()
	d.commit(`{"greeting": "hello again"}`)
	os.Rename(filepath.Join(d.data, daemon.StoreFile), filepath.Join(d.data, "aside"))
	os.Rename(filepath.Join(d.data, daemon.StoreFile+".identity"), filepath.Join(d.data, "aside.identity"))
	d.serveDaemon()
	if cfg := next(t, ch); cfg.Revision != 1 || string(cfg.Data) != `{"greeting": "hello again"}` {
		t.Fatalf("value after the store changed: %+v", cfg)
	}
	if !strings.Contains(logs.String(), `msg="store changed: taking the agent's version" config=app/greeter`) || !strings.Contains(logs.String(), "revision=1") ||
		!strings.Contains(logs.String(), "previous_revision=4") {
		t.Errorf("the client's log:\n%s", logs)
	}
	d.commit(`{"greeting": "hello 2 again"}`)
	if cfg := next(t, ch); cfg.Revision != 2 || string(cfg.Data) != `{"greeting": "hello 2 again"}` {
		t.Fatalf("next value in the new store: %+v", cfg)
	}
}

// TestWatchAcrossOlderStore: the daemon's store is restored from a copy
// made at revision 1 and the branch moved back to that revision's commit,
// while Watch has delivered revision 3. The store is the same one, but
// the agent resynchronises with it, and Watch delivers revision 1 again.
func TestWatchAcrossOlderStore(t *testing.T) {
	d := newDistribution(t)
	c1 := d.commit(`{"greeting": "hello 1"}`)
	stop := d.serveDaemon()
	stop()
	saved, err := os.ReadFile(filepath.Join(d.data, daemon.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	stop = d.serveDaemon()
	d.serveAgent()
	logs := &syncbuf.Buffer{}
	ch := watch(t, newClient(t, Options{AgentURL: d.agent, Logger: slog.New(slog.NewTextHandler(logs, nil))}), "app/greeter")
	nextAt(t, ch, 1)
	d.commit(`{"greeting": "hello 2"}`)
	d.commit(`{"greeting": "hello 3"}`)
	nextAt(t, ch, 3)

	stop()
	if err := os.WriteFile(filepath.Join(d.data, daemon.StoreFile), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.git.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName("master"), plumbing.NewHash(c1))); err != nil {
		t.Fatal(err)
	}
	d.serveDaemon()
	if cfg := next(t, ch); cfg.Revision != 1 || string(cfg.Data) != `{"greeting": "hello 1"}` {
		t.Fatalf("value after the store went back: %+v", cfg)
	}
	if !strings.Contains(logs.String(), `msg="the agent's revision went back: taking its version" config=app/greeter`) {
		t.Errorf("the client's log:\n%s", logs)
	}
}

// TestWatchCacheAcrossStoreChange: with the agent down, Watch reads the
// cache, where the agent left revision 1 of another store after revision
// 5 of the first: it delivers it.
func TestWatchCacheAcrossStoreChange(t *testing.T) {
	dir := t.TempDir()
	write := func(rev int64, store, data string) {
		if err := cache.Write(dir, cache.ConfigVersion{Name: "app/greeter", Revision: rev, Compiled: true, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		if err := cache.WriteState(dir, cache.State{Revision: rev, Store: store, Configs: []string{"app/greeter"}}); err != nil {
			t.Fatal(err)
		}
	}
	write(5, "0123456789abcdef0123456789abcdef", "five")
	ch := watch(t, newClient(t, Options{AgentURL: "http://" + freeAddr(t), CacheDir: dir}), "app/greeter")
	if cfg := next(t, ch); cfg.Revision != 5 || !cfg.FromCache {
		t.Fatalf("first value %+v", cfg)
	}
	write(1, "fedcba9876543210fedcba9876543210", "one")
	if cfg := next(t, ch); cfg.Revision != 1 || string(cfg.Data) != "one" {
		t.Fatalf("value of the new store %+v", cfg)
	}
}
