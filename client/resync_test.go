package client

import (
	"bytes"
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
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/daemon"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestWatchAcrossStoreChange: an application watches a config through a
// real agent of a real daemon, up to revision 4; the daemon's store is
// made again, whose first revision holds a new version. The agent
// resynchronises, and Watch delivers the new version although its
// revision (1) is below the one it delivered, and logs why.
func TestWatchAcrossStoreChange(t *testing.T) {
	repo := t.TempDir()
	g, err := git.PlainInit(repo, false)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	commit := func(data string) {
		p := filepath.Join(repo, "materialized_configs", "app", "greeter.json")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		wt, _ := g.Worktree()
		wt.AddWithOptions(&git.AddOptions{All: true})
		when = when.Add(time.Minute)
		if _, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: when}}); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	serveDaemon := func(addr string) (string, func()) {
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
		stop := func() { once.Do(func() { cancel(); <-done; d.Close() }) }
		t.Cleanup(stop)
		return ln.Addr().String(), stop
	}

	commit(`{"greeting": "hello 1"}`)
	addr, stop := serveDaemon("127.0.0.1:0")
	a, err := agent.New(agent.Config{Daemons: []string{"http://" + addr}, Host: "h", CacheDir: t.TempDir(), HeartbeatTimeout: 6 * hb, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	logs := &logBuffer{}
	ch := watch(t, newClient(t, Options{AgentURL: "http://" + ln.Addr().String(), Logger: slog.New(slog.NewTextHandler(logs, nil))}), "app/greeter")
	if cfg := next(t, ch); cfg.Revision != 1 {
		t.Fatalf("first value %+v", cfg)
	}
	for i := 2; i <= 4; i++ {
		commit(fmt.Sprintf(`{"greeting": "hello %d"}`, i))
		for cfg := next(t, ch); cfg.Revision < int64(i); cfg = next(t, ch) {
		}
	}

	stop()
	commit(`{"greeting": "hello again"}`)
	os.Rename(filepath.Join(data, daemon.StoreFile), filepath.Join(data, "aside"))
	os.Rename(filepath.Join(data, daemon.StoreFile+".identity"), filepath.Join(data, "aside.identity"))
	serveDaemon(addr)
	if cfg := next(t, ch); cfg.Revision != 1 || string(cfg.Data) != `{"greeting": "hello again"}` {
		t.Fatalf("value after the store changed: %+v", cfg)
	}
	if !strings.Contains(logs.String(), `msg="store changed: taking the agent's version" config=app/greeter`) || !strings.Contains(logs.String(), "revision=1") ||
		!strings.Contains(logs.String(), "previous_revision=4") {
		t.Errorf("the client's log:\n%s", logs)
	}
	commit(`{"greeting": "hello 2 again"}`)
	if cfg := next(t, ch); cfg.Revision != 2 || string(cfg.Data) != `{"greeting": "hello 2 again"}` {
		t.Fatalf("next value in the new store: %+v", cfg)
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
