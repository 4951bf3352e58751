package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// QueryTimeout bounds each query of the prometheus provider.
const QueryTimeout = 30 * time.Second

// Prometheus is the provider that runs PromQL over a Prometheus server's
// HTTP API; the server does the scraping.
type Prometheus struct {
	api     v1.API
	url     string
	timeout time.Duration // of each query: QueryTimeout
	since   atomic.Int64  // Reset's since, in Unix nanoseconds; 0: not set
}

var _ Provider = (*Prometheus)(nil)

// NewPrometheus returns a provider querying the Prometheus server at
// baseURL, such as http://prometheus:9090.
func NewPrometheus(baseURL string) (*Prometheus, error) {
	u, err := url.Parse(baseURL)
	if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
		err = errors.New("want http://host:port or https://host:port")
	}
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", baseURL, err)
	}
	c, err := api.NewClient(api.Config{Address: baseURL})
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", baseURL, err)
	}
	return &Prometheus{api: v1.NewAPI(c), url: baseURL, timeout: QueryTimeout}, nil
}

// Collect implements Provider: the server scrapes, there is nothing to do.
func (p *Prometheus) Collect(context.Context, []Host) error { return nil }

// Reset implements Provider: there is no history to forget, but from then
// on Values reads only the samples taken after since (see Values).
func (p *Prometheus) Reset(since time.Time) { p.since.Store(since.UnixNano()) }

// maxLookback is Prometheus's default lookback delta: an instant vector
// selector's value is the newest sample at most this old.
const maxLookback = 5 * time.Minute

// Values implements Provider. It expands q.Metric ($hosts and $window,
// see the package documentation) and runs it as an instant query at now.
// A query the server fails, except as a bad query (it cannot be reached,
// it times out, it answers with an error of its own or nothing it
// understands), is ErrUnavailable.
// Each series of a vector result is one sample, named by its label set,
// and a scalar result is one sample named "scalar"; NaN values are left
// out. Samples are sorted by series. With no hosts, there is no sample
// and nothing is queried.
//
// After Reset(since), only samples taken after since count: $window is
// at most the time from since to now (a rate over the first seconds of a
// phase is over those seconds only), and the query's lookback delta (how
// old the newest sample of an instant vector selector, such as a gauge's
// m{instance=~"$hosts"}, may be) is too, so that a gauge read before the
// first scrape after since has no value rather than the one from before.
// Prometheus takes a query's own lookback delta from version 2.43; an
// older server ignores it, and uses its own (5 minutes by default) for
// instant vector selectors. At or before since, there is no sample.
func (p *Prometheus) Values(ctx context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error) {
	if q.DivideBy != "" {
		return nil, fmt.Errorf("query %s: divide_by %s is not supported by the prometheus provider: write the ratio in PromQL", q.Metric, q.DivideBy)
	}
	if q.Gauge != GaugeLatest {
		return nil, fmt.Errorf("query %s: gauge %s is not supported by the prometheus provider: write the function in PromQL, such as deriv(m{instance=~\"$hosts\"}[$window])", q.Metric, q.Gauge)
	}
	if q.Metric == "" {
		return nil, errors.New("no query")
	}
	if q.Window <= 0 && strings.Contains(q.Metric, "$window") {
		return nil, fmt.Errorf("query %s: window %v is not positive", q.Metric, q.Window)
	}
	if len(hosts) == 0 {
		return nil, nil
	}
	var opts []v1.Option
	if ns := p.since.Load(); ns != 0 {
		span := now.Sub(time.Unix(0, ns)).Truncate(time.Millisecond)
		if span <= 0 {
			return nil, nil
		}
		q.Window = min(q.Window, span)
		opts = append(opts, v1.WithLookbackDelta(min(span, maxLookback)))
	}
	query := expand(q, hosts)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, query, now, opts...)
	if err != nil {
		err = fmt.Errorf("prometheus %s: query %s: %w", p.url, query, err)
		if apiErr := (*v1.Error)(nil); errors.As(err, &apiErr) && apiErr.Type == v1.ErrBadData {
			return nil, err // the query is wrong, not the server
		}
		return nil, unavailable{err}
	}
	var out []Sample
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			if !math.IsNaN(float64(s.Value)) {
				out = append(out, Sample{Series: s.Metric.String(), Value: float64(s.Value)})
			}
		}
		slices.SortFunc(out, func(a, b Sample) int { return cmp.Compare(a.Series, b.Series) })
	case *model.Scalar:
		if !math.IsNaN(float64(v.Value)) {
			out = []Sample{{Series: "scalar", Value: float64(v.Value)}}
		}
	default:
		return nil, fmt.Errorf("prometheus %s: query %s: the result is a %s, want an instant vector or a scalar", p.url, query, v.Type())
	}
	return out, nil
}

// expand returns q.Metric with $hosts replaced by a regular expression
// matching exactly the names of hosts, escaped to be the contents of a
// double-quoted PromQL string, and $window by q.Window as a PromQL
// duration.
func expand(q Query, hosts []Host) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = regexp.QuoteMeta(h.Name)
	}
	re := strconv.Quote(strings.Join(names, "|"))
	return strings.NewReplacer(
		"$hosts", re[1:len(re)-1],
		"$window", model.Duration(q.Window).String(),
	).Replace(q.Metric)
}
