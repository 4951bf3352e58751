package metrics

import (
	"bytes"
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

// DefaultScrapeTimeout is how long a scrape may take when NewScrape is
// given no timeout.
const DefaultScrapeTimeout = 10 * time.Second

// maxBody bounds the size of a scraped exposition.
const maxBody = 16 << 20

// accept asks for the Prometheus text format with metric names as the
// program registered them (UTF-8, not escaped), which the parser accepts.
var accept = string(expfmt.NewFormat(expfmt.TypeTextPlain).WithEscapingScheme(model.NoEscaping))

// Scrape is the provider that reads each host's Prometheus text endpoint
// itself. It keeps, per host, the scrapes made since the last Reset and
// computes values from them as the package documentation describes. It
// is safe for concurrent use.
type Scrape struct {
	client  *http.Client
	timeout time.Duration

	// Now stamps each scrape; time.Now if nil. The canary controller sets
	// its own clock, so that scrapes and the windows its checks read are on
	// one time line.
	Now func() time.Time

	mu      sync.Mutex
	history map[string][]scrape // by host name, oldest first
	errs    map[string]error    // the error of the last scrape, by host name
	// keep is the longest window Values was asked for since the last
	// Reset (0 before the first call): scrapes older than that before the
	// newest scrape can no longer count and are dropped.
	keep time.Duration
}

// scrape is one successful scrape of a host: when it started, and the
// metric families it read, by name.
type scrape struct {
	at       time.Time
	families map[string]*dto.MetricFamily
}

var _ Provider = (*Scrape)(nil)

// NewScrape returns a scrape provider. Its scrapes use client
// (http.DefaultClient if nil); each gives up after timeout
// (DefaultScrapeTimeout if timeout is not positive). The canary controller
// passes its scrape interval, at most 10 s.
func NewScrape(client *http.Client, timeout time.Duration) *Scrape {
	if client == nil {
		client = http.DefaultClient
	}
	if timeout <= 0 {
		timeout = DefaultScrapeTimeout
	}
	return &Scrape{client: client, timeout: timeout, history: map[string][]scrape{}, errs: map[string]error{}}
}

// Collect scrapes every host (once per name) concurrently and records
// each successful scrape with the time it started. A host that cannot be
// scraped (no URL, connection refused, a status other than 200 OK, a
// malformed exposition) gets no new scrape, and LastError tells why:
// Collect itself fails only when ctx is done.
func (s *Scrape) Collect(ctx context.Context, hosts []Host) error {
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h.Name] {
			continue
		}
		seen[h.Name] = true
		wg.Go(func() {
			at := s.now()
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

func (s *Scrape) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// fetch scrapes one host and parses its exposition.
func (s *Scrape) fetch(ctx context.Context, h Host) (map[string]*dto.MetricFamily, error) {
	if h.URL == "" {
		return nil, fmt.Errorf("host %s: no metrics URL", h.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("host %s: metrics URL %q: %w", h.Name, h.URL, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err) // names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("host %s: GET %s: %s", h.Name, h.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("host %s: GET %s: %w", h.Name, h.URL, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("host %s: GET %s: the exposition is larger than %d bytes", h.Name, h.URL, maxBody)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("host %s: GET %s: %w", h.Name, h.URL, err) // the error names the line
	}
	return fams, nil
}

// add records a successful scrape of host started at at, and clears the
// host's last error. Collect calls it; tests call it to feed exact
// histories.
func (s *Scrape) add(host string, at time.Time, fams map[string]*dto.MetricFamily) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.errs, host)
	hist := s.history[host]
	i := sort.Search(len(hist), func(i int) bool { return hist[i].at.After(at) })
	hist = slices.Insert(hist, i, scrape{at: at, families: fams})
	if s.keep > 0 {
		// A window ending at or after the newest scrape starts after
		// newest-keep: what is older cannot count any more.
		oldest := hist[len(hist)-1].at.Add(-s.keep)
		hist = slices.Delete(hist, 0, sort.Search(len(hist), func(i int) bool { return hist[i].at.After(oldest) }))
	}
	s.history[host] = hist
}

// LastError returns why the last scrape of host failed, or nil if it
// succeeded or host was not scraped since the last Reset.
func (s *Scrape) LastError(host string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs[host]
}

// Reset implements Provider: it forgets every scrape and error, so that
// only the scrapes that Collect makes from then on (after since) count.
func (s *Scrape) Reset(time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.history)
	clear(s.errs)
	s.keep = 0
}

// Values implements Provider. It reads the history only and never blocks
// on the network. It returns one sample per host that has a value, sorted
// by host name; the error joins those of hosts whose value could not be
// computed (an unsupported metric type, a quantile out of range, a growth
// rate asked of a metric that is not a gauge), or says why q cannot be
// answered at all (a selector that does not parse).
func (s *Scrape) Values(_ context.Context, q Query, hosts []Host, now time.Time) ([]Sample, error) {
	if q.Metric == "" {
		return nil, errors.New("no metric")
	}
	if q.Window <= 0 {
		return nil, fmt.Errorf("metric %s: window %v is not positive", q.Metric, q.Window)
	}
	if q.Gauge != GaugeLatest && q.Gauge != GaugeDeriv {
		return nil, fmt.Errorf("metric %s: unknown gauge reading %v", q.Metric, q.Gauge)
	}
	metric, err := ParseSelector(q.Metric)
	if err != nil {
		return nil, err
	}
	var divideBy *Selector
	if q.DivideBy != "" {
		if divideBy, err = ParseSelector(q.DivideBy); err != nil {
			return nil, fmt.Errorf("divide_by: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep = max(s.keep, q.Window)
	var out []Sample
	var errs []error
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h.Name] {
			continue
		}
		seen[h.Name] = true
		v, ok, err := s.value(h.Name, metric, divideBy, q, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
		} else if ok {
			out = append(out, Sample{Series: h.Name, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return cmp.Compare(a.Series, b.Series) })
	return out, errors.Join(errs...)
}

// value computes q, whose selectors are metric and divideBy (nil without
// DivideBy), for one host from its scrapes in (now-q.Window, now]; ok is
// false when the host has no value.
func (s *Scrape) value(host string, metric, divideBy *Selector, q Query, now time.Time) (v float64, ok bool, err error) {
	var in []scrape
	for _, sc := range s.history[host] {
		if sc.at.After(now.Add(-q.Window)) && !sc.at.After(now) {
			in = append(in, sc)
		}
	}
	v, ok, err = familyValue(in, metric, q.Quantile, q.Gauge)
	if err != nil || !ok || divideBy == nil {
		return v, ok && !math.IsNaN(v), err
	}
	d, ok, err := familyValue(in, divideBy, q.Quantile, GaugeLatest)
	if err != nil || !ok || d == 0 {
		return 0, false, err
	}
	v /= d
	return v, !math.IsNaN(v), nil
}
