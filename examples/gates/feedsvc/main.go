// Command feedsvc is the feature gates example's service. It decides, for
// each request, whether the user gets the new feed ranker by evaluating the
// gate feed/new_ranker through OpenFeature, with cfg's provider (package
// gate/provider), in-process; it reads its settings (feed/settings) as
// OpenFeature flags too. Both follow every change without a restart,
// canary overrides included, and keep working from the agent's cache when
// the agent is down. On one listener it serves:
//
//	GET /feed?user=ID&country=US&app_version=2.4.0&employee=true
//	              which ranker served the user and why: {"user": ..., "ranker":
//	              "new" or "classic", "reason": "SPLIT", "rule": "ramp",
//	              "revision": N, "page_size": 20}, with "override" while a
//	              canary's override decides, "from_cache" when the gate was
//	              read from the agent's cache, and "error" when the gate
//	              failed closed (the classic ranker then serves). The ranker
//	              works classic_work_ms or new_work_ms times a random factor
//	              in [0.5, 1.5); work longer than timeout_ms is cut off there
//	              and answered with 503. The client's address is the unit's
//	              "ip" attribute, which the application's restraint
//	              internal_network reads.
//	GET /         /feed for a random one of a million synthetic users in the
//	              US on app 2.4.0: what a load driver (examples/canary/load)
//	              asks for
//	GET /metrics  Prometheus metrics: feed_requests_total and
//	              feed_requests_failed_total (by ranker),
//	              feed_request_duration_seconds (histogram)
//
//	go run ./examples/gates/feedsvc -listen 127.0.0.1:9201 -agent http://127.0.0.1:7481 -cache-dir /var/cache/cfg
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/gate/provider"
)

