package metrics

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus runs PromQL over a Prometheus server's HTTP API.
type Prometheus struct {
	api v1.API
	url string
}

var _ Provider = (*Prometheus)(nil)

// NewPrometheus returns a provider querying the Prometheus server at
// baseURL (http://prometheus:9090).
func NewPrometheus(baseURL string) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: baseURL})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", baseURL, err)
	}
	return &Prometheus{api: v1.NewAPI(c), url: baseURL}, nil
}

// Collect implements Provider: the server scrapes, so there is nothing to
// do.
func (p *Prometheus) Collect(ctx context.Context, _ []Host) error { return ctx.Err() }

// Reset implements Provider; Values queries the window before now only.
func (p *Prometheus) Reset() {}

// Expand returns q's metric with $hosts replaced by a regular expression
// matching exactly the names of hosts and $window by the window as a
// PromQL duration.
func Expand(q Query, hosts []Host) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = regexp.QuoteMeta(h.Name)
	}
	window := model.Duration(q.Window).String()
	return strings.NewReplacer("$hosts", strings.Join(names, "|"), "$window", window).Replace(q.Metric)
}

// Values implements Provider: it runs the expanded query at now; each
// series of the resulting vector is one sample.
func (p *Prometheus) Values(ctx context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error) {
	if q.DivideBy != "" {
		return nil, errors.New("divide_by is not supported with the prometheus provider: write the ratio in PromQL")
	}
	if len(hosts) == 0 {
		return nil, nil
	}
	query := Expand(q, hosts)
	v, _, _, err := p.api.Query(ctx, query, now)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: query %q: %w", p.url, query, err)
	}
	switch v := v.(type) {
	case model.Vector:
		out := make([]Sample, len(v))
		for i, s := range v {
			out[i] = Sample{Series: s.Metric.String(), Value: float64(s.Value)}
		}
		slices.SortFunc(out, func(a, b Sample) int { return strings.Compare(a.Series, b.Series) })
		return out, nil
	case *model.Scalar:
		return []Sample{{Series: "scalar", Value: float64(v.Value)}}, nil
	default:
		return nil, fmt.Errorf("prometheus %s: query %q: got a %s, want an instant vector", p.url, query, v.Type())
	}
}
