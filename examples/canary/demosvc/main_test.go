package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// compileChange compiles the example's sources with source/demo/service.cconf
// replaced by changes/NAME and returns demo/service's JSON.
func compileChange(t *testing.T, name string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "source"), os.DirFS("../source")); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("../changes", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "source/demo/service.cconf"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := compiler.Build(context.Background(), dir, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Diags(); len(d) > 0 {
		t.Fatalf("changes/%s: %s", name, d.Error())
	}
	data, err := os.ReadFile(filepath.Join(dir, "materialized_configs/demo/service.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func decodeDemo(t *testing.T, data []byte) Demo {
	t.Helper()
	var d Demo
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return d
}

// TestChanges checks that both changes compile and change what their
// comments say.
func TestChanges(t *testing.T) {
	base, err := os.ReadFile("../materialized_configs/demo/service.json")
	if err != nil {
		t.Fatal(err)
	}
	b := decodeDemo(t, base)
	good := decodeDemo(t, compileChange(t, "good.cconf"))
	bad := decodeDemo(t, compileChange(t, "bad.cconf"))
	if b != (Demo{Greeting: "hello from demosvc", WorkMS: 5, TimeoutMS: 50}) {
		t.Errorf("baseline: %+v", b)
	}
	if good.Greeting == b.Greeting || good.WorkMS != 4 || good.TimeoutMS != b.TimeoutMS {
		t.Errorf("good change: %+v, want a new greeting, work_ms 4, timeout_ms %d", good, b.TimeoutMS)
	}
	if bad != (Demo{Greeting: b.Greeting, WorkMS: b.WorkMS, TimeoutMS: 4}) {
		t.Errorf("bad change: %+v, want only timeout_ms 4", bad)
	}
}

// buildDemosvc builds this command into a temporary directory.
func buildDemosvc(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demosvc")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startAgent runs an agent in-process against daemon and returns its URL
// and cache directory.
func startAgent(t *testing.T, daemon string) (url, cacheDir string) {
	t.Helper()
	cacheDir = t.TempDir()
	a, err := agent.New(agent.Config{Daemons: []string{daemon}, Host: "demo-1", CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String(), cacheDir
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// running returns what /config says, or nil before the first config.
func running(t *testing.T, base string) *Running {
	t.Helper()
	code, body := get(t, base+"/config")
	if code == http.StatusServiceUnavailable {
		return nil
	}
	if code != http.StatusOK {
		t.Fatalf("/config: %d %s", code, body)
	}
	var r Running
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/config: %v\n%s", err, body)
	}
	return &r
}

// metrics is what /metrics reports.
type metrics struct {
	requests, failed, revision float64
	observations               uint64
}

// scrape reads /metrics, which must parse as Prometheus text with every
// metric of the service, of the right type.
func scrape(t *testing.T, base string) metrics {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	want := map[string]string{
		"demo_requests_total":           "COUNTER",
		"demo_requests_failed_total":    "COUNTER",
		"demo_request_duration_seconds": "HISTOGRAM",
		"demo_config_revision":          "GAUGE",
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok || len(f.GetMetric()) != 1 {
			t.Fatalf("/metrics has no single %s:\n%s", name, body)
		}
		if got := f.GetType().String(); got != typ {
			t.Fatalf("%s is a %s, want a %s", name, got, typ)
		}
	}
	h := fams["demo_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if n := len(h.GetBucket()); n < 10 {
		t.Errorf("demo_request_duration_seconds has %d buckets", n)
	}
	return metrics{
		requests:     fams["demo_requests_total"].GetMetric()[0].GetCounter().GetValue(),
		failed:       fams["demo_requests_failed_total"].GetMetric()[0].GetCounter().GetValue(),
		revision:     fams["demo_config_revision"].GetMetric()[0].GetGauge().GetValue(),
		observations: h.GetSampleCount(),
	}
}

func TestDemosvcFollowsItsConfig(t *testing.T) {
	bin := buildDemosvc(t)
	base, err := os.ReadFile("../materialized_configs/demo/service.json")
	if err != nil {
		t.Fatal(err)
	}
	good, bad := compileChange(t, "good.cconf"), compileChange(t, "bad.cconf")
	publish := func(repo *agenttest.Repo, data []byte) int64 {
		return repo.Publish(agenttest.Change{Name: "demo/service", Type: "Demo", Data: data})
	}

	// A daemon with no config yet, the host's agent, and demosvc.
	repo := agenttest.NewRepo(t, 50*time.Millisecond)
	d := agenttest.NewDaemon(t, repo)
	agentURL, cacheDir := startAgent(t, d.URL)
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(bin, "-addr-file", addrFile, "-agent", agentURL, "-cache-dir", cacheDir, "-config", "demo/service")
	svc, exited := startDemosvc(t, cmd, addrFile)

	// No config yet: it serves, but not /.
	if code, body := get(t, svc+"/"); code != http.StatusServiceUnavailable || body != "no config yet\n" {
		t.Errorf("/ before the config: %d %q", code, body)
	}
	if r := running(t, svc); r != nil {
		t.Errorf("/config before the config: %+v", r)
	}
	requests, failed := 1.0, 1.0

	// checkMetrics checks /metrics against what this test did.
	checkMetrics := func(rev int64) {
		t.Helper()
		m := scrape(t, svc)
		want := metrics{requests: requests, failed: failed, revision: float64(rev), observations: uint64(requests)}
		if m != want {
			t.Errorf("/metrics: %+v, want %+v", m, want)
		}
	}
	checkMetrics(0)

	// waitFor waits until demosvc runs revision rev, and checks that it
	// runs data.
	waitFor := func(rev int64, data []byte) Demo {
		t.Helper()
		var r *Running
		eventually(t, fmt.Sprintf("revision %d on /config", rev), func() bool {
			r = running(t, svc)
			return r != nil && r.Revision == rev
		})
		if want := decodeDemo(t, data); r.Config != want || r.Commit != repo.Commit(rev) || r.Override != "" {
			t.Errorf("/config: %+v, want revision %d, commit %s, config %+v", r, rev, repo.Commit(rev), want)
		}
		return r.Config
	}
	// hit sends n requests to / and returns how many failed with 503 for
	// a timeout; every other answer is a 200 with greeting.
	hit := func(n int, greeting string) (timeouts int) {
		t.Helper()
		for range n {
			code, body := get(t, svc+"/")
			switch {
			case code == http.StatusOK && body == greeting+"\n":
			case code == http.StatusServiceUnavailable && strings.HasPrefix(body, "timed out after 4ms"):
				timeouts++
			default:
				t.Fatalf("/: %d %q", code, body)
			}
		}
		requests += float64(n)
		failed += float64(timeouts)
		return timeouts
	}

	// The committed config: work 2.5 to 7.5 ms, timeout 50 ms, no failures.
	rev := publish(repo, base)
	cfg := waitFor(rev, base)
	if n := hit(20, cfg.Greeting); n != 0 {
		t.Errorf("baseline: %d of 20 requests failed", n)
	}
	checkMetrics(rev)

	// The bad change, picked up without a restart: a 4 ms timeout cuts
	// off the 70% of requests whose work needs more.
	rev = publish(repo, bad)
	cfg = waitFor(rev, bad)
	if n := hit(100, cfg.Greeting); n <= 50 || n == 100 {
		t.Errorf("bad change: %d of 100 requests failed, want most but not all", n)
	}
	checkMetrics(rev)

	// The good change: a new greeting, less work, no failures.
	rev = publish(repo, good)
	cfg = waitFor(rev, good)
	if n := hit(20, cfg.Greeting); n != 0 {
		t.Errorf("good change: %d of 20 requests failed", n)
	}
	checkMetrics(rev)

	// SIGTERM stops it cleanly.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("demosvc after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("demosvc still running 15s after SIGTERM")
	}
}

// TestDemosvcWaitsForItsAgent starts demosvc before its agent, as the
// demo in examples/README.md does: it listens at once, reads the agent's
// address from -agent-addr-file once the file is written, and then runs
// its config.
func TestDemosvcWaitsForItsAgent(t *testing.T) {
	bin := buildDemosvc(t)
	base, err := os.ReadFile("../materialized_configs/demo/service.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addrFile, agentAddrFile := filepath.Join(dir, "addr"), filepath.Join(dir, "agent.addr")
	cmd := exec.Command(bin, "-addr-file", addrFile, "-agent-addr-file", agentAddrFile, "-config", "demo/service")
	svc, _ := startDemosvc(t, cmd, addrFile)
	if code, body := get(t, svc+"/"); code != http.StatusServiceUnavailable || body != "no config yet\n" {
		t.Errorf("/ before the agent: %d %q", code, body)
	}

	// The agent starts, and says where it listens.
	repo := agenttest.NewRepo(t, 50*time.Millisecond)
	rev := repo.Publish(agenttest.Change{Name: "demo/service", Type: "Demo", Data: base})
	d := agenttest.NewDaemon(t, repo)
	agentURL, _ := startAgent(t, d.URL)
	if err := os.WriteFile(agentAddrFile, []byte(strings.TrimPrefix(agentURL, "http://")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the config on /config", func() bool {
		r := running(t, svc)
		return r != nil && r.Revision == rev
	})
}

// startDemosvc starts cmd, a demosvc writing its address to addrFile, stops
// it when the test ends (showing its output if the test failed), and
// returns its URL once it listens, and where its exit is sent (a test that
// takes it puts it back for the cleanup).
func startDemosvc(t *testing.T, cmd *exec.Cmd, addrFile string) (string, chan error) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("demosvc:\n%s", logs.String())
		}
	})
	var svc string
	eventually(t, "demosvc's address in "+addrFile, func() bool {
		b, err := os.ReadFile(addrFile)
		svc = "http://" + strings.TrimSpace(string(b))
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	return svc, exited
}
