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

	s.Reset(now)
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
		{Query{Metric: "demo_h{", Window: time.Minute}, `metric selector "demo_h{": 1:8: parse error: unexpected end of input inside braces`},
		{Query{Metric: "demo_h", DivideBy: `{le="1"}`, Window: time.Minute}, `divide_by: metric selector "{le=\"1\"}": no metric name`},
		{Query{Metric: "demo_h", Window: time.Minute, Gauge: 7}, "metric demo_h: unknown gauge reading Gauge(7)"},
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

// series is a gauge family whose series' values are distinct powers of
// 2, so that the sum of the series a selector selects names them.
const series = `# TYPE demo_series gauge
demo_series{a="x",b="1"} 1
demo_series{a="xx",b="1"} 2
demo_series{a="y"} 4
demo_series{b="2"} 8
demo_series{a="",b="3"} 16
demo_series{a="a.b"} 32
demo_series{a="axb"} 64
demo_series{a="X"} 128
demo_series{a="quo\"te\\"} 256
`

// TestSelectorMatchers checks that label matchers select series as PromQL
// does: =, !=, =~, !~, regular expressions anchored at both ends, and a
// missing label matching as the empty value.
func TestSelectorMatchers(t *testing.T) {
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, series) }))
	t.Cleanup(tg.Close)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(nil, 5*time.Second)
	if err := s.Collect(context.Background(), []Host{web}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range selectorCases {
		got := values(t, s, Query{Metric: tc.selector, Window: time.Minute}, now, web)
		var want []Sample
		if tc.want != 0 {
			want = []Sample{{"web-1", tc.want}}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.selector, diff)
		}
	}
}

// selectorCases are selectors of demo_series (see series) and the sum of
// the series each selects (0: none).
var selectorCases = []struct {
	selector string
	want     float64
}{
	{`demo_series`, 511},
	{`demo_series{}`, 511},
	{`demo_series{a="x"}`, 1},
	{`demo_series{a="x", b="1"}`, 1},
	{`demo_series{a="x", b="2"}`, 0},
	{`demo_series{a!="x"}`, 510},
	{`demo_series{a=""}`, 8 + 16},          // missing or empty
	{`demo_series{a!=""}`, 511 - 8 - 16},   // present and not empty
	{`demo_series{a=~""}`, 8 + 16},         // anchored: only the empty value
	{`demo_series{a=~".*"}`, 511},          // missing labels too
	{`demo_series{a=~".+"}`, 511 - 8 - 16}, // present and not empty
	{`demo_series{a=~"x"}`, 1},             // not xx, nor axb: anchored at both ends
	{`demo_series{a=~"x|y"}`, 1 + 4},       // alternatives are anchored together
	{`demo_series{a=~"x.*"}`, 1 + 2},       // a prefix
	{`demo_series{a=~".*x"}`, 1 + 2},       // a suffix
	{`demo_series{a=~"X"}`, 128},           // case-sensitive
	{`demo_series{a=~"(?i)x"}`, 1 + 128},   // unless asked
	{`demo_series{a=~"a\\.b"}`, 32},        // a quoted dot
	{`demo_series{a=~"a.b"}`, 32 + 64},     // any character
	{`demo_series{a!~"x.*"}`, 511 - 1 - 2}, // missing labels are "", which x.* does not match
	{`demo_series{a!~""}`, 511 - 8 - 16},   // present and not empty
	{`demo_series{a!~".*"}`, 0},            // nothing
	{`demo_series{a=~"x", a!="x"}`, 0},     // every matcher must match
	{`demo_series{b=~"1|3", a!="xx"}`, 1 + 16},
	{`demo_series{a="quo\"te\\"}`, 256}, // escapes
	{`demo_series{c=""}`, 511},          // no series has c
	{`demo_series{c="x"}`, 0},
	{`{__name__="demo_series", a="y"}`, 4},
	{`{__name__="demo_series", __name__=~"demo_.*", a="y"}`, 4}, // name matchers match the name
	{`{__name__="demo_series", __name__!="demo_series"}`, 0},
}

func TestParseSelectorErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`demo{`, `metric selector "demo{": 1:6: parse error: unexpected end of input inside braces`},
		{`demo{a="b"`, `metric selector "demo{a=\"b\"": 1:11: parse error: unexpected end of input inside braces`},
		{`demo{a~"b"}`, `metric selector "demo{a~\"b\"}": 1:7: parse error: unexpected character inside braces: '~'`},
		{`demo{a=~"("}`, "metric selector \"demo{a=~\\\"(\\\"}\": 1:6: parse error: error parsing regexp: missing closing ): `(`"},
		{`{a="b"}`, `metric selector "{a=\"b\"}": no metric name, want name{...} or {__name__="name", ...}`},
		{`{__name__=~"demo_.*"}`, `metric selector "{__name__=~\"demo_.*\"}": no metric name, want name{...} or {__name__="name", ...}`},
		{`demo[5m]`, `metric selector "demo[5m]": got a range selector, want name{label="value", ...}`},
		{`rate(demo[5m])`, `metric selector "rate(demo[5m])": got a call of rate(), want name{label="value", ...}`},
		{`deriv(demo[1m])`, `metric selector "deriv(demo[1m])": got a call of deriv(), want name{label="value", ...} (for a gauge's growth rate, set gauge = DERIV)`},
		{`sum(demo)`, `metric selector "sum(demo)": got a PromQL expression, want name{label="value", ...}`},
		{`demo{__name__="other"}`, `metric selector "demo{__name__=\"other\"}": 1:1: parse error: metric name must not be set twice: "demo" or "other"`},
		{`deriv(demo[$window])`, `metric selector "deriv(demo[$window])": 1:12: parse error: unexpected character in duration expression: '$' (for a gauge's growth rate, set gauge = DERIV)`},
		{`demo{instance=~"$hosts"} offset 1m`, `metric selector "demo{instance=~\"$hosts\"} offset 1m": got an offset or @ modifier, want name{label="value", ...}`},
		{`demo @ 100`, `metric selector "demo @ 100": got an offset or @ modifier, want name{label="value", ...}`},
		{`{__name__=""}`, `metric selector "{__name__=\"\"}": 1:1: parse error: vector selector must contain at least one non-empty matcher`},
		{``, `no metric selector`},
	} {
		_, err := ParseSelector(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseSelector(%q) = %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

// TestSelectorCounters checks per-endpoint rates and ratios: label
// matchers on a counter and on divide_by, the other endpoints' series
// left out.
func TestSelectorCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."}, []string{"endpoint"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_failed_total", Help: "Failed requests."}, []string{"endpoint", "code"})
	reg.MustRegister(reqs, failed)
	for _, e := range []string{"checkout", "browse", "checkout-v2"} {
		reqs.WithLabelValues(e)
	}
	failed.WithLabelValues("checkout", "503")
	failed.WithLabelValues("checkout", "500")
	failed.WithLabelValues("browse", "503")
	tg := newTarget(t, reg)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(tg.Client(), time.Second)
	scrapeAt(t, s, web, t0)
	// In 2 s: browse 1000 requests, 10 failed; checkout 40, 20 failed
	// (15 with 503, 5 with 500); checkout-v2 100, none failed.
	reqs.WithLabelValues("browse").Add(1000)
	failed.WithLabelValues("browse", "503").Add(10)
	reqs.WithLabelValues("checkout").Add(40)
	failed.WithLabelValues("checkout", "503").Add(15)
	failed.WithLabelValues("checkout", "500").Add(5)
	reqs.WithLabelValues("checkout-v2").Add(100)
	scrapeAt(t, s, web, t0.Add(2*time.Second))

	now := t0.Add(2 * time.Second)
	for _, tc := range []struct {
		metric, divideBy string
		want             []Sample
	}{
		{`http_requests_failed_total`, "", []Sample{{"web-1", 30.0 / 2}}},
		{`http_requests_failed_total{endpoint="checkout"}`, "", []Sample{{"web-1", 20.0 / 2}}},
		{`http_requests_failed_total{endpoint="checkout", code="500"}`, "", []Sample{{"web-1", 5.0 / 2}}},
		{`http_requests_failed_total{endpoint="checkout", code=~"5.."}`, "", []Sample{{"web-1", 20.0 / 2}}},
		{`http_requests_failed_total{endpoint="checkout", code!~"5.."}`, "", nil},
		{`http_requests_total{endpoint=~"checkout.*"}`, "", []Sample{{"web-1", 140.0 / 2}}},
		// The whole fleet's ratio hides checkout's.
		{`http_requests_failed_total`, `http_requests_total`, []Sample{{"web-1", 30.0 / 1140}}},
		{`http_requests_failed_total{endpoint="checkout"}`, `http_requests_total{endpoint="checkout"}`, []Sample{{"web-1", 20.0 / 40}}},
		{`http_requests_failed_total{endpoint="checkout-v2"}`, `http_requests_total{endpoint="checkout-v2"}`, nil}, // no failure series
		{`http_requests_failed_total{endpoint="browse"}`, `http_requests_total{endpoint="nope"}`, nil},
	} {
		got := values(t, s, Query{Metric: tc.metric, DivideBy: tc.divideBy, Window: 10 * time.Second}, now, web)
		if diff := cmp.Diff(tc.want, got, approx); diff != "" {
			t.Errorf("%s / %q (-want +got):\n%s", tc.metric, tc.divideBy, diff)
		}
	}

	// Matchers also select histogram and summary series.
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 1}}, []string{"endpoint"})
	sum := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "http_rpc_seconds", Help: "RPC latency.", Objectives: map[float64]float64{0.5: 0.05}}, []string{"endpoint"})
	reg.MustRegister(lat, sum)
	lat.WithLabelValues("browse")
	lat.WithLabelValues("checkout")
	scrapeAt(t, s, web, t0.Add(4*time.Second))
	for range 10 {
		lat.WithLabelValues("browse").Observe(0.05)
		lat.WithLabelValues("checkout").Observe(0.5)
		sum.WithLabelValues("browse").Observe(0.01)
		sum.WithLabelValues("checkout").Observe(0.3)
	}
	scrapeAt(t, s, web, t0.Add(6*time.Second))
	now = t0.Add(6 * time.Second)
	for _, tc := range []struct {
		metric string
		want   []Sample
	}{
		// Both endpoints: rank 10 of 20 is the last in [0, 0.1].
		{`http_latency_seconds`, []Sample{{"web-1", 0.1}}},
		// checkout's rank 5 of 10 in (0.1, 1]: 0.1 + 0.9 × 5/10.
		{`http_latency_seconds{endpoint="checkout"}`, []Sample{{"web-1", 0.55}}},
		{`http_rpc_seconds{endpoint="checkout"}`, []Sample{{"web-1", 0.3}}},
		{`http_rpc_seconds`, nil}, // two series
	} {
		got := values(t, s, Query{Metric: tc.metric, Quantile: 0.5, Window: 3 * time.Second}, now, web)
		if diff := cmp.Diff(tc.want, got, approx); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.metric, diff)
		}
	}
}