// The gate and the config feedsvc evaluates.
const (
	gateName     = "feed/new_ranker"
	settingsName = "feed/settings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	agentURL := flag.String("agent", "http://127.0.0.1:7481", "the cfg agent's URL")
	cacheDir := flag.String("cache-dir", "", "the cfg agent's cache directory, read when the agent is down")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := client.New(client.Options{AgentURL: *agentURL, CacheDir: *cacheDir})
	if err != nil {
		log.Fatal(err)
	}
	p, err := newProvider(c)
	if err != nil {
		log.Fatal(err)
	}
	// Flags that fail to load fail their evaluations (and the classic
	// ranker serves); the service still starts.
	if err := openfeature.SetProviderAndWait(p); err != nil {
		log.Printf("feature flags: %v", err)
	}
	defer openfeature.Shutdown()
	changed := func(e openfeature.EventDetails) { log.Printf("flags changed: %v (%s)", e.FlagChanges, e.Message) }
	openfeature.AddHandler(openfeature.ProviderConfigChange, &changed)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: newServer(openfeature.NewDefaultClient()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("serving on http://%s", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newProvider returns the OpenFeature provider of the gate and the
// settings, with the application's restraint.
func newProvider(c *client.Client) (*provider.Provider, error) {
	return provider.New(c, provider.Options{
		Gates:      []string{gateName},
		Configs:    []string{settingsName},
		Restraints: map[string]gate.NewRestraint{"internal_network": internalNetwork},
	})
}

// internalNetwork is the restraint internal_network(cidr = ...) of
// lib/restraints.cinc: the unit's "ip" attribute is in cidr. A cidr that
// does not parse stops the gate from loading; an ip that does not parse
// fails the check closed.
func internalNetwork(params map[string]string) (gate.Restraint, error) {
	prefix, err := netip.ParsePrefix(params["cidr"])
	if err != nil {
		return nil, fmt.Errorf("cidr: %w", err)
	}
	return func(u gate.Unit) (bool, error) {
		a, ok := u.Attr("ip")
		if !ok {
			return false, nil
		}
		ip, err := netip.ParseAddr(a.Str())
		if err != nil {
			return false, fmt.Errorf("attribute \"ip\": got %s %q, want an IP address", a.Kind(), a.Str())
		}
		return prefix.Contains(ip.Unmap()), nil
	}, nil
}

// server serves /feed and /metrics.
type server struct {
	flags    *openfeature.Client
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	failed   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newServer(flags *openfeature.Client) *server {
	s := &server{
		flags: flags,
		mux:   http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feed_requests_total",
			Help: "Requests to /feed, by the ranker that served them.",
		}, []string{"ranker"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feed_requests_failed_total",
			Help: "Requests to /feed that timed out, by ranker.",
		}, []string{"ranker"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "feed_request_duration_seconds",
			Help:    "Latency of requests to /feed, failed ones included.",
			Buckets: []float64{0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1},
		}),
	}
	// Both rankers' series exist from the start, at 0: a canary reads an
	// error ratio as soon as there are requests, failed or not.
	for _, r := range []string{"classic", "new"} {
		s.requests.WithLabelValues(r)
		s.failed.WithLabelValues(r)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.requests, s.failed, s.duration)
	s.mux.HandleFunc("GET /feed", s.serveFeed)
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		r.URL.RawQuery = fmt.Sprintf("user=user-%d&country=US&app_version=2.4.0", rand.IntN(1_000_000))
		s.serveFeed(w, r)
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Feed is the answer of /feed.
type Feed struct {
	User     string `json:"user"`
	Ranker   string `json:"ranker"`
	Reason   string `json:"reason"`
	Rule     string `json:"rule,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Override string `json:"override,omitempty"`
	// FromCache says the gate was read from the agent's cache, the agent
	// being down when feedsvc loaded it.
	FromCache bool   `json:"from_cache,omitempty"`
	PageSize  int64  `json:"page_size"`
	Error     string `json:"error,omitempty"`
}

// evaluationContext is the request as OpenFeature's evaluation context: the
// user is the targeting key (the gate's unit ID).
func evaluationContext(r *http.Request) openfeature.EvaluationContext {
	q := r.URL.Query()
	attrs := map[string]any{}
	for _, k := range []string{"country", "app_version"} {
		if v := q.Get(k); v != "" {
			attrs[k] = v
		}
	}
	if v := q.Get("employee"); v != "" {
		// A value that is not a boolean goes as it is: the gate then
		// fails closed and the answer says why.
		if b, err := strconv.ParseBool(v); err == nil {
			attrs["employee"] = b
		} else {
			attrs["employee"] = v
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs["ip"] = host
	}
	return openfeature.NewEvaluationContext(q.Get("user"), attrs)
}

func (s *server) serveFeed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	d, err := s.flags.BooleanValueDetails(ctx, gateName, false, evaluationContext(r))
	f := Feed{User: r.URL.Query().Get("user"), Ranker: "classic", Reason: string(d.Reason)}
	if d.Value {
		f.Ranker = "new"
	}
	if err != nil {
		f.Error = d.ErrorMessage
	}
	f.Rule, _ = d.FlagMetadata.GetString("rule")
	f.Revision, _ = d.FlagMetadata.GetInt("revision")
	f.Override, _ = d.FlagMetadata.GetString("override")
	f.FromCache, _ = d.FlagMetadata.GetBool("from_cache")
	none := openfeature.EvaluationContext{}
	f.PageSize = s.flags.Int(ctx, settingsName+":page_size", 20, none)
	work := s.flags.Int(ctx, settingsName+":"+f.Ranker+"_work_ms", 2, none)
	timeout := time.Duration(s.flags.Int(ctx, settingsName+":timeout_ms", 50, none)) * time.Millisecond

	s.requests.WithLabelValues(f.Ranker).Inc()
	defer func() { s.duration.Observe(time.Since(start).Seconds()) }()
	d2 := time.Duration(float64(work) * (0.5 + rand.Float64()) * float64(time.Millisecond))
	if d2 > timeout {
		time.Sleep(timeout)
		s.failed.WithLabelValues(f.Ranker).Inc()
		http.Error(w, "ranking timed out", http.StatusServiceUnavailable)
		return
	}
	time.Sleep(d2)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(f)
}
