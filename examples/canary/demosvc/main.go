// Command demosvc is the canary demo's service. It reads its config,
// demo/service ({"greeting": ..., "work_ms": 5, "timeout_ms": 50}), through
// the host's agent with the client library and follows every change without
// a restart, canary overrides included. On one listener it serves:
//
//	GET /         simulated work: work_ms times a random factor in [0.5, 1.5);
//	              work longer than timeout_ms is cut off there and answered
//	              with 503, anything else with 200 and the greeting; once
//	              the service has run a config for fail_after_seconds (if
//	              set), every request fails with 503
//	GET /metrics  Prometheus metrics: demo_requests_total,
//	              demo_requests_failed_total, demo_request_duration_seconds
//	              (histogram) and demo_config_revision
//	GET /config   the config it runs: {"revision": N, "commit": "...", "config": {...}, "since": ...}
//
// Until the first config arrives, / and /config answer 503 "no config yet".
//
//	go run ./examples/canary/demosvc -listen 127.0.0.1:9101 -agent http://127.0.0.1:7481 -cache-dir /var/cache/cfg
//
// With -agent-addr-file the service starts before its agent: it listens at
// once (-addr-file says where) and reads its agent's address from the file
// cfg agent --addr-file writes, so that the agent can be given the
// service's metrics URL and both can listen on ports the system picks.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cfg-dev/cfg/client"
)

// Demo is the service's config (schemas/demo.thrift).
type Demo struct {
	Greeting  string `json:"greeting"`
	WorkMS    int    `json:"work_ms"`
	TimeoutMS int    `json:"timeout_ms"`
	// FailAfterSeconds, if positive, makes every request fail once the
	// service has run the config that long.
	FailAfterSeconds int `json:"fail_after_seconds"`
}

