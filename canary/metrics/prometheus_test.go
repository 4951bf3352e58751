package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

func TestExpand(t *testing.T) {
	q := Query{Metric: `rate(demo_requests_total{instance=~"$hosts"}[$window]) / on() group_left sum(x{h=~"$hosts"})`, Window: 90 * time.Second}
	got := expand(q, []Host{{Name: "web-1"}, {Name: "db.2"}, {Name: "a+b"}})
	// QuoteMeta gives db\.2 and a\+b; inside a PromQL string, the
	// backslashes are escaped.
	want := `rate(demo_requests_total{instance=~"web-1|db\\.2|a\\+b"}[1m30s]) / on() group_left sum(x{h=~"web-1|db\\.2|a\\+b"})`
	if got != want {
		t.Errorf("expand = %s\nwant %s", got, want)
	}
}

func TestNewPrometheusBadURL(t *testing.T) {
	for _, u := range []string{"", "prometheus:9090", "ftp://prometheus", "http://", "http://a b"} {
		if _, err := NewPrometheus(u); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", u)) {
			t.Errorf("NewPrometheus(%q) = %v, want an error naming the URL", u, err)
		}
	}
}

// TestPrometheusErrorsWithoutServer checks the errors that need no
// running server.
func TestPrometheusErrorsWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	p, err := NewPrometheus("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hosts := []Host{{Name: "web-1"}}
	q := Query{Metric: `demo_value{instance=~"$hosts"}`, Window: 5 * time.Second}
	_, err = p.Values(ctx, q, hosts, time.Now())
	if err == nil || !strings.Contains(err.Error(), "http://"+addr) || !strings.Contains(err.Error(), `demo_value{instance=~"web-1"}`) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("server down: %v, want an ErrUnavailable naming the server and the query", err)
	}
	if got, err := p.Values(ctx, q, nil, time.Now()); got != nil || err != nil {
		t.Errorf("no hosts: %v, %v; want nothing", got, err)
	}
	q.DivideBy = "demo_requests_total"
	if _, err := p.Values(ctx, q, hosts, time.Now()); err == nil || !strings.Contains(err.Error(), "divide_by demo_requests_total is not supported") {
		t.Errorf("divide_by: %v, want an error saying it is not supported", err)
	}
	q = Query{Metric: `demo_memory_bytes`, Gauge: GaugeDeriv}
	if _, err := p.Values(ctx, q, hosts, time.Now()); err == nil || !strings.Contains(err.Error(), `gauge DERIV is not supported by the prometheus provider: write the function in PromQL, such as deriv(m{instance=~"$hosts"}[$window])`) {
		t.Errorf("gauge DERIV: %v, want an error saying it is not supported", err)
	}
	q = Query{Metric: `rate(x[$window])`}
	if _, err := p.Values(ctx, q, hosts, time.Now()); err == nil || !strings.Contains(err.Error(), "window 0s is not positive") {
		t.Errorf("$window without a window: %v, want an error", err)
	}
}

// startPrometheus runs a real Prometheus server scraping targets (host
// name → address) every second, each target's instance label being its
// host name, and returns its URL and a channel closed when it exits. The
// server is killed at the end of the test.
func startPrometheus(t *testing.T, targets map[string]string) (string, <-chan struct{}) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not on PATH: apt-get install prometheus")
	}
	var config strings.Builder
	config.WriteString("global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n")
	config.WriteString("scrape_configs:\n- job_name: demo\n  static_configs:\n")
	for name, addr := range targets {
		fmt.Fprintf(&config, "  - targets: [%q]\n    labels: {instance: %q}\n", addr, name)
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logs.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("prometheus log:\n%s", out)
		}
	})
	return "http://" + addr, exited
}

