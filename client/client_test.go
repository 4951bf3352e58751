package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
)

const hb = 50 * time.Millisecond

func greeter(rev int) agenttest.Change {
	return agenttest.Change{Name: "app/greeter", Type: "Greeter", Data: fmt.Appendf(nil, `{"greeting": "hello %d"}`, rev)}
}

// startAgent runs an agent for d on addr ("127.0.0.1:0" for any port)
// and returns its URL and a function that stops it.
func startAgent(t *testing.T, addr, dir string, d *agenttest.Daemon) (string, func()) {
	t.Helper()
	a, err := agent.New(agent.Config{Daemons: []string{d.URL}, Host: "h", CacheDir: dir, HeartbeatTimeout: 6 * hb, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// freeAddr returns an address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	opts.PollInterval = 10 * time.Millisecond
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	c.idleTimeout = 6 * hb
	return c
}

func TestGet(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(greeter(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	url, _ := startAgent(t, "127.0.0.1:0", dir, d)
	c := newClient(t, Options{AgentURL: url, CacheDir: dir})
	ctx := context.Background()

	cfg, err := c.Get(ctx, "app/greeter")
	want := Config{Name: "app/greeter", Revision: 1, Commit: repo.Commit(1), Type: "Greeter", Data: []byte(`{"greeting": "hello 1"}`)}
	if err != nil || !equal(cfg, want) {
		t.Errorf("Get = %+v, %v; want %+v", cfg, err, want)
	}
	var v struct{ Greeting string }
	if err := c.Decode(ctx, "app/greeter", &v); err != nil || v.Greeting != "hello 1" {
		t.Errorf("Decode = %+v, %v", v, err)
	}
	var n int
	if err := c.Decode(ctx, "app/greeter", &n); err == nil || !strings.HasPrefix(err.Error(), `decoding config "app/greeter": json: cannot unmarshal object`) {
		t.Errorf("Decode into int: %v", err)
	}
	_, err = c.Get(ctx, "app/nope")
	if !errors.Is(err, ErrNotFound) || err.Error() != `config "app/nope": config not found: agent: unknown config "app/nope"` {
		t.Errorf("Get(app/nope) = %v", err)
	}
	if _, err := c.Get(ctx, "/etc/passwd"); err == nil || err.Error() != `config name "/etc/passwd": empty element (want slash-separated names)` {
		t.Errorf("Get(/etc/passwd) = %v", err)
	}
	// Watch refuses a bad name before it asks the agent anything (with the
	// context done, it would otherwise return the context's error).
	done, cancel := context.WithCancel(ctx)
	cancel()
	err = c.Watch(done, "a,b", func(cfg Config) { t.Errorf("Watch(a,b) delivered %+v", cfg) })
	if want := `config name "a,b": character ',' not allowed (want ASCII letters, digits and . _ - + @)`; err == nil || err.Error() != want {
		t.Errorf("Watch(a,b) = %v, want %s", err, want)
	}
}

func equal(a, b Config) bool {
	return a.Name == b.Name && a.Revision == b.Revision && a.Commit == b.Commit && a.Type == b.Type &&
		string(a.Data) == string(b.Data) && a.FromCache == b.FromCache
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		opts    Options
		wantErr string
	}{
		{Options{}, "client: neither an agent URL nor a cache directory"},
		{Options{AgentURL: "127.0.0.1:1"}, `client: agent URL "127.0.0.1:1": want http://host:port`},
	} {
		if _, err := New(tc.opts); err == nil || err.Error() != tc.wantErr {
			t.Errorf("New(%+v) = %v, want %s", tc.opts, err, tc.wantErr)
		}
	}
}

func TestGetFallsBackToCache(t *testing.T) {
	dir := t.TempDir()
	cv := cache.ConfigVersion{Name: "app/greeter", Revision: 7, Commit: "c7", Type: "Greeter", Data: []byte(`{}`)}
	if err := cache.Write(dir, cv); err != nil {
		t.Fatal(err)
	}
	want := Config{Name: "app/greeter", Revision: 7, Commit: "c7", Type: "Greeter", Data: []byte(`{}`), FromCache: true}
	ctx := context.Background()

	// Connection refused.
	c := newClient(t, Options{AgentURL: "http://" + freeAddr(t), CacheDir: dir})
	if cfg, err := c.Get(ctx, "app/greeter"); err != nil || !equal(cfg, want) {
		t.Errorf("Get with the agent down = %+v, %v", cfg, err)
	}
	_, err := c.Get(ctx, "app/other")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "agent unreachable: ") || !strings.Contains(err.Error(), "; cache: config not found") {
		t.Errorf("Get uncached with the agent down = %v", err)
	}

	// An agent that accepts but never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c = newClient(t, Options{AgentURL: "http://" + ln.Addr().String(), CacheDir: dir, HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
	if cfg, err := c.Get(ctx, "app/greeter"); err != nil || !equal(cfg, want) {
		t.Errorf("Get with the agent hung = %+v, %v", cfg, err)
	}

	// Without an agent at all.
	c = newClient(t, Options{CacheDir: dir})
	if cfg, err := c.Get(ctx, "app/greeter"); err != nil || !equal(cfg, want) {
		t.Errorf("Get from the cache alone = %+v, %v", cfg, err)
	}
	// A caller's cancellation is not an agent failure.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c = newClient(t, Options{AgentURL: "http://" + ln.Addr().String(), CacheDir: dir})
	if _, err := c.Get(cctx, "app/greeter"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context = %v", err)
	}
}

// watch runs Watch and sends what it delivers on a channel.
func watch(t *testing.T, c *Client, name string) <-chan Config {
	ch := make(chan Config, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, name, func(cfg Config) { ch <- cfg }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
	})
	return ch
}

func next(t *testing.T, ch <-chan Config) Config {
	t.Helper()
	select {
	case cfg := <-ch:
		return cfg
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for Watch")
		return Config{}
	}
}

func TestWatchSeesChangesInOrder(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(greeter(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	url, _ := startAgent(t, "127.0.0.1:0", dir, d)
	ch := watch(t, newClient(t, Options{AgentURL: url, CacheDir: dir}), "app/greeter")
	if cfg := next(t, ch); cfg.Revision != 1 || cfg.FromCache {
		t.Fatalf("first value = %+v", cfg)
	}
	for i := 2; i <= 20; i++ {
		repo.Publish(greeter(i))
		repo.Publish(agenttest.Change{Name: "unrelated", Data: fmt.Appendf(nil, "x%d", i)})
	}
	var got []int64
	for len(got) < 19 {
		cfg := next(t, ch)
		if want := fmt.Sprintf(`{"greeting": "hello %d"}`, cfg.Revision/2+1); string(cfg.Data) != want {
			t.Errorf("revision %d: data %s, want %s", cfg.Revision, cfg.Data, want)
		}
		got = append(got, cfg.Revision)
		if cfg.Revision == 38 {
			break
		}
	}
	var want []int64
	for i := int64(2); i <= 20; i++ {
		want = append(want, 2*i-2)
	}
	if !slices.Equal(got, want) {
		t.Errorf("revisions = %v, want %v", got, want)
	}
}

func TestWatchAcrossAgentOutage(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(greeter(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	addr := freeAddr(t)
	c := newClient(t, Options{AgentURL: "http://" + addr, CacheDir: dir})

	// No agent and an empty cache: Watch waits.
	ch := watch(t, c, "app/greeter")
	time.Sleep(50 * time.Millisecond)
	select {
	case cfg := <-ch:
		t.Fatalf("delivered %+v with nothing to read", cfg)
	default:
	}

	// The agent comes up and fetches the config.
	_, stop := startAgent(t, addr, dir, d)
	if cfg := next(t, ch); cfg.Revision != 1 || cfg.FromCache {
		t.Fatalf("value from the agent = %+v", cfg)
	}

	// The agent goes down; Watch reads the cache, where a change lands.
	stop()
	if err := cache.Write(dir, cache.ConfigVersion{Name: "app/greeter", Revision: 2, Type: "Greeter", Data: []byte(`{"greeting": "hello 2"}`)}); err != nil {
		t.Fatal(err)
	}
	if cfg := next(t, ch); cfg.Revision != 2 || !cfg.FromCache {
		t.Fatalf("value from the cache = %+v", cfg)
	}

	// The agent is back, and so is the stream, after revision 2.
	repo.Publish(greeter(2))
	repo.Publish(greeter(3))
	startAgent(t, addr, dir, d)
	if cfg := next(t, ch); cfg.Revision != 3 || cfg.FromCache || string(cfg.Data) != `{"greeting": "hello 3"}` {
		t.Fatalf("value after the agent's return = %+v", cfg)
	}
	repo.Publish(greeter(4))
	if cfg := next(t, ch); cfg.Revision != 4 {
		t.Fatalf("next value = %+v", cfg)
	}
	select {
	case cfg := <-ch:
		t.Errorf("unexpected extra value %+v", cfg)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestGetDamagedCache: with the agent down, data in the cache that fails
// its checksum (32668 cached for 32768) is an error, never a config.
func TestGetDamagedCache(t *testing.T) {
	dir := t.TempDir()
	cv := cache.ConfigVersion{Name: "app/greeter", Revision: 7, Commit: "c7", Type: "Greeter", Data: []byte(`{"port": 32768}`)}
	if err := cache.Write(dir, cv); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "data", "app", "greeter.sha256-*"))
	if len(files) != 1 {
		t.Fatalf("data files: %q", files)
	}
	if err := os.WriteFile(files[0], []byte(`{"port": 32668}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, Options{AgentURL: "http://" + freeAddr(t), CacheDir: dir})
	cfg, err := c.Get(context.Background(), "app/greeter")
	want := fmt.Sprintf("; cache: config \"app/greeter\": cache damaged: %s: got sha256 %x, want %x", files[0],
		sha256.Sum256([]byte(`{"port": 32668}`)), sha256.Sum256(cv.Data))
	if !errors.Is(err, cache.ErrDamaged) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Get = %+v, %v\nwant an error ending in %s", cfg, err, want)
	}
}
