package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// t0 is the time of the first scrape of the tests that feed exact
// scrape times.
var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

// approx compares samples' values up to rounding.
var approx = cmpopts.EquateApprox(0, 1e-12)

// target is a host's metrics endpoint on 127.0.0.1 serving a registry
// through promhttp; setting another registry simulates a restart.
type target struct {
	*httptest.Server
	reg atomic.Pointer[prometheus.Registry]
}

func newTarget(t *testing.T, reg *prometheus.Registry) *target {
	tg := &target{}
	tg.reg.Store(reg)
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(tg.reg.Load(), promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(w, r)
	}))
	t.Cleanup(tg.Close)
	return tg
}

// scrapeAt scrapes h over HTTP as Collect does, but records the scrape as
// made at at.
func scrapeAt(t *testing.T, s *Scrape, h Host, at time.Time) {
	t.Helper()
	fams, err := s.fetch(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	s.add(h.Name, at, fams)
}

// parse parses a text exposition.
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing %q: %v", text, err)
	}
	return fams
}

// values returns the samples of q for hosts at now, failing on an error.
func values(t *testing.T, s *Scrape, q Query, now time.Time, hosts ...Host) []Sample {
	t.Helper()
	got, err := s.Values(context.Background(), q, hosts, now)
	if err != nil {
		t.Fatalf("Values(%+v): %v", q, err)
	}
	return got
}

func TestCounterRate(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests."}, []string{"code"})
	reg.MustRegister(reqs)
	reqs.WithLabelValues("200")
	tg := newTarget(t, reg)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(tg.Client(), time.Second)

	scrapeAt(t, s, web, t0) // 200: 0
	reqs.WithLabelValues("200").Add(10)
	reqs.WithLabelValues("500").Add(4)
	scrapeAt(t, s, web, t0.Add(2*time.Second)) // 200: 10, 500: 4 (a new series)
	reqs.WithLabelValues("200").Add(30)
	reqs.WithLabelValues("500").Add(4)
	scrapeAt(t, s, web, t0.Add(4*time.Second)) // 200: 40, 500: 8

	now := t0.Add(4 * time.Second)
	for _, tc := range []struct {
		window time.Duration
		now    time.Time
		want   []Sample
	}{
		// 200: 40 in 4 s; 500: 4 in 2 s (its first sample is at 2 s).
		{10 * time.Second, now, []Sample{{"web-1", 40.0/4 + 4.0/2}}},
		// (1 s, 4 s] holds the scrapes at 2 and 4 s: 30 in 2 s, 4 in 2 s.
		{3 * time.Second, now, []Sample{{"web-1", 30.0/2 + 4.0/2}}},
		// A single scrape in the window: no rate.
		{time.Second, now, nil},
		// Scrapes after now do not count: at 1 s, only the first one.
		{10 * time.Second, t0.Add(time.Second), nil},
	} {
		got := values(t, s, Query{Metric: "demo_requests_total", Window: tc.window}, tc.now, web)
		if diff := cmp.Diff(tc.want, got, approx); diff != "" {
			t.Errorf("window %v at %v (-want +got):\n%s", tc.window, tc.now.Sub(t0), diff)
		}
	}

	// The host restarts: a new registry, its counter back from 0.
	reg = prometheus.NewRegistry()
	reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests."}, []string{"code"})
	reg.MustRegister(reqs)
	reqs.WithLabelValues("200").Add(6)
	tg.reg.Store(reg)
	scrapeAt(t, s, web, t0.Add(6*time.Second)) // 200: 6
	now = t0.Add(6 * time.Second)
	// 200: 10 + 30 + 6 (restarted from 0) in 6 s; 500: still 4 in 2 s.
	got := values(t, s, Query{Metric: "demo_requests_total", Window: 10 * time.Second}, now, web)
	if diff := cmp.Diff([]Sample{{"web-1", 46.0/6 + 4.0/2}}, got, approx); diff != "" {
		t.Errorf("rate across a reset (-want +got):\n%s", diff)
	}
	// (3 s, 6 s]: 200 went from 40 to 6, that is 6 in 2 s; 500 has a
	// single sample.
	got = values(t, s, Query{Metric: "demo_requests_total", Window: 3 * time.Second}, now, web)
	if diff := cmp.Diff([]Sample{{"web-1", 3}}, got, approx); diff != "" {
		t.Errorf("rate right after a reset (-want +got):\n%s", diff)
	}

	s.Reset()
	if got := values(t, s, Query{Metric: "demo_requests_total", Window: 10 * time.Second}, now, web); got != nil {
		t.Errorf("rate after Reset: %v, want none", got)
	}
}

