package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestExpand(t *testing.T) {
	q := Query{Metric: `rate(x_total{host=~"$hosts"}[$window])`, Window: 90 * time.Second}
	got := Expand(q, []Host{{Name: "web-1"}, {Name: "db.2"}})
	if want := `rate(x_total{host=~"web-1|db\.2"}[1m30s])`; got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
}

// TestPrometheus queries a real Prometheus server (Debian's package
// prometheus) that scrapes three test endpoints.
func TestPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("no prometheus on PATH: apt-get install prometheus")
	}
	var targets, addrs []string
	for i, v := range []float64{1, 2, 4} {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_value", Help: "A fixed value."})
		g.Set(v)
		reg.MustRegister(g)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
		targets = append(targets, fmt.Sprintf("  - targets: ['%s']\n    labels: {host: web-%d}\n", addrs[i], i+1))
	}
	dir := t.TempDir()
	config := "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: demo\n  static_configs:\n" + strings.Join(targets, "")
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", logs.String())
		}
	})

	p, err := NewPrometheus("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q := Query{Metric: `max_over_time(demo_value{host=~"$hosts"}[$window])`, Window: 10 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := p.Values(ctx, q, []Host{{Name: "web-1"}, {Name: "web-2"}, {Name: "web-3"}}, time.Now())
		if err == nil && len(got) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no data from prometheus in 60 s: %v %v", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hosts := []Host{{Name: "web-1"}, {Name: "web-3"}}
	got, err := p.Values(ctx, q, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{
		{Series: fmt.Sprintf(`{host="web-1", instance="%s", job="demo"}`, addrs[0]), Value: 1},
		{Series: fmt.Sprintf(`{host="web-3", instance="%s", job="demo"}`, addrs[2]), Value: 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples of web-1 and web-3 (-want +got):\n%s", diff)
	}
	if got, err := p.Values(ctx, Query{Metric: `sum(demo_value{host=~"$hosts"})`}, []Host{{Name: "web-2"}, {Name: "web-3"}}, time.Now()); err != nil || len(got) != 1 || got[0].Value != 6 {
		t.Errorf("sum over web-2 and web-3: %v, %v; want 6", got, err)
	}
	if _, err := p.Values(ctx, Query{Metric: `demo_value{host=~"$hosts"`}, hosts, time.Now()); err == nil || !strings.Contains(err.Error(), `query "demo_value{host=~\"web-1|web-3\""`) {
		t.Errorf("a PromQL syntax error: %v, want an error naming the query", err)
	}
	if _, err := p.Values(ctx, Query{Metric: "demo_value", DivideBy: "x"}, hosts, time.Now()); err == nil {
		t.Error("divide_by with the prometheus provider: no error")
	}
}
