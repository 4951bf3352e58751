package client_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/client"
)

// setup starts what runs outside the application in production: a daemon
// (here agenttest's, over a repository in a temporary directory) with one
// config, and the host's agent. It returns the agent's URL, its cache directory, the repository
// to publish changes to, and a function that stops the agent.
func setup() (agentURL, cacheDir string, repo *agenttest.Repo, stopAgent, cleanup func()) {
	tmp, err := os.MkdirTemp("", "cfg-client-example")
	if err != nil {
		panic(err)
	}
	if repo, err = agenttest.OpenRepo(tmp, time.Second); err != nil {
		panic(err)
	}
	repo.Publish(agenttest.Change{Name: "app/greeter", Type: "Greeter", Data: []byte(`{"greeting": "hello", "rate": 5}`)})
	d, err := agenttest.Listen(repo)
	if err != nil {
		panic(err)
	}
	cacheDir = filepath.Join(tmp, "cache")
	a, err := agent.New(agent.Config{Daemons: []string{d.URL}, Host: "example", CacheDir: cacheDir})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Serve(ctx, ln) }()
	stopAgent = func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	cleanup = func() { stopAgent(); d.Stop(); repo.Close(); os.RemoveAll(tmp) }
	return "http://" + ln.Addr().String(), cacheDir, repo, stopAgent, cleanup
}

// Greeter is the application's view of its config.
type Greeter struct {
	Greeting string `json:"greeting"`
	Rate     int    `json:"rate"`
}

func Example_decode() {
	agentURL, cacheDir, _, _, cleanup := setup()
	defer cleanup()

	c, err := client.New(client.Options{AgentURL: agentURL, CacheDir: cacheDir})
	if err != nil {
		panic(err)
	}
	var g Greeter
	if err := c.Decode(context.Background(), "app/greeter", &g); err != nil {
		panic(err)
	}
	fmt.Printf("%s, at most %d per second\n", g.Greeting, g.Rate)
	// Output: hello, at most 5 per second
}

func Example_watch() {
	agentURL, cacheDir, repo, _, cleanup := setup()
	defer cleanup()
	c, err := client.New(client.Options{AgentURL: agentURL, CacheDir: cacheDir})
	if err != nil {
		panic(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Greeter)
	go c.Watch(ctx, "app/greeter", func(cfg client.Config) {
		var g Greeter
		if err := cfg.Decode(&g); err == nil {
			changes <- g
		}
	})
	fmt.Println((<-changes).Greeting)
	repo.Publish(agenttest.Change{Name: "app/greeter", Type: "Greeter", Data: []byte(`{"greeting": "bonjour", "rate": 5}`)})
	fmt.Println((<-changes).Greeting)
	cancel()
	// Output:
	// hello
	// bonjour
}

func Example_agentDown() {
	agentURL, cacheDir, _, stopAgent, cleanup := setup()
	defer cleanup()
	c, err := client.New(client.Options{AgentURL: agentURL, CacheDir: cacheDir})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	cfg, err := c.Get(ctx, "app/greeter") // the agent fetches and caches it
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Revision, cfg.FromCache)

	stopAgent()
	cfg, err = c.Get(ctx, "app/greeter") // read from the agent's cache
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Revision, cfg.FromCache, string(cfg.Data))
	// Output:
	// 1 false
	// 1 true {"greeting": "hello", "rate": 5}
}