// Running is the config the service runs, as GET /config shows it.
type Running struct {
	Revision int64  `json:"revision"`
	Commit   string `json:"commit"`
	// Override is the canary override's ID while one is served.
	Override        string `json:"override,omitempty"`
	OverrideVersion int64  `json:"override_version,omitempty"`
	FromCache       bool   `json:"from_cache,omitempty"`
	Config          Demo   `json:"config"`
	// Since is when the service began running this config (a new
	// revision or override with the same content keeps it).
	Since time.Time `json:"since"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	addrFile := flag.String("addr-file", "", "write the address actually listened on to this file")
	agentURL := flag.String("agent", "http://127.0.0.1:7481", "the cfg agent's URL")
	agentAddrFile := flag.String("agent-addr-file", "", "instead of -agent, read the agent's address from this file (cfg agent --addr-file), waiting until it is written")
	cacheDir := flag.String("cache-dir", "", "the cfg agent's cache directory, read when the agent is down")
	name := flag.String("config", "demo/service", "the config to read")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := writeFileAtomic(*addrFile, ln.Addr().String()+"\n"); err != nil {
			log.Fatal(err)
		}
	}
	s := newServer()
	go func() {
		url := *agentURL
		if *agentAddrFile != "" {
			addr, err := waitAddr(ctx, *agentAddrFile)
			if err != nil {
				log.Printf("the agent's address: %v", err)
				return
			}
			url = "http://" + addr
		}
		c, err := client.New(client.Options{AgentURL: url, CacheDir: *cacheDir})
		if err != nil {
			log.Fatal(err)
		}
		s.watch(ctx, c, *name)
	}()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		// Let the requests in flight finish, for at most 5 seconds.
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("serving on http://%s", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-drained
	log.Printf("stopped")
}

// waitAddr returns the address in file, waiting until the file holds one
// or ctx is done.
func waitAddr(ctx context.Context, file string) (string, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(file)
		if addr := strings.TrimSpace(string(data)); err == nil && addr != "" {
			return addr, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s: %w", file, ctx.Err())
		case <-tick.C:
		}
	}
}

// writeFileAtomic writes data to a temporary file beside name and renames
// it, so readers never see a partial file.
func writeFileAtomic(name, data string) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".addr-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// server serves /, /metrics and /config with the current config.
type server struct {
	running atomic.Pointer[Running]
	mux     *http.ServeMux

	requests prometheus.Counter
	failed   prometheus.Counter
	duration prometheus.Histogram
	revision prometheus.Gauge
}

func newServer() *server {
	s := &server{
		mux: http.NewServeMux(),
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "demo_requests_total",
			Help: "Requests to /.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "demo_requests_failed_total",
			Help: "Requests to / that failed: timed out, before the first config, or abandoned by the client.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "demo_request_duration_seconds",
			Help: "Latency of requests to /, failed ones included.",
			// 1 ms to 100 ms, finest around demo/service's 2.5 to 7.5 ms.
			Buckets: []float64{0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1},
		}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "demo_config_revision",
			Help: "The revision of the config the service runs (0 before the first).",
		}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.requests, s.failed, s.duration, s.revision)
	s.mux.HandleFunc("GET /{$}", s.serveRoot)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /config", s.serveConfig)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// watch keeps the config current until ctx is done.
func (s *server) watch(ctx context.Context, c *client.Client, name string) {
	c.Watch(ctx, name, s.apply)
}

// apply makes cfg the running config, unless it is unusable.
func (s *server) apply(cfg client.Config) {
	var d Demo
	if err := cfg.Decode(&d); err != nil {
		log.Printf("config %s revision %d: %v (keeping the previous config)", cfg.Name, cfg.Revision, err)
		return
	}
	if d.WorkMS < 0 || d.TimeoutMS <= 0 {
		log.Printf("config %s revision %d: unusable %+v (keeping the previous config)", cfg.Name, cfg.Revision, d)
		return
	}
	since := time.Now()
	if prev := s.running.Load(); prev != nil && prev.Config == d {
		since = prev.Since
	}
	s.running.Store(&Running{
		Revision:        cfg.Revision,
		Commit:          cfg.Commit,
		Override:        cfg.Override,
		OverrideVersion: cfg.OverrideVersion,
		FromCache:       cfg.FromCache,
		Config:          d,
		Since:           since,
	})
	s.revision.Set(float64(cfg.Revision))
	what := ""
	if cfg.Override != "" {
		what = fmt.Sprintf(" (canary override %s version %d)", cfg.Override, cfg.OverrideVersion)
	}
	log.Printf("config %s revision %d%s: %+v (from cache: %v)", cfg.Name, cfg.Revision, what, d, cfg.FromCache)
}

func (s *server) serveRoot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ok := false
	defer func() {
		s.requests.Inc()
		if !ok {
			s.failed.Inc()
		}
		s.duration.Observe(time.Since(start).Seconds())
	}()
	run := s.running.Load()
	if run == nil {
		http.Error(w, "no config yet", http.StatusServiceUnavailable)
		return
	}
	cfg := run.Config
	if after := time.Duration(cfg.FailAfterSeconds) * time.Second; after > 0 && time.Since(run.Since) > after {
		http.Error(w, fmt.Sprintf("failing: this config has run for more than %v", after), http.StatusServiceUnavailable)
		return
	}
	factor := 0.5 + rand.Float64() // in [0.5, 1.5)
	work := time.Duration(float64(cfg.WorkMS) * factor * float64(time.Millisecond))
	limit := time.Duration(cfg.TimeoutMS) * time.Millisecond
	t := time.NewTimer(min(work, limit))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // the client is gone
	}
	if work > limit {
		http.Error(w, fmt.Sprintf("timed out after %v (the work needed %v)", limit, work.Round(10*time.Microsecond)), http.StatusServiceUnavailable)
		return
	}
	ok = true
	fmt.Fprintln(w, cfg.Greeting)
}

func (s *server) serveConfig(w http.ResponseWriter, r *http.Request) {
	run := s.running.Load()
	if run == nil {
		http.Error(w, "no config yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(run)
}