// TestGaugeDeriv checks growth rates of gauges scraped from a real
// endpoint at exact times: least-squares slopes as PromQL's deriv()
// computes them.
func TestGaugeDeriv(t *testing.T) {
	var body atomic.Value
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body.Load()) }))
	t.Cleanup(tg.Close)
	web := Host{Name: "web-1", URL: tg.URL}
	s := NewScrape(nil, 5*time.Second)
	for i, v := range []struct{ heap, untyped, requests, newPool string }{
		{"10", "0", "0", ""},
		{"14", "10", "10", ""},
		{"22", "20", "30", `demo_memory_bytes{pool="new"} 1` + "\n"},
	} {
		body.Store(`# TYPE demo_memory_bytes gauge
demo_memory_bytes{pool="heap"} ` + v.heap + `
demo_memory_bytes{pool="stack"} 100
` + v.newPool + `# TYPE demo_limit_bytes gauge
demo_limit_bytes 1000
# TYPE demo_untyped untyped
demo_untyped ` + v.untyped + `
# TYPE demo_requests_total counter
demo_requests_total ` + v.requests + `
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{le="+Inf"} 0
demo_latency_seconds_sum 0
demo_latency_seconds_count 0
`)
		scrapeAt(t, s, web, t0.Add(time.Duration(2*i)*time.Second))
	}
	now := t0.Add(4 * time.Second)
	deriv := func(metric, divideBy string, window time.Duration) Query {
		return Query{Metric: metric, DivideBy: divideBy, Window: window, Gauge: GaugeDeriv}
	}
	for _, tc := range []struct {
		q    Query
		want []Sample
	}{
		// heap at 0, 2, 4 s: 10, 14, 22. The least-squares slope is
		// Σ(x-2)(y-15⅓) / Σ(x-2)² = (10⅔ + 13⅓) / 8 = 3 a second.
		{deriv(`demo_memory_bytes{pool="heap"}`, "", 10*time.Second), []Sample{{"web-1", 3}}},
		// (1 s, 4 s] holds 14 and 22: 4 a second.
		{deriv(`demo_memory_bytes{pool="heap"}`, "", 3*time.Second), []Sample{{"web-1", 4}}},
		// A constant series grows by 0.
		{deriv(`demo_memory_bytes{pool="stack"}`, "", 10*time.Second), []Sample{{"web-1", 0}}},
		// The series are added; pool="new" has one sample, so no slope.
		{deriv(`demo_memory_bytes`, "", 10*time.Second), []Sample{{"web-1", 3}}},
		{deriv(`demo_memory_bytes{pool="new"}`, "", 10*time.Second), nil},
		// Untyped metrics are read as gauges.
		{deriv(`demo_untyped`, "", 10*time.Second), []Sample{{"web-1", 5}}},
		// A single scrape in the window: no slope.
		{deriv(`demo_memory_bytes`, "", time.Second), nil},
		// Growth per request: divided by the requests' rate, 30 in 4 s.
		{deriv(`demo_memory_bytes{pool="heap"}`, "demo_requests_total", 10*time.Second), []Sample{{"web-1", 3 / 7.5}}},
		// divide_by is read as usual: a gauge's latest value.
		{deriv(`demo_memory_bytes{pool="heap"}`, "demo_limit_bytes", 10*time.Second), []Sample{{"web-1", 3.0 / 1000}}},
		// Without DERIV, the latest value.
		{Query{Metric: `demo_memory_bytes{pool="heap"}`, Window: 10 * time.Second}, []Sample{{"web-1", 22}}},
	} {
		got := values(t, s, tc.q, now, web)
		if diff := cmp.Diff(tc.want, got, approx); diff != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.q, diff)
		}
	}
	for _, tc := range []struct {
		metric, want string
	}{
		{"demo_requests_total", "host web-1: metric demo_requests_total: gauge DERIV needs a gauge, got a COUNTER"},
		{"demo_latency_seconds", "host web-1: metric demo_latency_seconds: gauge DERIV needs a gauge, got a HISTOGRAM"},
	} {
		got, err := s.Values(context.Background(), deriv(tc.metric, "", 10*time.Second), []Host{web}, now)
		if err == nil || err.Error() != tc.want || got != nil {
			t.Errorf("DERIV of %s = %v, %v; want no sample and the error %q", tc.metric, got, err, tc.want)
		}
	}
}

