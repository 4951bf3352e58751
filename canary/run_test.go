package canary

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/wire"
)

// These tests run the controller against a real daemon and real agents
// in this process; each host's "service" follows its agent with the
// client library and exposes a gauge, demo_bad, whose value the test
// computes from the config the service runs.

const testToken = "tok"

// health gives a service's demo_bad value: for the config data it runs
// and how long it has run it.
type health func(data string, running time.Duration) float64

type testFleet struct {
	t      *testing.T
	mu     sync.Mutex
	lines  []string // the run's progress lines
	repo   string
	git    *git.Repository
	daemon *Daemon
	agents []*agent.Agent
}

func (f *testFleet) commit(data string) string {
	f.t.Helper()
	name := filepath.Join(f.repo, "materialized_configs", "demo", "service.json")
	os.MkdirAll(filepath.Dir(name), 0o755)
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
	wt, _ := f.git.Worktree()
	wt.AddWithOptions(&git.AddOptions{All: true})
	h, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "T", Email: "t@example.com", When: time.Now()}})
	if err != nil {
		f.t.Fatal(err)
	}
	return h.String()
}

func serveOn(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// newTestFleet starts a daemon publishing demo/service = {"mode":"old"}
// and n hosts whose services report h.
func newTestFleet(t *testing.T, n int, h health) *testFleet {
	t.Helper()
	f := &testFleet{t: t, repo: t.TempDir()}
	var err error
	if f.git, err = git.PlainInit(f.repo, false); err != nil {
		t.Fatal(err)
	}
	f.commit(`{"mode":"old"}`)
	d, err := daemon.New(daemon.Config{RepoPath: f.repo, DataDir: t.TempDir(), Token: testToken, Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	durl := serveOn(t, d.Serve)
	f.daemon, _ = NewDaemon(durl, testToken)

	for i := range n {
		host := fmt.Sprintf("web-%d", i+1)
		svc := newTestService(h)
		srv := httptest.NewServer(promhttp.HandlerFor(svc.reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		a, err := agent.New(agent.Config{Daemons: []string{durl}, Host: host, CacheDir: t.TempDir(), Token: testToken,
			Metrics: srv.URL + "/metrics", ReportEvery: 200 * time.Millisecond, Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		aurl := serveOn(t, a.Serve)
		c, err := client.New(client.Options{AgentURL: aurl})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go c.Watch(ctx, "demo/service", svc.set)
		t.Cleanup(cancel)
		f.agents = append(f.agents, a)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		hosts, err := f.daemon.Hosts(context.Background())
		if err == nil && len(Eligible(hosts, "demo/service", time.Now(), true)) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hosts did not report: %v %+v", err, hosts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

type testService struct {
	reg *prometheus.Registry

	mu    sync.Mutex
	data  string
	since time.Time
}

func newTestService(h health) *testService {
	s := &testService{reg: prometheus.NewRegistry()}
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "demo_bad", Help: "How bad the service is doing."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return h(s.data, time.Since(s.since))
	}))
	return s
}

func (s *testService) set(c client.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data != string(c.Data) {
		s.data, s.since = string(c.Data), time.Now()
	}
}

func spec(check Check, duration int) Spec {
	return Spec{Config: "demo/service", Provider: ProviderScrape, ScrapeIntervalSeconds: 1, LeaseSeconds: 5,
		Phases: []Phase{{Name: "two", Targets: Targets{Count: ptr(2)}, DurationSeconds: duration, Checks: []Check{check}}}}
}

func absCheck(metric string, limit float64, breach int, noData string) Check {
	c := absolute()[0]
	c.Metric, c.Predicate.Absolute.Limit, c.BreachSeconds, c.NoData = metric, limit, breach, noData
	c.CanaryAggregation, c.ControlAggregation, c.Worse, c.Quantile, c.WindowSeconds = "MAX", "MAX", "HIGHER_IS_WORSE", 0.99, 5
	return c
}

// runCanary runs a canary of {"mode":"new"} and returns its report; land
// commits the candidate.
func (f *testFleet) runCanary(ctx context.Context, s Spec) (*Report, error) {
	return Run(ctx, Options{
		ID: "run-" + strings.ReplaceAll(f.t.Name(), "/", "-"), SpecName: "demo/canary", Spec: s, Seed: 1, Daemon: f.daemon,
		Candidate: Candidate{Compiled: true, Data: []byte(`{"mode":"new"}`)},
		Land:      func(context.Context) (string, error) { return f.commit(`{"mode":"new"}`), nil },
		Progress: func(line string) {
			f.t.Log(line)
			f.mu.Lock()
			f.lines = append(f.lines, line)
			f.mu.Unlock()
		},
	})
}

// serving returns what each agent serves: override ID or "committed".
func (f *testFleet) serving() []string {
	var out []string
	for _, a := range f.agents {
		st := a.Status()
		o := "committed"
		for _, c := range st.Configs {
			if c.Name == "demo/service" && c.Override != "" {
				o = c.Override
			}
		}
		out = append(out, fmt.Sprintf("r%d:%s", st.Applied, o))
	}
	return out
}

func TestRunChecks(t *testing.T) {
	newIsBad := func(data string, _ time.Duration) float64 {
		if strings.Contains(data, "new") {
			return 1
		}
		return 0
	}
	// Bad for the first 1.5 s on the new config, then fine.
	briefly := func(data string, running time.Duration) float64 {
		if strings.Contains(data, "new") && running < 1500*time.Millisecond {
			return 1
		}
		return 0
	}
	for _, tc := range []struct {
		name    string
		health  health
		check   Check
		outcome string
		reason  string
	}{
		{"brief breach passes", briefly, absCheck("demo_bad", 0.5, 4, "WAIT"), Landed, ""},
		{"sustained breach fails", newIsBad, absCheck("demo_bad", 0.5, 2, "WAIT"), RolledBack, `check "c" failed`},
		{"no data FAIL fails at once", newIsBad, absCheck("demo_missing", 0.5, 0, "FAIL"), RolledBack, "no canary data"},
		{"no data PASS passes", newIsBad, absCheck("demo_missing", 0.5, 0, "PASS"), Landed, ""},
		{"no data WAIT fails at the end", newIsBad, absCheck("demo_missing", 0.5, 0, "WAIT"), RolledBack, "no canary data during the phase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFleet(t, 4, tc.health)
			tc.check.Name = "c"
			started := time.Now()
			rep, err := f.runCanary(context.Background(), spec(tc.check, 5))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != tc.outcome || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("outcome %q (%s), want %q with %q", rep.Outcome, rep.Reason, tc.outcome, tc.reason)
			}
			want := "r1:committed"
			if tc.outcome == Landed {
				want = fmt.Sprintf("r%d:committed", rep.Revision)
			}
			for i, s := range f.serving() {
				if s != want && !(tc.outcome == Landed && strings.HasSuffix(s, ":committed")) {
					t.Errorf("web-%d serves %s after the run, want %s", i+1, s, want)
				}
			}
			if tc.name == "brief breach passes" && !slices.ContainsFunc(f.lines, func(l string) bool { return strings.HasSuffix(l, " breach") }) {
				t.Errorf("no evaluation saw the brief breach: %q", f.lines)
			}
			if tc.name == "no data FAIL fails at once" && time.Since(started) > 4*time.Second {
				t.Errorf("a FAIL check without data took %v to fail, not its first evaluation", time.Since(started))
			}
			runs, err := f.daemon.Runs(context.Background())
			wantStatus := map[string]string{Landed: wire.RunLanded, RolledBack: wire.RunRolledBack}[tc.outcome]
			if err != nil || len(runs) != 1 || runs[0].Status != wantStatus || len(runs[0].Report) == 0 {
				t.Errorf("recorded runs %+v, %v; want one %s with its report", runs, err, wantStatus)
			}
		})
	}
}

// Cancelling the run (Ctrl-C) rolls back.
func TestRunInterrupted(t *testing.T) {
	f := newTestFleet(t, 4, func(string, time.Duration) float64 { return 0 })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			for _, s := range f.serving() {
				if !strings.HasSuffix(s, ":committed") {
					cancel()
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rep, err := f.runCanary(ctx, spec(absCheck("demo_bad", 0.5, 0, "WAIT"), 60))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != RolledBack || rep.Reason != "interrupted" {
		t.Errorf("outcome %q (%s), want rolled_back (interrupted)", rep.Outcome, rep.Reason)
	}
	for i, s := range f.serving() {
		if s != "r1:committed" {
			t.Errorf("web-%d serves %s after the interrupted run", i+1, s)
		}
	}
}
