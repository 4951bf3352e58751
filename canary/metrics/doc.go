// Package metrics reads the health metrics that cfg canary compares
// between canary and control hosts.
//
// Every scrape interval the canary controller calls [Provider.Collect]
// with every host of both sides, then, for each check, [Provider.Values]
// once with the canary hosts and once with the control hosts.
// [Provider.Reset] is called at the start of each phase, so that nothing
// measured before the phase's change counts in it. There are two
// providers: [Scrape], the default, and [Prometheus].
//
// # The scrape provider
//
// [Scrape] reads each host's Prometheus text endpoint ([Host.URL]) itself,
// all hosts at once, and parses it with
// github.com/prometheus/common/expfmt. It keeps every successful scrape
// since the last Reset with the time it started. A host whose scrape fails
// (no URL, connection refused, a status other than 200 OK, a malformed
// exposition, a timeout) simply gets no new scrape; [Scrape.LastError]
// tells why, naming the host, the URL and, for a malformed exposition,
// the line.
//
// [Query.Metric] is a PromQL metric selector naming one metric family,
// parsed with Prometheus's own parser ([ParseSelector]):
//
//	http_requests_failed_total
//	http_requests_failed_total{endpoint="checkout", code=~"5.."}
//	{__name__="http_requests_failed_total", endpoint!="health"}
//
// Its label matchers select series as PromQL does: = and != compare the
// label's value; =~ and !~ match it against an RE2 regular expression
// anchored at both ends (endpoint=~"check" does not select checkout); a
// label a series does not have has the value "", so endpoint="" selects
// the series without an endpoint label and endpoint!="" those with one.
// The matchers see the labels of the host's exposition only, not the
// instance and job labels a Prometheus server adds; for a histogram, le
// is not a label of its series, nor quantile for a summary. A selector
// without a metric name (an equality matcher on __name__), with an offset
// or @ modifier, or any other PromQL (rate(...), a range [5m]) is an
// error. Selecting no series gives no value.
//
// Values reads that history only. Each host's value is computed from its
// scrapes inside the trailing window (now-Window, now]; hosts without a
// value get no sample, and the samples, one per host (Series is the host's
// name), are sorted by host name. The value depends on the type of the
// metric family in the newest scrape of the window that has it, and is
// computed from the series the selector selects; the PromQL that gives
// the same value over the same samples is shown for each, with m the
// selector:
//
//   - COUNTER: the rate per second over the window. For each series (label
//     set), the increase from its oldest sample in the window to its
//     newest, divided by the time between them. A decrease is a counter
//     reset: the counter restarted from 0, so the increase across it is
//     the new value, as in Prometheus (whose rate, unlike this one, also
//     extrapolates to the edges of the window). A series needs two samples
//     in the window; the host's value is the sum of its series' rates, and
//     it has none if no series has two samples. PromQL:
//     sum(rate(m[window])) without the extrapolation.
//   - GAUGE and UNTYPED: the value in the newest scrape of the window,
//     summed over the series. PromQL: sum(m).
//   - GAUGE and UNTYPED with [Query.Gauge] = [GaugeDeriv]: the per-second
//     growth over the window, computed for each series as PromQL's
//     deriv() computes it: the slope of the least-squares line through
//     the series' samples in the window, with their times in seconds
//     truncated to the millisecond as Prometheus stores them, and sums
//     with Kahan-Neumaier compensation; a series whose samples are all equal grows by 0. A
//     gauge is not a counter: a drop (a restart) is a drop, not a reset.
//     A series needs two samples in the window; the host's value is the sum
//     of its series' slopes, and it has none if no series has two
//     samples. PromQL: sum(deriv(m[window])). A slow leak shows here while
//     the latest value still looks normal; as the history starts at each
//     phase, a slope needs two scrapes made since the phase started.
//     DERIV of a counter, histogram or summary is an error.
//   - HISTOGRAM (classic buckets): the [Query.Quantile] q of the
//     observations made during the window. Each cumulative bucket's
//     increase over the window is taken (a histogram series restarted
//     from 0 when a bucket or its count decreased between two scrapes),
//     the buckets of all selected series with the same upper bound are
//     added, and the quantile is interpolated as Prometheus's
//     histogram_quantile does: with n observations, the bucket where the cumulative count
//     first reaches q×n holds the quantile, found by linear interpolation
//     between the bucket's lower and upper bounds. The lowest bucket's
//     lower bound is 0 (if its upper bound is not positive, that bound is
//     the result); a quantile in the +Inf bucket is the upper bound of the
//     highest finite bucket. No observation in the window: no value.
//     PromQL: histogram_quantile(q, sum by (le) (rate(m_bucket[window]))).
//   - SUMMARY: the value, in the newest scrape of the window, of the
//     quantile the summary exports that equals q. No value if it exports
//     no such quantile, or if the selector selects more than one series,
//     as quantiles of different series cannot be combined.
//
// Other types (gauge histograms) are errors. A quantile outside [0, 1]
// for a histogram or a summary is an error. A host whose scrapes in the
// window lack the family has no value: a labelled counter such as
// failures_total{code} is only exposed once a label value was used, so
// initialize the label values you check (client_golang's WithLabelValues)
// to get a rate of 0 rather than no value.
//
// With [Query.DivideBy], another selector, a host's value is
// value(Metric) / value(DivideBy), both computed as above over the same
// scrapes: an error ratio is Metric failures_total, DivideBy
// requests_total, and checkout's own is
// failures_total{endpoint="checkout"} divided by
// requests_total{endpoint="checkout"}. [Query.Gauge] applies to Metric
// only: DivideBy is read by its type, so a leak per request is a gauge's
// DERIV divided by a counter's rate. A host without either value, or
// whose denominator is 0, has no value. A NaN value, such as a summary
// quantile without observations, is no value.
//
// # The prometheus provider
//
// [Prometheus] runs PromQL over a Prometheus server's HTTP API; Collect
// does nothing. Values replaces, in [Query.Metric], $hosts by a
// regular expression matching exactly the names of the side's hosts (each
// name escaped with regexp.QuoteMeta, joined with |, and escaped again to
// be the contents of a double-quoted PromQL string) and $window by
// [Query.Window] as a PromQL duration, such as 10s or 1m30s:
//
//	rate(demo_requests_total{instance=~"$hosts"}[$window])
//
// It runs the result as an instant query at now. After Reset(since), as
// after the start of a phase, no sample from since or before counts, as
// none does in the scrape provider's history: $window is at most the time
// from since to now, and so is the query's lookback delta (the age of the
// newest sample an instant vector selector reads), which Prometheus takes
// from version 2.43 (an older server uses its own, 5 minutes by default,
// so that a gauge's m{instance=~"$hosts"} can read a sample from before
// since until the server scrapes the host again). Each series of a vector
// result is one sample, named by its label set (such as
// {instance="web-1", job="demo"}); a scalar result is one sample named
// "scalar"; a NaN value is left out; any other result (a range vector, a
// string) is an error naming the query, as is a query that fails (a
// syntax error, the server down). DivideBy and Gauge are not supported:
// write the ratio or the function in PromQL, where the scrape provider's
// reading of a selector m is, for one side's hosts,
//
//	sum by (instance) (rate(m{instance=~"$hosts"}[$window]))    a counter
//	sum by (instance) (m{instance=~"$hosts"})                    a gauge
//	sum by (instance) (deriv(m{instance=~"$hosts"}[$window]))   a gauge with DERIV
package metrics