// TestGauge scrapes real endpoints with Collect, while Values is called
// concurrently.
func TestGauge(t *testing.T) {
	var hosts []Host
	var inFlight []*prometheus.GaugeVec
	for i := range 3 {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "demo_in_flight", Help: "Requests in flight."}, []string{"worker"})
		g.WithLabelValues("a").Set(float64(i))
		g.WithLabelValues("b").Set(10)
		reg.MustRegister(g, prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "demo_untyped", Help: "An untyped value."}, func() float64 { return 42 }))
		inFlight = append(inFlight, g)
		hosts = append(hosts, Host{Name: fmt.Sprintf("web-%d", 3-i), URL: newTarget(t, reg).URL})
	}
	s := NewScrape(nil, 5*time.Second)
	ctx := context.Background()
	q := Query{Metric: "demo_in_flight", Window: time.Minute}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // readers while scrapes are recorded, for the race detector
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := s.Values(ctx, q, hosts, time.Now()); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	if err := s.Collect(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	inFlight[0].WithLabelValues("a").Set(5)
	if err := s.Collect(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	now := time.Now()
	// The newest value, summed over the workers; sorted by host name.
	want := []Sample{{"web-1", 2 + 10}, {"web-2", 1 + 10}, {"web-3", 5 + 10}}
	if diff := cmp.Diff(want, values(t, s, q, now, hosts...)); diff != "" {
		t.Errorf("gauges (-want +got):\n%s", diff)
	}
	want = []Sample{{"web-1", 42}, {"web-2", 42}, {"web-3", 42}}
	if diff := cmp.Diff(want, values(t, s, Query{Metric: "demo_untyped", Window: time.Minute}, now, hosts...)); diff != "" {
		t.Errorf("untyped (-want +got):\n%s", diff)
	}
	// Only the hosts asked for.
	if diff := cmp.Diff([]Sample{{"web-2", 11}}, values(t, s, q, now, hosts[1])); diff != "" {
		t.Errorf("one host (-want +got):\n%s", diff)
	}
	// A metric no host exposes.
	if got := values(t, s, Query{Metric: "demo_nope", Window: time.Minute}, now, hosts...); got != nil {
		t.Errorf("a missing metric: %v, want no sample", got)
	}
	// A gauge last scraped before the window has no value.
	if got := values(t, s, q, now.Add(2*time.Minute), hosts...); got != nil {
		t.Errorf("a gauge scraped before the window: %v, want no sample", got)
	}
}

func TestHistogramQuantile(t *testing.T) {
	newLatency := func() (*prometheus.Registry, *prometheus.HistogramVec) {
		reg := prometheus.NewRegistry()
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "demo_latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 0.5, 1}}, []string{"path"})
		reg.MustRegister(h)
		return reg, h
	}
	reg, lat := newLatency()
	observe := func(path string, v float64, n int) {
		for range n {
			lat.WithLabelValues(path).Observe(v)
		}
	}
	tg := newTarget(t, reg)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(tg.Client(), time.Second)

	observe("/a", 0.05, 10) // before the window: must not count
	lat.WithLabelValues("/b")
	scrapeAt(t, s, web, t0)
	observe("/a", 0.05, 2)
	observe("/a", 0.2, 4)
	observe("/b", 0.7, 3)
	observe("/b", 5, 1)
	scrapeAt(t, s, web, t0.Add(2*time.Second))

	// In the window, both series added: 2 observations ≤ 0.1, 6 ≤ 0.5,
	// 9 ≤ 1, 10 in all.
	for _, tc := range []struct {
		q, want float64
	}{
		// rank 0.1×10 = 1 in [0, 0.1] (2 observations): 0 + 0.1 × 1/2.
		{0.1, 0.05},
		// rank 5 in (0.1, 0.5] (4 observations, 2 below): 0.1 + 0.4 × (5-2)/4.
		{0.5, 0.4},
		// rank 9 in (0.5, 1] (3 observations, 6 below): 0.5 + 0.5 × (9-6)/3.
		{0.9, 1},
		// rank 9.9 in the +Inf bucket: the highest finite bound.
		{0.99, 1},
	} {
		got := values(t, s, Query{Metric: "demo_latency_seconds", Quantile: tc.q, Window: 10 * time.Second}, t0.Add(2*time.Second), web)
		if diff := cmp.Diff([]Sample{{"web-1", tc.want}}, got, approx); diff != "" {
			t.Errorf("quantile %v (-want +got):\n%s", tc.q, diff)
		}
	}
	// A single scrape in the window: no observation known.
	if got := values(t, s, Query{Metric: "demo_latency_seconds", Quantile: 0.5, Window: time.Second}, t0.Add(2*time.Second), web); got != nil {
		t.Errorf("one scrape in the window: %v, want no sample", got)
	}

	// The host restarts: /a starts again from 0, /b is gone.
	reg, lat = newLatency()
	tg.reg.Store(reg)
	observe("/a", 0.3, 2)
	scrapeAt(t, s, web, t0.Add(4*time.Second))
	// (1 s, 4 s]: /a restarted, so its increase is its 2 observations in
	// (0.1, 0.5]; /b has one sample. Rank 1 of 2: 0.1 + 0.4 × 1/2.
	got := values(t, s, Query{Metric: "demo_latency_seconds", Quantile: 0.5, Window: 3 * time.Second}, t0.Add(4*time.Second), web)
	if diff := cmp.Diff([]Sample{{"web-1", 0.3}}, got, approx); diff != "" {
		t.Errorf("quantile across a reset (-want +got):\n%s", diff)
	}
	// No observation in (3 s, 6 s]: no value.
	scrapeAt(t, s, web, t0.Add(6*time.Second))
	if got := values(t, s, Query{Metric: "demo_latency_seconds", Quantile: 0.5, Window: 3 * time.Second}, t0.Add(6*time.Second), web); got != nil {
		t.Errorf("no observation in the window: %v, want no sample", got)
	}
}

func TestSummary(t *testing.T) {
	reg := prometheus.NewRegistry()
	objectives := map[float64]float64{0.5: 0.05, 0.99: 0.001}
	rpc := prometheus.NewSummary(prometheus.SummaryOpts{Name: "demo_rpc_seconds", Help: "RPC latency.", Objectives: objectives})
	idle := prometheus.NewSummary(prometheus.SummaryOpts{Name: "demo_idle_seconds", Help: "Never observed.", Objectives: objectives})
	byPath := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "demo_path_seconds", Help: "Latency by path.", Objectives: objectives}, []string{"path"})
	reg.MustRegister(rpc, idle, byPath)
	for range 100 {
		rpc.Observe(0.25) // every quantile is 0.25
		byPath.WithLabelValues("/a").Observe(0.25)
		byPath.WithLabelValues("/b").Observe(0.25)
	}
	tg := newTarget(t, reg)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(tg.Client(), time.Second)
	scrapeAt(t, s, web, t0)
	now := t0.Add(time.Second)
	for _, tc := range []struct {
		metric string
		q      float64
		want   []Sample
	}{
		{"demo_rpc_seconds", 0.99, []Sample{{"web-1", 0.25}}},
		{"demo_rpc_seconds", 0.5, []Sample{{"web-1", 0.25}}},
		{"demo_rpc_seconds", 0.9, nil},  // not exported
		{"demo_idle_seconds", 0.5, nil}, // NaN: no observation
		{"demo_path_seconds", 0.5, nil}, // two series
	} {
		got := values(t, s, Query{Metric: tc.metric, Quantile: tc.q, Window: 10 * time.Second}, now, web)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s quantile %v (-want +got):\n%s", tc.metric, tc.q, diff)
		}
	}
}

