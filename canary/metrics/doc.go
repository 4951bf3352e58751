// Package metrics reads the health metrics a canary compares: per host,
// from each host's Prometheus endpoint (Scrape, the default), or per
// series, from a Prometheus server (Prometheus).
//
// # Scrape
//
// Collect reads every host's text exposition at once (parsed with
// github.com/prometheus/common/expfmt) and keeps it, with the time of the
// scrape, until Reset. A host that cannot be scraped gets no sample for
// that interval; LastError says why. Values computes each host's value of
// a Query from the scrapes made in the trailing window (now-Window, now]:
//
//   - a counter: its rate per second, the increase from the oldest scrape
//     in the window to the newest divided by the time between them; a
//     decrease means the counter restarted from 0 (as in Prometheus). It
//     needs two scrapes in the window.
//   - a gauge (or an untyped metric): its newest value.
//   - a histogram: the Quantile of the observations made in the window:
//     the increase of each cumulative bucket, interpolated linearly inside
//     the bucket the quantile falls in, as Prometheus's histogram_quantile
//     does (the +Inf bucket gives the highest finite bound; the lowest
//     bucket starts at 0). No observation in the window, no value.
//   - a summary: its newest value of the exported quantile equal to
//     Quantile (no value if it exports no such quantile, or has several
//     series).
//
// A family with several series (label sets) is added up: the counters'
// increases, the gauges' values, the histograms' buckets of the same
// bound. With DivideBy, a host's value is the metric's value divided by
// DivideBy's, both computed as above (an error ratio: failures_total
// divided by requests_total); a zero denominator gives no value. A host
// whose exposition lacks the metric has no value.
//
// # Prometheus
//
// Values runs the query as an instant query at now, through the Prometheus
// HTTP API (github.com/prometheus/client_golang/api), after replacing
// $hosts with a regular expression matching exactly the side's host names
// and $window with the window as a PromQL duration:
//
//	rate(demo_requests_failed_total{instance=~"$hosts"}[$window])
//
// Each series of the resulting vector is one sample; a scalar is one
// sample; other results are errors. DivideBy is not supported: write the
// ratio in PromQL.
package metrics
