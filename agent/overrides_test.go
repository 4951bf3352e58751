package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/wire"
)

// realDaemon serves a real daemon for a git repository holding one
// config, feed/job = {"rev": 1}; stop stops it.
func realDaemon(t *testing.T) (url string, stop func()) {
	t.Helper()
	dir := t.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "materialized_configs", "feed", "job.json")
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := os.WriteFile(file, []byte(`{"rev": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, _ := g.Worktree()
	wt.AddWithOptions(&git.AddOptions{All: true})
	if _, err := wt.Commit("one", &git.CommitOptions{Author: &object.Signature{Name: "T", Email: "t@example.com", When: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Config{RepoPath: dir, DataDir: t.TempDir(), Token: "tok", Heartbeat: hb, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			d.Close()
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func request(t *testing.T, method, url string, body any) int {
	t.Helper()
	var b []byte // no body for nil
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// hostOverrides returns the overrides web-1 reported to the daemon.
func hostOverrides(t *testing.T, daemonURL string) []wire.AppliedOverride {
	t.Helper()
	resp, err := http.Get(daemonURL + "/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hosts []struct {
		Host      string
		Metrics   string
		Overrides []wire.AppliedOverride
	}
	json.NewDecoder(resp.Body).Decode(&hosts)
	for _, h := range hosts {
		if h.Host == "web-1" {
			if h.Metrics != "http://127.0.0.1:9/metrics" {
				t.Errorf("web-1 reported metrics %q", h.Metrics)
			}
			return h.Overrides
		}
	}
	return nil
}

// nextConfig returns the next local watch event's config.
func nextConfig(t *testing.T, ch <-chan wire.Event) wire.Config {
	t.Helper()
	select {
	case ev := <-ch:
		if len(ev.Configs) != 1 {
			t.Fatalf("event %+v: want one config", ev)
		}
		return ev.Configs[0]
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a local watch event")
	}
	return wire.Config{}
}

func TestOverrideServedAndReported(t *testing.T) {
	durl, _ := realDaemon(t)
	a, err := New(Config{Daemons: []string{durl}, Host: "web-1", CacheDir: t.TempDir(), Token: "tok", Metrics: "http://127.0.0.1:9/metrics",
		ReportEvery: time.Hour, HeartbeatTimeout: 6 * hb, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String()

	ta := &testAgent{Agent: a, URL: url}
	ta.waitServes(t, "feed/job", `{"rev": 1}`)
	events := localWatch(t, url+"/v1/watch?configs=feed/job")
	if c := nextConfig(t, events); string(c.Data) != `{"rev": 1}` || c.Override != "" {
		t.Fatalf("snapshot: %+v", c)
	}

	o := wire.Override{Config: "feed/job", Hosts: []string{"web-1"}, Type: "Job", Compiled: true, Data: []byte(`{"rev": 2}`), LeaseSeconds: 30}
	if code := request(t, "PUT", durl+"/v1/overrides/run-1", o); code != 200 {
		t.Fatalf("PUT override: %d", code)
	}
	if c := nextConfig(t, events); string(c.Data) != `{"rev": 2}` || c.Override != "run-1" || c.OverrideVersion != 1 || c.Revision != 1 {
		t.Errorf("local event after the override: %+v", c)
	}
	r := get(t, url+"/v1/configs/feed/job")
	if r.body != `{"rev": 2}` || r.header.Get(wire.HeaderOverride) != "run-1/1" || r.header.Get(wire.HeaderRevision) != "1" {
		t.Errorf("GET with an override: %q %v", r.body, r.header)
	}
	waitFor(t, "web-1 to report run-1", func() bool {
		got := hostOverrides(t, durl)
		return len(got) == 1 && got[0] == wire.AppliedOverride{ID: "run-1", Config: "feed/job", Version: 1}
	})
	if st := a.Status(); st.Configs[0].Override != "run-1" || st.Configs[0].OverrideVersion != 1 {
		t.Errorf("status: %+v", st)
	}
	// The cache keeps the committed config.
	if data, _ := os.ReadFile(filepath.Join(a.cfg.CacheDir, "feed", "job.json")); bytes.Contains(data, []byte("rev\": 2")) {
		t.Errorf("the override reached the cache: %s", data)
	}

	if code := request(t, "DELETE", durl+"/v1/overrides/run-1", nil); code != 204 {
		t.Fatalf("DELETE override: %d", code)
	}
	if c := nextConfig(t, events); string(c.Data) != `{"rev": 1}` || c.Override != "" {
		t.Errorf("local event after the override went: %+v", c)
	}
	waitFor(t, "web-1 to report no override", func() bool { return len(hostOverrides(t, durl)) == 0 })
}

// An agent cut off from its daemon drops an override when its lease runs
// out.
func TestOverrideExpiresWithoutDaemon(t *testing.T) {
	durl, stopDaemon := realDaemon(t)
	a, err := New(Config{Daemons: []string{durl}, Host: "web-1", CacheDir: t.TempDir(), Token: "tok",
		ReportEvery: time.Hour, HeartbeatTimeout: time.Hour, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	a.retryMin, a.retryMax = 10*time.Millisecond, 50*time.Millisecond
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	ta := &testAgent{Agent: a, URL: "http://" + ln.Addr().String()}
	ta.waitServes(t, "feed/job", `{"rev": 1}`)
	o := wire.Override{Config: "feed/job", Hosts: []string{"web-1"}, Compiled: true, Data: []byte(`{"rev": 2}`), LeaseSeconds: 1}
	if code := request(t, "PUT", durl+"/v1/overrides/run-1", o); code != 200 {
		t.Fatalf("PUT override: %d", code)
	}
	ta.waitServes(t, "feed/job", `{"rev": 2}`)
	stopDaemon()
	ta.waitServes(t, "feed/job", `{"rev": 1}`)
}

// A daemon renewing an override's lease sends it to the host again: the
// agent keeps serving it for as long as the lease is renewed, and the
// renewal is not a change for the applications.
func TestOverrideRenewedKeepsServing(t *testing.T) {
	durl, _ := realDaemon(t)
	a, err := New(Config{Daemons: []string{durl}, Host: "web-1", CacheDir: t.TempDir(), Token: "tok",
		ReportEvery: time.Hour, HeartbeatTimeout: 6 * hb, Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	ta := &testAgent{Agent: a, URL: "http://" + ln.Addr().String()}
	ta.waitServes(t, "feed/job", `{"rev": 1}`)
	events := localWatch(t, ta.URL+"/v1/watch?configs=feed/job")
	nextConfig(t, events) // the snapshot

	const lease = 3 * time.Second
	o := wire.Override{Config: "feed/job", Hosts: []string{"web-1"}, Compiled: true, Data: []byte(`{"rev": 2}`), LeaseSeconds: int(lease / time.Second)}
	if code := request(t, "PUT", durl+"/v1/overrides/run-1", o); code != 200 {
		t.Fatalf("PUT override: %d", code)
	}
	set := time.Now()
	if c := nextConfig(t, events); c.Override != "run-1" {
		t.Fatalf("local event after the override: %+v", c)
	}
	// Renew every second, and check every 50 ms that the override is
	// served, until well past the lease.
	renewed := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ; time.Since(set) < 3*lease; <-tick.C {
		if time.Since(renewed) >= time.Second {
			if code := request(t, "POST", durl+"/v1/overrides/run-1/renew", nil); code != 200 {
				t.Fatalf("renew: %d", code)
			}
			renewed = time.Now()
		}
		r := get(t, ta.URL+"/v1/configs/feed/job")
		if r.body != `{"rev": 2}` || r.header.Get(wire.HeaderOverride) != "run-1/1" {
			t.Fatalf("%.1f s after the override was set, renewed every second with a %v lease: served %q (%s %q)",
				time.Since(set).Seconds(), lease, r.body, wire.HeaderOverride, r.header.Get(wire.HeaderOverride))
		}
	}
	select {
	case ev := <-events:
		t.Errorf("a renewal reached the applications as a change: %+v", ev)
	default:
	}
}