func TestDivideBy(t *testing.T) {
	var hosts []Host
	var fails, reqs []prometheus.Counter
	for _, name := range []string{"web-2", "web-1", "idle"} {
		reg := prometheus.NewRegistry()
		f := prometheus.NewCounter(prometheus.CounterOpts{Name: "demo_failures_total", Help: "Failed requests."})
		r := prometheus.NewCounter(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests."})
		reg.MustRegister(f, r)
		fails, reqs = append(fails, f), append(reqs, r)
		hosts = append(hosts, Host{Name: name, URL: newTarget(t, reg).URL})
	}
	s := NewScrape(nil, time.Second)
	for _, h := range hosts {
		scrapeAt(t, s, h, t0)
	}
	// web-2 fails 5 requests of 20, web-1 1 of 50, idle serves none: a
	// zero denominator.
	fails[0].Add(5)
	reqs[0].Add(20)
	fails[1].Add(1)
	reqs[1].Add(50)
	for _, h := range hosts {
		scrapeAt(t, s, h, t0.Add(2*time.Second))
	}
	now := t0.Add(2 * time.Second)
	q := Query{Metric: "demo_failures_total", DivideBy: "demo_requests_total", Window: 10 * time.Second}
	want := []Sample{{"web-1", 0.02}, {"web-2", 0.25}}
	if diff := cmp.Diff(want, values(t, s, q, now, hosts...), approx); diff != "" {
		t.Errorf("failure ratios (-want +got):\n%s", diff)
	}
	q.DivideBy = "demo_nope_total"
	if got := values(t, s, q, now, hosts...); got != nil {
		t.Errorf("divided by a missing metric: %v, want no sample", got)
	}
}

// TestScrapeErrors scrapes hosts that fail in every way next to one that
// works.
func TestScrapeErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_up", Help: "1."})
	up.Set(1)
	reg.MustRegister(up)
	good := newTarget(t, reg)
	var fixed atomic.Bool
	malformed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fixed.Load() {
			fmt.Fprint(w, "# TYPE demo_up gauge\ndemo_up 1\n")
			return
		}
		fmt.Fprint(w, "# TYPE demo_up gauge\ndemo_up 1\ndemo_up{ 2\n")
	}))
	t.Cleanup(malformed.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // connection refused from now on

	hosts := []Host{
		{"good", good.URL}, {"malformed", malformed.URL}, {"failing", failing.URL},
		{"down", down.URL}, {"nourl", ""},
	}
	s := NewScrape(nil, 5*time.Second)
	ctx := context.Background()
	if err := s.Collect(ctx, hosts); err != nil {
		t.Fatalf("Collect: %v, want no error for hosts that fail", err)
	}
	q := Query{Metric: "demo_up", Window: time.Minute}
	if diff := cmp.Diff([]Sample{{"good", 1}}, values(t, s, q, time.Now(), hosts...)); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	for host, want := range map[string][]string{
		"malformed": {"host malformed: ", malformed.URL, "line 3"},
		"failing":   {"host failing: ", failing.URL, "500 Internal Server Error"},
		"down":      {"host down: ", down.URL},
		"nourl":     {"host nourl: no metrics URL"},
	} {
		err := s.LastError(host)
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("LastError(%s) = %v, want it to contain %q", host, err, w)
			}
		}
	}
	if err := s.LastError("good"); err != nil {
		t.Errorf("LastError(good) = %v, want nil", err)
	}

	// The malformed host recovers: its error is gone.
	fixed.Store(true)
	if err := s.Collect(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	if err := s.LastError("malformed"); err != nil {
		t.Errorf("LastError(malformed) after a good scrape = %v, want nil", err)
	}
	if diff := cmp.Diff([]Sample{{"good", 1}, {"malformed", 1}}, values(t, s, q, time.Now(), hosts...)); diff != "" {
		t.Errorf("samples after recovery (-want +got):\n%s", diff)
	}

	// A canceled context fails Collect.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Collect(canceled, hosts[:1]); err == nil {
		t.Error("Collect with a canceled context: no error")
	}
	if err := s.LastError("good"); err == nil {
		t.Error("LastError(good) after a canceled scrape: nil")
	}
}

