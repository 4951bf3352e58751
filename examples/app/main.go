// Command app is a tiny service configured through cfg: it reads the
// config app/greeter ({"greeting": "hello", "rate_per_sec": 5}) through
// the host's agent with the client library, serves GET /hello?name=NAME
// with the greeting, at most rate_per_sec requests per second, and picks
// up a new config without a restart. cfg init makes a config repository
// holding app/greeter (README, "Your own repository").
//
//	go run ./examples/app -agent http://127.0.0.1:7481 -cache-dir /var/cache/cfg
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfg-dev/cfg/client"
)

// Settings is the app's config.
type Settings struct {
	Greeting   string  `json:"greeting"`
	RatePerSec float64 `json:"rate_per_sec"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	agentURL := flag.String("agent", "http://127.0.0.1:7481", "the cfg agent's URL")
	cacheDir := flag.String("cache-dir", "", "the cfg agent's cache directory, read when the agent is down")
	name := flag.String("config", "app/greeter", "the config to read")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := client.New(client.Options{AgentURL: *agentURL, CacheDir: *cacheDir})
	if err != nil {
		log.Fatal(err)
	}
	s := newServer()
	go s.watch(ctx, c, *name)
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.ready(wait); err != nil {
		log.Fatalf("no config %q: %v", *name, err)
	}
	srv := &http.Server{Addr: *listen, Handler: s}
	go func() { <-ctx.Done(); srv.Close() }()
	log.Printf("serving on %s", *listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// server serves /hello with the current settings.
type server struct {
	settings atomic.Pointer[Settings]
	loaded   chan struct{} // closed when the first settings arrive
	once     sync.Once
	now      func() time.Time

	mu     sync.Mutex // the rate limiter: a token bucket of one second's requests
	tokens float64
	last   time.Time
}

func newServer() *server {
	return &server{loaded: make(chan struct{}), now: time.Now}
}

// watch keeps the settings current until ctx is done.
func (s *server) watch(ctx context.Context, c *client.Client, name string) {
	c.Watch(ctx, name, func(cfg client.Config) {
		var st Settings
		if err := cfg.Decode(&st); err != nil {
			log.Printf("config %s revision %d: %v (keeping the previous settings)", name, cfg.Revision, err)
			return
		}
		s.settings.Store(&st)
		log.Printf("config %s revision %d: %+v (from cache: %v)", name, cfg.Revision, st, cfg.FromCache)
		s.once.Do(func() { close(s.loaded) })
	})
}

// ready waits for the first settings.
func (s *server) ready(ctx context.Context) error {
	select {
	case <-s.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allow takes a token from the bucket, refilled at rate per second.
func (s *server) allow(rate float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.last.IsZero() {
		s.tokens += now.Sub(s.last).Seconds() * rate
	} else {
		s.tokens = rate
	}
	s.tokens = min(s.tokens, max(rate, 1))
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hello" {
		http.NotFound(w, r)
		return
	}
	st := s.settings.Load()
	if st == nil {
		http.Error(w, "not configured yet", http.StatusServiceUnavailable)
		return
	}
	if !s.allow(st.RatePerSec) {
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(w, "%s, %s!\n", st.Greeting, name)
}
