package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/starter"
)

func greeter(data string) agenttest.Change {
	return agenttest.Change{Name: "app/greeter", Type: "Greeter", Data: []byte(data)}
}

// startHost starts a daemon serving repo and a host's agent following it,
// and returns a context that ends with the test and a client of the agent
// caching in the agent's cache directory.
func startHost(t *testing.T, repo *agenttest.Repo) (context.Context, *client.Client) {
	t.Helper()
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	a, err := agent.New(agent.Config{Daemons: []string{d.URL}, Host: "app-1", CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := client.New(client.Options{AgentURL: "http://" + ln.Addr().String(), CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, c
}

func TestAppFollowsItsConfig(t *testing.T) {
	// A daemon and the host's agent.
	repo := agenttest.NewRepo(t, 50*time.Millisecond)
	repo.Publish(greeter(`{"greeting": "hello", "rate_per_sec": 2}`))
	ctx, c := startHost(t, repo)

	// The app, on a clock the test moves.
	s := newServer()
	clock := time.Unix(1e9, 0)
	s.now = func() time.Time { return clock }
	go s.watch(ctx, c, "app/greeter")
	if err := s.ready(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	hello := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/hello?name=bob")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	for i, want := range []int{200, 200, 429} {
		if code, body := hello(); code != want || (code == 200 && body != "hello, bob!\n") {
			t.Errorf("request %d: %d %q, want %d", i, code, body, want)
		}
	}
	clock = clock.Add(time.Second)

	// A new config, no restart.
	repo.Publish(greeter(`{"greeting": "bonjour", "rate_per_sec": 2}`))
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := hello()
		if code == 200 && body == "bonjour, bob!\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %q", code, body)
		}
		clock = clock.Add(time.Second)
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAppReadsTheStarterConfig checks that the app reads the config
// app/greeter that cfg init makes (starter), as the README's "Your own
// repository" serves it.
func TestAppReadsTheStarterConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "myconfigs")
	if _, err := starter.Init(context.Background(), dir, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "materialized_configs", "app", "greeter.json"))
	if err != nil {
		t.Fatal(err)
	}
	repo := agenttest.NewRepo(t, 50*time.Millisecond)
	repo.Publish(greeter(string(data)))
	ctx, c := startHost(t, repo)
	s := newServer()
	go s.watch(ctx, c, "app/greeter")
	if err := s.ready(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := *s.settings.Load(), (Settings{Greeting: "hello", RatePerSec: 5}); got != want {
		t.Errorf("settings = %+v, want %+v", got, want)
	}
}