// TestDeriv checks the edges of the slope that the endpoint test does
// not reach.
func TestDeriv(t *testing.T) {
	pts := func(ys ...float64) []point {
		var out []point
		for i := range ys {
			// Times with sub-millisecond parts: as in Prometheus, only
			// the milliseconds count.
			at := t0.Add(time.Duration(i)*time.Second + time.Duration(i)*300*time.Microsecond)
			out = append(out, point{scrape{at: at}, &dto.Metric{Gauge: &dto.Gauge{Value: &ys[i]}}})
		}
		return out
	}
	inf := math.Inf(1)
	for _, tc := range []struct {
		name string
		pts  []point
		want float64
		ok   bool
	}{
		{"a line", pts(1, 3, 5, 7), 2, true},
		{"a falling line", pts(7, 5, 3, 1), -2, true},
		// A restart is not a reset for a gauge: the slope of 10, 20, 0
		// is (0-10)/2 = -5.
		{"a restart", pts(10, 20, 0), -5, true},
		// Large values near each other: the sums are compensated.
		{"large values", pts(1e15, 1e15+1, 1e15+2, 1e15+3), 1, true},
		{"constant", pts(4, 4, 4), 0, true},
		{"constant infinite", pts(inf, inf), math.NaN(), true},
		{"one point", pts(4), 0, false},
	} {
		got, ok := deriv(tc.pts)
		if ok != tc.ok || (ok && !(math.Abs(got-tc.want) < 1e-9 || math.IsNaN(got) && math.IsNaN(tc.want))) {
			t.Errorf("%s: deriv = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
