package daemon

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMetrics(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	r.commit("materialized_configs/a.json", "a2")
	// The tailer sets the metrics after the store has the revision, and
	// then Daemon.latest.
	d.waitFor("revision 2", func() bool { return d.Daemon.latest.Load() == 2 })
	w := d.watch("configs=a")
	w.expect("snapshot 2 a@2=a2")
	d.do("POST", "/v1/hosts/web-1", `{"applied":2}`, map[string]string{"Authorization": "Bearer " + token})
	d.do("GET", "/v1/configs/nope", "", nil)

	value := d.metric
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cfg_revision_latest", nil, 2},
		{"cfg_revisions_published_total", nil, 2},
		{"cfg_tailer_errors_total", nil, 0},
		{"cfg_watchers", nil, 1},
		{"cfg_watch_events_sent_total", nil, 1},
		{"cfg_hosts", nil, 1},
		// With a store of its own, the daemon always publishes.
		{"cfg_publishing", nil, 1},
		{"cfg_publisher", []string{"member", d.cfg.Member}, 1},
		{"cfg_http_requests_total", []string{"code", "204", "route", "POST /v1/hosts/{host}"}, 1},
		{"cfg_http_requests_total", []string{"code", "404", "route", "GET /v1/configs/{name...}"}, 1},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value("go_goroutines"); got <= 0 {
		t.Errorf("go_goroutines = %v, want Go runtime metrics", got)
	}
}

// metric returns the value of the daemon's metric name with the given
// label pairs, failing the test if there is none.
func (d *testDaemon) metric(name string, labels ...string) float64 {
	d.t.Helper()
	f, ok := d.scrape()[name]
	if !ok {
		d.t.Fatalf("no metric %s", name)
	}
metrics:
	for _, m := range f.GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue metrics
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
	}
	d.t.Fatalf("no metric %s%v", name, labels)
	return -1
}

// scrape returns the metric families of the daemon's /metrics, parsed
// from the Prometheus text exposition.
func (d *testDaemon) scrape() map[string]*dto.MetricFamily {
	d.t.Helper()
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		d.t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		d.t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return families
}
