package canary

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/canary/metrics"
)

// These tests run the controller in simulated time (sim_test.go) with
// the real scrape provider reading real Prometheus endpoints on
// 127.0.0.1: each host's service exposes what a release engineer checks,
// requests and failures per endpoint and memory in use, computed from
// what the simulated host serves and the simulated clock.

// endpointRates are the requests per second each service serves, by
// endpoint: checkout is a small share of the traffic.
var endpointRates = map[string]float64{"browse": 200, "checkout": 10}

// oldFailures is the share of requests that fail on every endpoint with
// the committed config.
const oldFailures = 0.01

// baseMemory is the memory a service uses with the committed config.
const baseMemory = 50e6

// candidate says how a service behaves with the candidate config
// ("new").
type candidate struct {
	failures map[string]float64 // the share of failed requests by endpoint, oldFailures if not given
	leak     float64            // memory growth, bytes per second
}

// endpointService is a host's service: it exposes
// http_requests_total{endpoint}, http_requests_failed_total{endpoint}
// and demo_memory_bytes. The counters grow with the simulated time
// between scrapes at the rates of endpointRates and the failure shares of
// the config the host serves; the memory grows by the candidate's leak
// from the moment the host serves it.
type endpointService struct {
	f    *simFleet
	host string
	cand candidate
	reg  *prometheus.Registry

	mu                sync.Mutex
	last              time.Time
	requests, failing map[string]float64
}

var (
	requestsDesc = prometheus.NewDesc("http_requests_total", "Requests.", []string{"endpoint"}, nil)
	failedDesc   = prometheus.NewDesc("http_requests_failed_total", "Failed requests.", []string{"endpoint"}, nil)
	memoryDesc   = prometheus.NewDesc("demo_memory_bytes", "Memory in use.", nil, nil)
)

func (s *endpointService) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(s, ch) }

func (s *endpointService) Collect(ch chan<- prometheus.Metric) {
	now := s.f.lock()
	h := s.f.host(s.host)
	data, since := h.serving().data, now
	for i := len(h.history) - 1; i >= 0 && h.history[i].data == data; i-- {
		since = h.history[i].at
	}
	s.f.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	dt := now.Sub(s.last).Seconds()
	s.last = now
	isNew := data == "new"
	for e, rate := range endpointRates {
		share := oldFailures
		if f, ok := s.cand.failures[e]; ok && isNew {
			share = f
		}
		s.requests[e] += rate * dt
		s.failing[e] += rate * share * dt
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, s.requests[e], e)
		ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, s.failing[e], e)
	}
	memory := baseMemory
	if isNew {
		memory += s.cand.leak * now.Sub(since).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(memoryDesc, prometheus.GaugeValue, memory)
}

