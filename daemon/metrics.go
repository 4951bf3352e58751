package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the daemon's Prometheus metrics (docs/api.md), in a registry
// of its own so that several daemons can live in one process.
type metrics struct {
	reg          *prometheus.Registry
	latest       prometheus.Gauge
	published    prometheus.Counter
	tailerErrors prometheus.Counter
	watchers     prometheus.Gauge
	eventsSent   prometheus.Counter
	dropped      prometheus.Counter
	requests     *prometheus.CounterVec
	// leasesExpired counts overrides removed because their lease ran out.
	leasesExpired prometheus.Counter
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		latest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cfg_revision_latest", Help: "The latest published revision.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_revisions_published_total", Help: "Revisions published since the daemon started.",
		}),
		tailerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_tailer_errors_total", Help: "Failed attempts to read or publish the tailed branch.",
		}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cfg_watchers", Help: "Open watch streams.",
		}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_watch_events_sent_total", Help: "Snapshot and update events sent on watch streams.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_watchers_dropped_total", Help: "Watch streams closed because they fell behind.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfg_http_requests_total", Help: "HTTP requests by status code and route.",
		}, []string{"code", "route"}),
		leasesExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_override_leases_expired_total", Help: "Overrides removed because their lease ran out.",
		}),
	}
	hosts := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_hosts", Help: "Hosts that have reported to the daemon.",
	}, func() float64 { return float64(d.hosts.len()) })
	overrides := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_overrides", Help: "Overrides in effect.",
	}, func() float64 { return float64(d.overrides.len()) })
	damaged := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cfg_store_damaged_reads_total", Help: "Store reads refused because what they read was damaged (a value failing its checksum, a page the file lacks).",
	}, func() float64 { return float64(d.store.DamagedReads()) })
	m.reg.MustRegister(m.latest, m.published, m.tailerErrors, m.watchers, m.eventsSent, m.dropped, m.requests, hosts, overrides, m.leasesExpired, damaged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
