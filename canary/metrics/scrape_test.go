package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing %q: %v", text, err)
	}
	return fams
}

func host(name string) Host { return Host{Name: name} }

func values(t *testing.T, s *Scrape, q Query, now time.Time, hosts ...string) []Sample {
	t.Helper()
	var hs []Host
	for _, h := range hosts {
		hs = append(hs, host(h))
	}
	got, err := s.Values(context.Background(), q, hs, now)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCounterRate(t *testing.T) {
	s := NewScrape(nil, 0)
	counter := func(v1, v2 float64) string {
		return fmt.Sprintf("# TYPE req_total counter\nreq_total{code=\"200\"} %g\nreq_total{code=\"500\"} %g\n", v1, v2)
	}
	s.add("a", t0, parse(t, counter(90, 10)))                     // 100
	s.add("a", t0.Add(2*time.Second), parse(t, counter(100, 10))) // 110
	s.add("a", t0.Add(4*time.Second), parse(t, counter(4, 1)))    // restarted: 5
	s.add("b", t0.Add(4*time.Second), parse(t, counter(1, 1)))    // one scrape: no rate yet
	q := Query{Metric: "req_total", Window: 10 * time.Second}
	// (110-100) + 5 over 4 s.
	if diff := cmp.Diff([]Sample{{"a", 3.75}}, values(t, s, q, t0.Add(4*time.Second), "a", "b", "c")); diff != "" {
		t.Errorf("rates (-want +got):\n%s", diff)
	}
	// A window of 3 s holds the last two scrapes only: 5 over 2 s.
	q.Window = 3 * time.Second
	if diff := cmp.Diff([]Sample{{"a", 2.5}}, values(t, s, q, t0.Add(4*time.Second), "a")); diff != "" {
		t.Errorf("rate over 3 s (-want +got):\n%s", diff)
	}
	// Scrapes after now do not count.
	if got := values(t, s, q, t0.Add(time.Second), "a"); len(got) != 0 {
		t.Errorf("rate before the second scrape: %v", got)
	}
	s.Reset()
	if got := values(t, s, q, t0.Add(4*time.Second), "a"); len(got) != 0 {
		t.Errorf("rate after Reset: %v", got)
	}
}

func TestGaugeSummaryDivideBy(t *testing.T) {
	s := NewScrape(nil, 0)
	s.add("a", t0, parse(t, `# TYPE temp gauge
temp{core="0"} 40
temp{core="1"} 2
# TYPE fails_total counter
fails_total 0
# TYPE reqs_total counter
reqs_total 0
# TYPE lat summary
lat{quantile="0.5"} 0.01
lat{quantile="0.99"} 0.2
lat_sum 3
lat_count 100
`))
	s.add("a", t0.Add(2*time.Second), parse(t, `# TYPE temp gauge
temp{core="0"} 41
temp{core="1"} 2
# TYPE fails_total counter
fails_total 3
# TYPE reqs_total counter
reqs_total 60
# TYPE lat summary
lat{quantile="0.5"} 0.02
lat{quantile="0.99"} 0.3
lat_sum 6
lat_count 200
`))
	now := t0.Add(2 * time.Second)
	for _, tc := range []struct {
		q    Query
		want []Sample
	}{
		{Query{Metric: "temp", Window: time.Minute}, []Sample{{"a", 43}}},
		{Query{Metric: "lat", Quantile: 0.99, Window: time.Minute}, []Sample{{"a", 0.3}}},
		{Query{Metric: "lat", Quantile: 0.9, Window: time.Minute}, nil},
		{Query{Metric: "fails_total", DivideBy: "reqs_total", Window: time.Minute}, []Sample{{"a", 0.05}}},
		{Query{Metric: "nope", Window: time.Minute}, nil},
		{Query{Metric: "fails_total", DivideBy: "nope", Window: time.Minute}, nil},
	} {
		if diff := cmp.Diff(tc.want, values(t, s, tc.q, now, "a")); diff != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.q, diff)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	s := NewScrape(nil, 0)
	hist := func(b1, b2, b3, count float64) string {
		return fmt.Sprintf(`# TYPE lat histogram
lat_bucket{le="0.01"} %g
lat_bucket{le="0.02"} %g
lat_bucket{le="0.04"} %g
lat_bucket{le="+Inf"} %g
lat_sum 1
lat_count %g
`, b1, b2, b3, count, count)
	}
	s.add("a", t0, parse(t, hist(50, 50, 50, 50)))
	// In the window: 10 observations up to 10 ms, 80 in (10, 20] ms, 10
	// in (20, 40] ms.
	s.add("a", t0.Add(2*time.Second), parse(t, hist(60, 140, 150, 150)))
	now := t0.Add(2 * time.Second)
	for _, tc := range []struct {
		q    float64
		want float64
	}{
		// rank 50 of 100 falls in (0.01, 0.02]: 0.01 + 0.01 × (50-10)/80.
		{0.5, 0.015},
		// rank 99 falls in (0.02, 0.04]: 0.02 + 0.02 × (99-90)/10.
		{0.99, 0.038},
		// rank 5 falls in [0, 0.01]: 0.01 × 5/10.
		{0.05, 0.005},
	} {
		got := values(t, s, Query{Metric: "lat", Quantile: tc.q, Window: time.Minute}, now, "a")
		if len(got) != 1 || math.Abs(got[0].Value-tc.want) > 1e-12 {
			t.Errorf("q %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	// Observations above the highest finite bucket give that bound.
	s.add("a", t0.Add(4*time.Second), parse(t, hist(60, 140, 150, 250)))
	got := values(t, s, Query{Metric: "lat", Quantile: 0.99, Window: 3 * time.Second}, t0.Add(4*time.Second), "a")
	if len(got) != 1 || got[0].Value != 0.04 {
		t.Errorf("quantile in the +Inf bucket: %v, want 0.04", got)
	}
}

// TestScrapeEndpoints scrapes real HTTP endpoints: a registry served by
// promhttp, a host that is down and a malformed exposition.
func TestScrapeEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounter(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests."})
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_in_flight", Help: "In flight."})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "demo_seconds", Help: "Latency.", Buckets: []float64{0.01, 0.1, 1}})
	reg.MustRegister(reqs, inflight, lat)
	good := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE x counter\nx{ 1\n")
	}))
	defer bad.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	hosts := []Host{{"good", good.URL}, {"bad", bad.URL}, {"down", down.URL}, {"none", ""}}
	s := NewScrape(nil, time.Second)
	inflight.Set(3)
	if err := s.Collect(context.Background(), hosts); err != nil {
		t.Fatal(err)
	}
	reqs.Add(20)
	for range 10 {
		lat.Observe(0.05)
	}
	if err := s.Collect(context.Background(), hosts); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, err := s.Values(context.Background(), Query{Metric: "demo_in_flight", Window: time.Minute}, hosts, now)
	if err != nil || len(got) != 1 || got[0] != (Sample{"good", 3}) {
		t.Errorf("gauge: %v, %v", got, err)
	}
	got, _ = s.Values(context.Background(), Query{Metric: "demo_requests_total", Window: time.Minute}, hosts, now)
	if len(got) != 1 || got[0].Value <= 0 {
		t.Errorf("counter rate: %v, want one positive rate", got)
	}
	got, _ = s.Values(context.Background(), Query{Metric: "demo_seconds", Quantile: 0.5, Window: time.Minute}, hosts, now)
	// 10 observations in (0.01, 0.1]: rank 5 gives 0.01 + 0.09 × 5/10.
	if len(got) != 1 || math.Abs(got[0].Value-0.055) > 1e-12 {
		t.Errorf("histogram median: %v, want 0.055", got)
	}
	for host, want := range map[string]string{"bad": "host bad: " + bad.URL, "down": "host down:", "none": "no metrics URL"} {
		if err := s.LastError(host); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LastError(%s) = %v, want %q", host, err, want)
		}
	}
	if err := s.LastError("good"); err != nil {
		t.Errorf("LastError(good) = %v", err)
	}
	if err := s.LastError("bad"); !strings.Contains(err.Error(), "line 2") {
		t.Errorf("the parse error does not name the line: %v", err)
	}
}