// waitForValues polls p every 100 ms until q has a value for each of
// hosts, for at most a minute, or until the server exits.
func waitForValues(t *testing.T, p *Prometheus, q Query, hosts []Host, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := p.Values(context.Background(), q, hosts, time.Now())
		if err == nil && len(got) == len(hosts) {
			return
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited: last %v, %v", got, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no value for each of %d hosts within a minute: last %v, %v", q.Metric, len(hosts), got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrometheus queries a real Prometheus server scraping four test
// endpoints whose host names differ only in regular expression
// metacharacters.
func TestPrometheus(t *testing.T) {
	t.Parallel()
	values := map[string]float64{"web-1": 1, "web-10": 10, "web.2": 2, "webx2": 20}
	const perSecond = 100 // the rate of every target's counter
	targets := map[string]string{}
	for name, v := range values {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_value", Help: "A fixed value."})
		g.Set(v)
		start := time.Now()
		reg.MustRegister(g, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests, 100 a second."},
			func() float64 { return time.Since(start).Seconds() * perSecond }))
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		targets[name] = strings.TrimPrefix(srv.URL, "http://")
	}
	url, exited := startPrometheus(t, targets)
	p, err := NewPrometheus(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	all := []Host{{Name: "web-1"}, {Name: "web-10"}, {Name: "web.2"}, {Name: "webx2"}}
	rate := Query{Metric: `rate(demo_requests_total{instance=~"$hosts"}[$window])`, Window: 3 * time.Second}

	// Wait until every target has been scraped in the whole window, so
	// that rate, which extrapolates to the window's edges only from
	// samples close to them, gives the counters' real rate.
	full := Query{Metric: `count_over_time(demo_requests_total{instance=~"$hosts"}[$window]) >= 3`, Window: rate.Window}
	waitForValues(t, p, full, all, exited)

	now := time.Now()
	gauge := Query{Metric: `demo_value{instance=~"$hosts"}`, Window: 5 * time.Second}
	got, err := p.Values(ctx, gauge, []Host{{Name: "web-1"}, {Name: "web.2"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	// Neither web-10 (web-1 is anchored) nor webx2 (the dot is quoted).
	want := []Sample{{`demo_value{instance="web-1", job="demo"}`, 1}, {`demo_value{instance="web.2", job="demo"}`, 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gauges of web-1 and web.2 (-want +got):\n%s", diff)
	}

	got, err = p.Values(ctx, rate, []Host{{Name: "web-10"}, {Name: "webx2"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Series != `{instance="web-10", job="demo"}` || got[1].Series != `{instance="webx2", job="demo"}` {
		t.Fatalf("rates of web-10 and webx2: %v", got)
	}
	for _, s := range got {
		// The counters grow by 100 a second; scrape times jitter a little.
		if s.Value < 0.8*perSecond || s.Value > 1.2*perSecond {
			t.Errorf("rate of %s = %v, want about %v", s.Series, s.Value, perSecond)
		}
		if testing.Verbose() {
			t.Logf("rate of %s = %v", s.Series, s.Value)
		}
	}

	got, err = p.Values(ctx, Query{Metric: `scalar(sum(demo_value{instance=~"$hosts"}))`}, []Host{{Name: "web-10"}, {Name: "webx2"}}, now)
	if diff := cmp.Diff([]Sample{{"scalar", 30}}, got); err != nil || diff != "" {
		t.Errorf("a scalar: %v (-want +got):\n%s", err, diff)
	}

	for _, tc := range []struct {
		q    Query
		want []string
		bad  bool // the query is wrong: the server is not unavailable
	}{
		{Query{Metric: `sum(demo_value{instance=~"$hosts"}`}, []string{`query sum(demo_value{instance=~"web-1"}`, "bad_data", "parse error"}, true},
		{Query{Metric: `demo_value{instance=~"$hosts"}[$window]`, Window: 5 * time.Second}, []string{`query demo_value{instance=~"web-1"}[5s]`, "the result is a matrix"}, true},
		// client_golang's API client rejects string results itself, as
		// it rejects any answer it cannot decode.
		{Query{Metric: `"web"`}, []string{`query "web"`, `"string"`}, false},
	} {
		_, err := p.Values(ctx, tc.q, []Host{{Name: "web-1"}}, now)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Values(%s) = %v, want an error containing %q", tc.q.Metric, err, w)
			}
		}
		if tc.bad && errors.Is(err, ErrUnavailable) {
			t.Errorf("Values(%s) = %v: the query is wrong, the server is not unavailable", tc.q.Metric, err)
		}
	}
}

// withInstance adds instance=~"$hosts" to a selector, for the prometheus
// provider.
func withInstance(sel string) string {
	const m = `instance=~"$hosts"`
	switch {
	case !strings.HasSuffix(sel, "}"):
		return sel + "{" + m + "}"
	case strings.HasSuffix(sel, "{}"):
		return strings.TrimSuffix(sel, "}") + m + "}"
	default:
		return strings.TrimSuffix(sel, "}") + ", " + m + "}"
	}
}

// TestScrapeAgreesWithPrometheus runs the same selectors and growth rates
// through the scrape provider and a real Prometheus server scraping the same
// endpoints, and compares the results: label matchers select the series
// PromQL selects, and gauge = DERIV gives what deriv() gives over the
// same samples.
func TestScrapeAgreesWithPrometheus(t *testing.T) {
	t.Parallel()
	// Each host serves demo_series (see series) and demo_memory_bytes,
	// whose heap pool grows irregularly at every scrape.
	hosts := []Host{{Name: "web-1"}, {Name: "web-2"}}
	targets := map[string]string{}
	for i := range hosts {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k := n.Add(1)
			heap := 1e6 + float64(1000*(i+1)*int(k)) + float64(300*(k*k%7))
			fmt.Fprintf(w, "%s# TYPE demo_memory_bytes gauge\ndemo_memory_bytes{pool=\"heap\"} %v\ndemo_memory_bytes{pool=\"stack\"} 4096\n", series, heap)
		}))
		t.Cleanup(srv.Close)
		hosts[i].URL = srv.URL
		targets[hosts[i].Name] = strings.TrimPrefix(srv.URL, "http://")
	}
	url, exited := startPrometheus(t, targets)
	p, err := NewPrometheus(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Wait until Prometheus holds 6 samples of every host in the last 8 s.
	full := Query{Metric: `count_over_time(demo_memory_bytes{pool="heap", instance=~"$hosts"}[$window]) >= 6`, Window: 8 * time.Second}
	waitForValues(t, p, full, hosts, exited)

	t.Run("selectors", func(t *testing.T) {
		s := NewScrape(nil, 5*time.Second)
		if err := s.Collect(ctx, hosts); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, tc := range selectorCases {
			mine, err := s.Values(ctx, Query{Metric: tc.selector, Window: time.Minute}, hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := p.Values(ctx, Query{Metric: "sum by (instance) (" + withInstance(tc.selector) + ")"}, hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(byInstance(t, theirs), mine); diff != "" {
				t.Errorf("%s (-prometheus +scrape):\n%s", tc.selector, diff)
			}
		}
	})

	t.Run("deriv", func(t *testing.T) {
		// Feed the scrape provider the very samples Prometheus stored,
		// at the times it stored them.
		now := time.UnixMilli(time.Now().UnixMilli())
		v, _, _, err := p.api.Query(ctx, `demo_memory_bytes[30s]`, now)
		if err != nil {
			t.Fatal(err)
		}
		type key struct {
			host string
			at   int64
		}
		text := map[key]string{}
		stored := map[int64]bool{} // the times of the samples, in ms
		for _, ss := range v.(model.Matrix) {
			for _, sp := range ss.Values {
				k := key{string(ss.Metric["instance"]), int64(sp.Timestamp)}
				text[k] += fmt.Sprintf("demo_memory_bytes{pool=%q} %v\n", ss.Metric["pool"], sp.Value)
				stored[int64(sp.Timestamp)] = true
			}
		}
		s := NewScrape(nil, 0)
		for k, samples := range text {
			s.add(k.host, time.UnixMilli(k.at), parse(t, "# TYPE demo_memory_bytes gauge\n"+samples))
		}
		for _, tc := range []struct {
			selector string
			window   time.Duration
		}{
			{`demo_memory_bytes{pool="heap"}`, 5 * time.Second},
			{`demo_memory_bytes{pool="heap"}`, 8 * time.Second},
			{`demo_memory_bytes{pool="stack"}`, 8 * time.Second},
			{`demo_memory_bytes`, 8 * time.Second},
		} {
			// Prometheus 2 includes a sample at the window's start,
			// Prometheus 3 and the scrape provider do not: keep samples
			// off it.
			if stored[now.Add(-tc.window).UnixMilli()] {
				t.Fatalf("a sample at the start of the %v window: pick another time", tc.window)
			}
			q := Query{Metric: tc.selector, Window: tc.window, Gauge: GaugeDeriv}
			mine, err := s.Values(ctx, q, hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := p.Values(ctx, Query{Metric: "sum by (instance) (deriv(" + withInstance(tc.selector) + "[$window]))", Window: tc.window}, hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(byInstance(t, theirs), mine, cmpopts.EquateApprox(1e-12, 1e-9)); diff != "" || len(mine) != len(hosts) {
				t.Errorf("%s over %v (-prometheus +scrape):\n%s", tc.selector, tc.window, diff)
			}
			if testing.Verbose() {
				t.Logf("deriv(%s[%v]): %v", tc.selector, tc.window, mine)
			}
		}
	})
}

// byInstance renames the samples of a "sum by (instance)" query after
// their instance.
func byInstance(t *testing.T, samples []Sample) []Sample {
	t.Helper()
	out := []Sample{}
	for _, s := range samples {
		m, err := promql.ParseMetric(s.Series)
		if err != nil {
			t.Fatalf("series %s: %v", s.Series, err)
		}
		out = append(out, Sample{Series: m.Get("instance"), Value: s.Value})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// TestPrometheusServerFailing checks that a server answering with an
// error of its own, or too slowly, makes a query ErrUnavailable: the
// metrics cannot be read, which says nothing about the hosts.
// TestPrometheusServerFailing checks that a server that fails a query,
// or never answers it, is ErrUnavailable: a query is bounded by the
// provider itself (QueryTimeout, shortened here), as the controller
// gives it no deadline of its own.
func TestPrometheusServerFailing(t *testing.T) {
	t.Parallel()
	hosts := []Host{{Name: "web-1"}}
	q := Query{Metric: `demo_value{instance=~"$hosts"}`}
	for _, tc := range []struct {
		name string
		// handle answers a query; release is closed as the test ends.
		handle func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
		want   string
	}{
		{"unavailable", func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}, "server error: 503"},
		{"its own error", func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`)
		}, "execution: query processing would load too many samples"},
		{"too slow", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			<-release
		}, "context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.handle(w, r, release) }))
			defer srv.Close()
			defer close(release) // before the server waits for its handlers
			p, err := NewPrometheus(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			p.timeout = 100 * time.Millisecond
			done := make(chan error, 1)
			go func() {
				_, err := p.Values(context.Background(), q, hosts, time.Now())
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatalf("no answer from Values within a minute, its query bounded to %v", p.timeout)
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("Values = %v, want an ErrUnavailable naming the server and containing %q", err, tc.want)
			}
		})
	}
}

// TestPrometheusSince queries a real Prometheus server for a counter that
// grows until a moment and then stands still, as an error counter of a
// canary that the candidate fixed: once the provider is reset at that
// moment, a rate over a window reaching back before it is the rate since
// it (zero), where a provider never reset gives the older growth too.
func TestPrometheusSince(t *testing.T) {
	t.Parallel()
	var stopped atomic.Bool
	reg := prometheus.NewRegistry()
	begin := time.Now()
	var stoppedAt atomic.Int64
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "demo_errors_total", Help: "Errors, 100 a second until stopped."},
		func() float64 {
			if stopped.Load() {
				return float64(stoppedAt.Load())
			}
			return float64(int64(time.Since(begin).Seconds() * 100))
		}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	url, exited := startPrometheus(t, map[string]string{"web-1": strings.TrimPrefix(srv.URL, "http://")})
	ctx := context.Background()
	hosts := []Host{{Name: "web-1"}}
	// Three scrapes in the window (since the reset, for a provider reset).
	scraped := Query{Metric: `count_over_time(demo_errors_total{instance=~"$hosts"}[$window]) >= 3`, Window: time.Minute}
	rate := Query{Metric: `rate(demo_errors_total{instance=~"$hosts"}[$window])`, Window: time.Minute}
	waitFor := func(p *Prometheus, q Query) { waitForValues(t, p, q, hosts, exited) }
	never, err := NewPrometheus(url)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(never, scraped)

	stoppedAt.Store(int64(time.Since(begin).Seconds() * 100))
	stopped.Store(true)
	since := time.Now()
	p, err := NewPrometheus(url)
	if err != nil {
		t.Fatal(err)
	}
	p.Reset(since)
	if got, err := p.Values(ctx, rate, hosts, since); got != nil || err != nil {
		t.Errorf("at the moment of the reset: %v, %v; want nothing", got, err)
	}
	waitFor(p, scraped)
	now := time.Now()
	got, err := p.Values(ctx, rate, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Value != 0 {
		t.Errorf("rate since the reset: %v, want 0", got)
	}
	got, err = never.Values(ctx, rate, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Value <= 0 {
		t.Errorf("rate over the minute before, never reset: %v, want the growth before the reset", got)
	}
}

// TestPrometheusSinceQuery checks what a reset provider asks the server:
// a $window and a lookback delta of at most the time since the reset, so
// that neither a range nor an instant vector selector reads a sample from
// before it.
func TestPrometheusSinceQuery(t *testing.T) {
	type request struct{ query, lookback string }
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, request{r.FormValue("query"), r.FormValue("lookback_delta")})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	defer srv.Close()
	p, err := NewPrometheus(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hosts := []Host{{Name: "web-1"}}
	q := Query{Metric: `rate(m{instance=~"$hosts"}[$window]) + g{instance=~"$hosts"}`, Window: time.Minute}
	since := time.Now()
	for _, at := range []time.Duration{-time.Hour, 0} { // never reset, then at or before since
		if at == 0 {
			p.Reset(since)
		}
		if _, err := p.Values(ctx, q, hosts, since.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	for _, at := range []time.Duration{2500 * time.Millisecond, 2 * time.Minute, time.Hour} {
		if _, err := p.Values(ctx, q, hosts, since.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	want := []request{
		{`rate(m{instance=~"web-1"}[1m]) + g{instance=~"web-1"}`, ""},          // never reset: as written, the server's lookback
		{`rate(m{instance=~"web-1"}[2s500ms]) + g{instance=~"web-1"}`, "2.5s"}, // 2.5 s after the reset
		{`rate(m{instance=~"web-1"}[1m]) + g{instance=~"web-1"}`, "2m0s"},
		{`rate(m{instance=~"web-1"}[1m]) + g{instance=~"web-1"}`, "5m0s"}, // never more than the server's default
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(request{})); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
	}
}