// newEndpointFleet returns a simulated fleet of n hosts whose services
// expose their metrics on real listeners.
func newEndpointFleet(t *testing.T, n int, c candidate) *simFleet {
	t.Helper()
	f := newSim(t, n)
	for _, h := range f.hosts {
		svc := &endpointService{f: f, host: h.name, cand: c, reg: prometheus.NewRegistry(), last: simStart,
			requests: map[string]float64{}, failing: map[string]float64{}}
		svc.reg.MustRegister(svc)
		srv := httptest.NewServer(promhttp.HandlerFor(svc.reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		h.metrics = srv.URL + "/metrics"
	}
	return f
}

// runScraped runs a canary of spec on f with the real scrape provider on
// the simulated clock.
func runScraped(f *simFleet, spec Spec) (*Report, error) {
	return f.run(context.Background(), spec, nil, func(o *Options) {
		scrape := metrics.NewScrape(nil, 10*time.Second)
		scrape.Now = f.clock.Now
		o.Provider = scrape
	})
}

// metricSpec returns a spec of one 8 s phase on two canaries with checks,
// scraped every second. Its lease outlasts the phase: these tests are
// about what the checks see, not about leases.
func metricSpec(checks ...Check) Spec {
	return simSpec(1, 60, phase("two", Targets{Count: ptr(2)}, 8, checks...))
}

// metricCheck returns a check of metric that fails when the canaries'
// mean is above the controls' × maxRatio + slack for 2 s.
func metricCheck(name, metric, divideBy string, maxRatio, slack float64) Check {
	c := relCheck(name, metric, maxRatio, slack, 2)
	c.DivideBy, c.WindowSeconds = divideBy, 3
	return c
}

// checkReport returns the report of the check named name in the run's
// last phase.
func checkReport(t *testing.T, rep *Report, name string) CheckReport {
	t.Helper()
	if len(rep.Phases) == 0 {
		t.Fatalf("no phase in the report %+v", rep)
	}
	for _, c := range rep.Phases[len(rep.Phases)-1].Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in the report %+v", name, rep.Phases)
	return CheckReport{}
}

// reported returns a reported value, NaN if there was none.
func reported(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}

// assertRolledBack checks that the run rolled back because check failed,
// and that every host serves the committed config again.
func assertRolledBack(t *testing.T, f *simFleet, rep *Report, check string) {
	t.Helper()
	if want := fmt.Sprintf("phase %q: check %q failed: ", rep.Phases[0].Name, check); rep.Outcome != RolledBack || !strings.HasPrefix(rep.Reason, want) {
		t.Errorf("outcome %q (%s), want %q with a reason starting %q", rep.Outcome, rep.Reason, RolledBack, want)
	}
	f.checkServing(t, rep)
}

// TestPerEndpointErrorsFailThePhase: the candidate makes most checkout
// requests fail, but checkout is so small a share of the traffic that the
// whole service's error ratio stays within its predicate. The check of
// checkout's own ratio, a label matcher on both counters, fails the phase.
func TestPerEndpointErrorsFailThePhase(t *testing.T) {
	t.Parallel()
	f := newEndpointFleet(t, 4, candidate{failures: map[string]float64{"checkout": 0.6}})
	// On the canaries, (200 × 0.01 + 10 × 0.6) / 210 = 3.8 % of requests
	// fail, within the controls' 1 % × 1.5 + 3 %; checkout's 60 % is not.
	whole := metricCheck("error ratio", "http_requests_failed_total", "http_requests_total", 1.5, 0.03)
	checkout := metricCheck("checkout errors", `http_requests_failed_total{endpoint="checkout"}`, `http_requests_total{endpoint="checkout"}`, 1.5, 0.03)
	rep, err := runScraped(f, metricSpec(whole, checkout))
	if err != nil {
		t.Fatal(err)
	}
	assertRolledBack(t, f, rep, "checkout errors")
	w, c := checkReport(t, rep, "error ratio"), checkReport(t, rep, "checkout errors")
	if w.Verdict != judge.Pass || !(reported(w.Canary) < 1.5*reported(w.Control)+0.03) {
		t.Errorf("the whole service's error ratio: %s with canary %v, control %v; want it to pass", w.Verdict, reported(w.Canary), reported(w.Control))
	}
	if c.Verdict != judge.Fail || !(reported(c.Canary) > 0.3 && math.Abs(reported(c.Control)-oldFailures) < 1e-6) {
		t.Errorf("checkout's error ratio: %s with canary %v, control %v; want a failure with the canaries near 0.6 and the controls at %v",
			c.Verdict, reported(c.Canary), reported(c.Control), oldFailures)
	}
}

// TestLeakRateFailsThePhase: the candidate leaks 100 kB a second, a slow
// leak next to 50 MB in use. Read as its latest value, the memory of the
// canaries stays within 10 % of the controls' and the change lands; read
// as its growth rate (gauge = DERIV), it fails the phase.
func TestLeakRateFailsThePhase(t *testing.T) {
	const leak = 100e3
	for _, tc := range []struct {
		name    string
		gauge   string
		outcome Outcome
	}{
		{"growth rate", "DERIV", RolledBack},
		{"latest value", "", Landed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newEndpointFleet(t, 4, candidate{leak: leak})
			memory := metricCheck("memory growth", "demo_memory_bytes", "", 1.1, 10e3)
			memory.Gauge, memory.WindowSeconds = tc.gauge, 4
			rep, err := runScraped(f, metricSpec(memory))
			if err != nil {
				t.Fatal(err)
			}
			c := checkReport(t, rep, "memory growth")
			if tc.outcome == Landed {
				if rep.Outcome != Landed || !(reported(c.Canary) > baseMemory) || reported(c.Control) != baseMemory {
					t.Errorf("outcome %q (%s), memory %v on the canaries, %v on the controls; want it landed with the canaries over %v",
						rep.Outcome, rep.Reason, reported(c.Canary), reported(c.Control), baseMemory)
				}
				return
			}
			assertRolledBack(t, f, rep, "memory growth")
			// The controls' memory is flat: a slope of exactly 0.
			if c.Verdict != judge.Fail || !(reported(c.Canary) > leak/2 && reported(c.Canary) < leak*1.5) || reported(c.Control) != 0 {
				t.Errorf("memory growth: %s with canary %v, control %v; want a failure with the canaries near %v a second and the controls at 0",
					c.Verdict, reported(c.Canary), reported(c.Control), leak)
			}
		})
	}
}

// TestParseSpecMetrics checks that a spec whose metrics the provider
// cannot read is refused before anything is pushed.
func TestParseSpecMetrics(t *testing.T) {
	for _, tc := range []struct {
		name             string
		provider         string
		metric, divideBy string
		gauge            string
		want             string
		wantQuery        metrics.Query
	}{
		{name: "a selector and a growth rate", provider: ProviderScrape, metric: `mem{pool=~"heap|stack"}`, gauge: "DERIV",
			wantQuery: metrics.Query{Metric: `mem{pool=~"heap|stack"}`, Quantile: 0.99, Window: 3 * time.Second, Gauge: metrics.GaugeDeriv}},
		{name: "per-endpoint ratio", provider: ProviderScrape, metric: `failed_total{endpoint="checkout"}`, divideBy: `requests_total{endpoint="checkout"}`, gauge: "LATEST",
			wantQuery: metrics.Query{Metric: `failed_total{endpoint="checkout"}`, DivideBy: `requests_total{endpoint="checkout"}`, Quantile: 0.99, Window: 3 * time.Second}},
		{name: "PromQL", provider: ProviderPrometheus, metric: `deriv(mem{instance=~"$hosts"}[$window])`,
			wantQuery: metrics.Query{Metric: `deriv(mem{instance=~"$hosts"}[$window])`, Quantile: 0.99, Window: 3 * time.Second}},
		{name: "a bad selector", provider: ProviderScrape, metric: `failed_total{endpoint="checkout"`,
			want: `phase "two": check "c": metric: metric selector "failed_total{endpoint=\"checkout\"": 1:33: parse error: unexpected end of input inside braces`},
		{name: "PromQL with the scrape provider", provider: ProviderScrape, metric: `failed_total`, divideBy: `rate(requests_total[1m])`,
			want: `phase "two": check "c": divide_by: metric selector "rate(requests_total[1m])": got a call of rate(), want name{label="value", ...}`},
		{name: "an unknown gauge reading", provider: ProviderScrape, metric: "mem", gauge: "SLOPE",
			want: `phase "two": check "c": gauge: "SLOPE" is not known to this version of cfg`},
		{name: "a growth rate with the prometheus provider", provider: ProviderPrometheus, metric: "mem", gauge: "DERIV",
			want: `phase "two": check "c": gauge: DERIV is for the SCRAPE provider; with PROMETHEUS, write the function in PromQL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := metricCheck("c", tc.metric, tc.divideBy, 1.5, 0.01)
			c.Gauge = tc.gauge
			s := metricSpec(c)
			s.Provider = tc.provider
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSpec(data)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Errorf("ParseSpec: %v\nwant %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantQuery, got.Phases[0].Checks[0].query()); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOnlySamplesAfterApplyCount: a candidate that fixes checkout's
// failures. The second phase's canaries include a control of the first,
// scraped then while it ran the committed config, failing 1 % of its
// requests; the check's window reaches back into the first phase. Only
// the scrapes made after the canaries applied the candidate count, so
// every evaluation sees no failure on the canaries and the change lands.
func TestOnlySamplesAfterApplyCount(t *testing.T) {
	t.Parallel()
	f := newEndpointFleet(t, 6, candidate{failures: map[string]float64{"checkout": 0}})
	checkout := absCheck("checkout errors", `http_requests_failed_total{endpoint="checkout"}`, 0.001, 0, "WAIT")
	checkout.DivideBy, checkout.WindowSeconds = `http_requests_total{endpoint="checkout"}`, 30
	spec := simSpec(1, 60, phase("one", Targets{Count: ptr(1)}, 8, checkout), phase("three", Targets{Count: ptr(3)}, 8, checkout))
	plan, err := Plan(spec, hostsN(6), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan[1].Canary, plan[0].Control[0]) {
		t.Fatalf("the plan %+v does not make the first phase's control a canary of the second", plan)
	}
	rep, err := runScraped(f, spec)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != Landed {
		t.Fatalf("outcome %q (%s), want landed", rep.Outcome, rep.Reason)
	}
	for _, p := range rep.Phases {
		if len(p.Evaluations) == 0 {
			t.Errorf("phase %q: no evaluation", p.Name)
		}
		for _, ev := range p.Evaluations {
			if c := ev.Checks[0]; c.Canary == nil || *c.Canary != 0 {
				t.Errorf("phase %q at %vs: checkout's error ratio on the canaries %v, want 0", p.Name, ev.Seconds, reported(c.Canary))
			}
		}
	}
}
