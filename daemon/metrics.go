package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reasons a watch stream is dropped, as cfg_watchers_dropped_total labels
// them.
const (
	dropBehind       = "behind"
	dropWriteTimeout = "write_timeout"
	dropUnreachable  = "unreachable"
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
	// updatesEncoded counts update events of published revisions
	// encoded: streams that watch the same configs share one.
	updatesEncoded prometheus.Counter
	dropped        *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	requests       *prometheus.CounterVec
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
		updatesEncoded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfg_watch_updates_encoded_total", Help: "Update events of published revisions encoded for watch streams: the streams that watch the same configs of a revision share one encoding.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfg_watchers_dropped_total", Help: "Watch streams the daemon closed: because they fell behind (reason behind), because their client took in nothing for the write timeout (reason write_timeout), or because the daemon found it could not reach its shared store while the stream read it (reason unreachable).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfg_watchers_rejected_total", Help: "Watch requests answered 503 because the daemon serves the most streams it may (reason streams), the client's address holds the most it may (reason address), or their parameters would take the daemon's or the address's watch parameter bytes above their bound (reason bytes).",
		}, []string{"reason"}),
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
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_watch_queued_bytes", Help: "Config data watch streams have yet to write: of the revisions waiting on each stream, and of the configs they are writing (streams writing one version share its bytes, so memory holds less).",
	}, func() float64 { return float64(d.hub.queued() + d.writing.Load()) })
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_http_connections", Help: "Open client connections.",
	}, func() float64 { return float64(len(d.conns)) })
	connsMax := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_http_connections_max", Help: "The most client connections the daemon serves at once; others wait to be accepted.",
	}, func() float64 { return float64(cap(d.conns)) })
	publishing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfg_publishing", Help: "1 while this daemon publishes: always with a store of its own, while elected with a shared one.",
	}, func() float64 {
		if d.publishing() {
			return 1
		}
		return 0
	})
	for _, reason := range []string{dropBehind, dropWriteTimeout, dropUnreachable} {
		m.dropped.WithLabelValues(reason)
	}
	for _, reason := range []string{rejectedStreams, rejectedAddress, rejectedBytes} {
		m.rejected.WithLabelValues(reason)
	}
	m.reg.MustRegister(m.latest, m.published, m.tailerErrors, m.watchers, m.eventsSent, m.updatesEncoded, m.dropped, m.rejected, queued, conns, connsMax,
		m.requests, hosts, overrides, m.leasesExpired, damaged, publishing, publisherCollector{d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// publisherCollector collects cfg_publisher{member}: 1 for the daemon
// that publishes, as this daemon last read it (none while no daemon is
// elected, or when the read fails).
type publisherCollector struct{ d *Daemon }

var publisherDesc = prometheus.NewDesc("cfg_publisher", "1 for the member (Config.Member) of the daemon that publishes, as read from the election at most a second before the scrape; none while no daemon is elected.", []string{"member"}, nil)

func (c publisherCollector) Describe(ch chan<- *prometheus.Desc) { ch <- publisherDesc }

func (c publisherCollector) Collect(ch chan<- prometheus.Metric) {
	leader, err := c.d.leader(c.d.ctx)
	if err != nil || leader == "" {
		return
	}
	ch <- prometheus.MustNewConstMetric(publisherDesc, prometheus.GaugeValue, 1, leader)
}
