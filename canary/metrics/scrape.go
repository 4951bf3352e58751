package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxBody bounds a scraped exposition.
const maxBody = 16 << 20

// Scrape reads each host's Prometheus text endpoint and keeps, per host,
// the scrapes made since the last Reset. It is safe for concurrent use.
type Scrape struct {
	client  *http.Client
	timeout time.Duration

	mu      sync.Mutex
	history map[string][]scrape // by host, oldest first
	errs    map[string]error    // the last scrape error, by host
}

// scrape is one scrape of a host.
type scrape struct {
	at       time.Time
	families map[string]*dto.MetricFamily
}

var _ Provider = (*Scrape)(nil)

// NewScrape returns a scrape provider whose scrapes use client (a default
// one if nil) and give up after timeout (10 s if zero).
func NewScrape(client *http.Client, timeout time.Duration) *Scrape {
	if client == nil {
		client = &http.Client{}
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Scrape{client: client, timeout: timeout, history: map[string][]scrape{}, errs: map[string]error{}}
}

// Collect scrapes every host at once. A host that cannot be scraped
// (refused, an HTTP error, a malformed exposition) gets no sample;
// LastError tells why. Collect itself fails only if ctx is done.
func (s *Scrape) Collect(ctx context.Context, hosts []Host) error {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			at := time.Now()
			fams, err := s.fetch(ctx, h)
			if err != nil {
				s.mu.Lock()
				s.errs[h.Name] = err
				s.mu.Unlock()
				return
			}
			s.add(h.Name, at, fams)
		})
	}
	wg.Wait()
	return ctx.Err()
}

func (s *Scrape) fetch(ctx context.Context, h Host) (map[string]*dto.MetricFamily, error) {
	if h.URL == "" {
		return nil, fmt.Errorf("host %s: no metrics URL (cfg agent --metrics)", h.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("host %s: GET %s: %s", h.Name, h.URL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("host %s: %s: %w", h.Name, h.URL, err)
	}
	return fams, nil
}

// add records a scrape of host made at at.
func (s *Scrape) add(host string, at time.Time, fams map[string]*dto.MetricFamily) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history[host] = append(s.history[host], scrape{at: at, families: fams})
	delete(s.errs, host)
}

// LastError returns why the last scrape of host failed, or nil if it
// succeeded (or host was never scraped).
func (s *Scrape) LastError(host string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs[host]
}

// Reset implements Provider.
func (s *Scrape) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.history)
	clear(s.errs)
}

// Values implements Provider: one sample per host that has a value, by
// host name. It reads the history only.
func (s *Scrape) Values(_ context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Sample
	var errs []error
	for _, h := range hosts {
		hist := s.window(h.Name, q.Window, now)
		v, ok, err := value(hist, q.Metric, q.Quantile)
		if err == nil && ok && q.DivideBy != "" {
			var d float64
			d, ok, err = value(hist, q.DivideBy, q.Quantile)
			if ok {
				if d == 0 {
					ok = false
				} else {
					v /= d
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
			continue
		}
		if ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, Sample{Series: h.Name, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return cmp.Compare(a.Series, b.Series) })
	return out, errors.Join(errs...)
}

// window returns the host's scrapes made in (now-w, now].
func (s *Scrape) window(host string, w time.Duration, now time.Time) []scrape {
	var out []scrape
	for _, sc := range s.history[host] {
		if sc.at.After(now.Add(-w)) && !sc.at.After(now) {
			out = append(out, sc)
		}
	}
	return out
}

// value computes a metric's value over the scrapes of one host (oldest
// first): see the package documentation. ok is false when there is no
// value.
func value(hist []scrape, name string, q float64) (v float64, ok bool, err error) {
	if len(hist) == 0 {
		return 0, false, nil
	}
	newest := hist[len(hist)-1].families[name]
	if newest == nil {
		return 0, false, nil
	}
	switch newest.GetType() {
	case dto.MetricType_COUNTER:
		if len(hist) < 2 {
			return 0, false, nil
		}
		var inc float64
		for i := 1; i < len(hist); i++ {
			prev, cur := counterSum(hist[i-1].families[name]), counterSum(hist[i].families[name])
			if cur >= prev {
				inc += cur - prev
			} else {
				inc += cur // the counter restarted from 0
			}
		}
		secs := hist[len(hist)-1].at.Sub(hist[0].at).Seconds()
		if secs <= 0 {
			return 0, false, nil
		}
		return inc / secs, true, nil
	case dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
		var sum float64
		for _, m := range newest.GetMetric() {
			if m.Gauge != nil {
				sum += m.GetGauge().GetValue()
			} else {
				sum += m.GetUntyped().GetValue()
			}
		}
		return sum, len(newest.GetMetric()) > 0, nil
	case dto.MetricType_HISTOGRAM:
		newer := histBuckets(newest)
		if len(hist) < 2 || newer == nil {
			return 0, false, nil
		}
		older := histBuckets(hist[0].families[name])
		inc := make([]bucket, len(newer))
		for i, b := range newer {
			inc[i] = b
			if j := slices.IndexFunc(older, func(o bucket) bool { return o.upper == b.upper }); j >= 0 && older[j].count <= b.count {
				inc[i].count -= older[j].count
			}
		}
		v, ok := quantile(q, inc)
		return v, ok, nil
	case dto.MetricType_SUMMARY:
		ms := newest.GetMetric()
		if len(ms) != 1 {
			return 0, false, nil
		}
		for _, sq := range ms[0].GetSummary().GetQuantile() {
			if sq.GetQuantile() == q {
				return sq.GetValue(), true, nil
			}
		}
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("metric %s: type %s is not supported", name, newest.GetType())
}

func counterSum(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// bucket is a cumulative histogram bucket.
type bucket struct {
	upper float64
	count float64
}

// histBuckets adds up the cumulative buckets of every series of a
// histogram family, by upper bound, sorted, with +Inf last.
func histBuckets(f *dto.MetricFamily) []bucket {
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		return nil
	}
	by := map[float64]float64{}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		inf := false
		for _, b := range h.GetBucket() {
			by[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf {
			by[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	out := make([]bucket, 0, len(by))
	for u, c := range by {
		out = append(out, bucket{u, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].upper < out[j].upper })
	return out
}

// quantile interpolates the q-quantile of cumulative buckets (sorted,
// +Inf last) as Prometheus's histogram_quantile does.
func quantile(q float64, buckets []bucket) (float64, bool) {
	if len(buckets) < 2 {
		return 0, false
	}
	total := buckets[len(buckets)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	i := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].count >= rank })
	if i == len(buckets)-1 {
		return buckets[len(buckets)-2].upper, true
	}
	if i == 0 && buckets[0].upper <= 0 {
		return buckets[0].upper, true
	}
	start, end := 0.0, buckets[i].upper
	count := buckets[i].count
	if i > 0 {
		start = buckets[i-1].upper
		count -= buckets[i-1].count
		rank -= buckets[i-1].count
	}
	if count <= 0 {
		return end, true
	}
	return start + (end-start)*(rank/count), true
}