// TestValuesErrors checks the queries that cannot be answered: the error
// names the host and the metric, and the other hosts still get samples.
func TestValuesErrors(t *testing.T) {
	s := NewScrape(nil, 0)
	s.add("a", t0, parse(t, `# TYPE demo_x gaugehistogram
demo_x_bucket{le="1"} 1
demo_x_bucket{le="+Inf"} 1
demo_x_sum 1
demo_x_count 1
# TYPE demo_h histogram
demo_h_bucket{le="1"} 1
demo_h_bucket{le="+Inf"} 1
demo_h_sum 1
demo_h_count 1
`))
	s.add("b", t0, parse(t, "# TYPE demo_x gauge\ndemo_x 7\n"))
	hosts := []Host{{Name: "a"}, {Name: "b"}}
	ctx := context.Background()

	got, err := s.Values(ctx, Query{Metric: "demo_x", Window: time.Minute}, hosts, t0)
	if err == nil || !strings.Contains(err.Error(), "host a: metric demo_x: type GAUGE_HISTOGRAM is not supported") {
		t.Errorf("a gauge histogram: %v, want an error naming the host, the metric and the type", err)
	}
	if diff := cmp.Diff([]Sample{{"b", 7}}, got); diff != "" {
		t.Errorf("the other host's samples (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{Metric: "demo_h", Quantile: 1.5, Window: time.Minute}, "host a: histogram demo_h: quantile 1.5 is not in [0, 1]"},
		{Query{Metric: "demo_h", Quantile: math.NaN(), Window: time.Minute}, "quantile NaN is not in [0, 1]"},
		{Query{Metric: "demo_h", Quantile: 0.5}, "metric demo_h: window 0s is not positive"},
		{Query{Window: time.Minute}, "no metric"},
	} {
		if _, err := s.Values(ctx, tc.q, hosts, t0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Values(%+v) = %v, want an error containing %q", tc.q, err, tc.want)
		}
	}
}

// TestHistoryPruned checks that scrapes no window can reach any more are
// dropped, and that this changes no value.
func TestHistoryPruned(t *testing.T) {
	s := NewScrape(nil, 0)
	h := Host{Name: "a"}
	counter := func(v int) map[string]*dto.MetricFamily {
		return parse(t, fmt.Sprintf("# TYPE demo_total counter\ndemo_total %d\n", v))
	}
	q := Query{Metric: "demo_total", Window: 10 * time.Second}
	for i := range 100 {
		at := t0.Add(time.Duration(i) * time.Second)
		s.add("a", at, counter(3*i))
		if diff := cmp.Diff([]Sample{{"a", 3}}, values(t, s, q, at, h)); i > 0 && diff != "" {
			t.Fatalf("rate at %d s (-want +got):\n%s", i, diff)
		}
	}
	// A window ending at 99 s or later holds no scrape before 90 s.
	if n := len(s.history["a"]); n != 10 {
		t.Errorf("%d scrapes kept, want 10", n)
	}
}

// TestBucketQuantile covers the edges of the interpolation that the
// endpoint tests do not reach.
func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	negative := map[float64]float64{-1: 2, 0: 4, 1: 8, inf: 8}
	for _, tc := range []struct {
		name   string
		q      float64
		counts map[float64]float64
		want   float64
		ok     bool
	}{
		{"a non-positive lowest bucket gives its bound", 0.1, negative, -1, true},
		// rank 4 in (-1, 0] (2 observations, 2 below): -1 + 1 × 2/2.
		{"between negative bounds", 0.5, negative, 0, true},
		// rank 6 in (0, 1]: 0 + 1 × (6-4)/4.
		{"above 0", 0.75, negative, 0.5, true},
		// 5, 3 is read as 5, 5: rank 3 in [0, 1]: 1 × 3/5.
		{"cumulative counts made monotonic", 0.5, map[float64]float64{1: 5, 2: 3, inf: 6}, 0.6, true},
		{"no observation", 0.5, map[float64]float64{1: 0, inf: 0}, 0, false},
		{"only +Inf", 0.5, map[float64]float64{inf: 3}, 0, false},
		{"no bucket", 0.5, map[float64]float64{}, 0, false},
	} {
		got, ok := bucketQuantile(tc.q, tc.counts)
		if ok != tc.ok || (ok && math.Abs(got-tc.want) > 1e-12) {
			t.Errorf("%s: bucketQuantile(%v, %v) = %v, %v; want %v, %v", tc.name, tc.q, tc.counts, got, ok, tc.want, tc.ok)
		}
	}
}
