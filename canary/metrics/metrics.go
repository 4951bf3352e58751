package metrics

import (
	"context"
	"time"
)

// Host is a host whose metrics are read: its name and, for the scrape
// provider, its Prometheus endpoint (http://host:port/metrics).
type Host struct {
	Name, URL string
}

// Query describes the metric of one check.
type Query struct {
	// Metric is a metric family name (scrape) or a PromQL expression
	// (prometheus).
	Metric string
	// DivideBy, for the scrape provider, is another metric family each
	// host's value is divided by.
	DivideBy string
	// Quantile is the quantile of a histogram's observations, or the
	// quantile a summary exports.
	Quantile float64
	// Window is the trailing window of rates and histogram quantiles.
	Window time.Duration
}

// Sample is one value of a metric: for the scrape provider, one per host
// (Series is the host's name); for prometheus, one per series of the
// result (Series is its label set).
type Sample struct {
	Series string
	Value  float64
}

// Provider reads metrics. Collect is called once per interval with every
// host of both sides; Values then returns the samples of a query for some
// of them at time now.
type Provider interface {
	Collect(ctx context.Context, hosts []Host) error
	Values(ctx context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error)
	// Reset forgets what was collected, so that nothing from before a
	// phase's change counts in it.
	Reset()
}
