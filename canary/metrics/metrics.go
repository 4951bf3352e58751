package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Host is a host whose metrics are read: its name and, for the scrape
// provider, the URL of its Prometheus endpoint (http://host:port/metrics).
type Host struct {
	Name, URL string
}

// Query describes the metric of one check.
type Query struct {
	// Metric is a PromQL metric selector such as
	// http_requests_failed_total{endpoint="checkout"} (scrape provider,
	// see ParseSelector) or a PromQL expression (prometheus provider).
	Metric string
	// DivideBy, for the scrape provider only, is another metric selector:
	// each host's value is then value(Metric) / value(DivideBy).
	DivideBy string
	// Quantile is, for a histogram, the quantile of the observations made
	// in the window and, for a summary, the quantile it exports, e.g. 0.99.
	Quantile float64
	// Window is the trailing window of rates, growth rates and histogram
	// quantiles.
	Window time.Duration
	// Gauge says, for the scrape provider only, how Metric is read if it
	// is a gauge: its latest value (the zero value) or its growth rate.
	Gauge Gauge
}

// Gauge says how the scrape provider reads a gauge.
type Gauge int

const (
	// GaugeLatest reads a gauge's latest value.
	GaugeLatest Gauge = iota
	// GaugeDeriv reads a gauge's per-second growth over the window, as
	// PromQL's deriv() computes it.
	GaugeDeriv
)

// String returns the name a canary spec gives g: LATEST or DERIV.
func (g Gauge) String() string {
	switch g {
	case GaugeLatest:
		return "LATEST"
	case GaugeDeriv:
		return "DERIV"
	}
	return fmt.Sprintf("Gauge(%d)", int(g))
}

// Sample is one value of a metric: for the scrape provider one per host
// (Series is the host's name), for the prometheus provider one per series
// of the query's result (Series is its label set).
type Sample struct {
	Series string
	Value  float64
}

// ErrUnavailable is what a provider's error is when it could not read its
// source of metrics at all (the prometheus provider's server failing a
// query), rather than the metrics of some hosts: nothing is known then of
// the canaries or of the control, which is not a lack of data about a
// change.
var ErrUnavailable = errors.New("metrics unavailable")

// unavailable is an error that is ErrUnavailable, with its own message.
type unavailable struct{ error }

func (e unavailable) Unwrap() []error { return []error{e.error, ErrUnavailable} }

// Provider reads metrics.
type Provider interface {
	// Collect is called once per interval with every host of both sides:
	// the scrape provider scrapes them, the prometheus provider does
	// nothing.
	Collect(ctx context.Context, hosts []Host) error
	// Values returns the samples of q for hosts at time now. An error
	// that is ErrUnavailable says that nothing could be read, of any
	// host; any other error, that some hosts' values are missing.
	Values(ctx context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error)
	// Reset forgets what was collected, and from then on no sample taken
	// at or before since counts; it is called at the start of each phase
	// with the time it starts, so that nothing from before the phase's
	// change counts in it.
	Reset(since time.Time)
}
