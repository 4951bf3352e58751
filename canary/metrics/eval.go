package metrics

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/util/kahansum"
)

// familyValue computes the value of the series that sel selects over the
// scrapes of one host inside a window (oldest first), as the package
// documentation describes; q is the quantile of histograms and summaries,
// and g says how a gauge is read. ok is false when the host has no value.
func familyValue(in []scrape, sel *Selector, q float64, g Gauge) (v float64, ok bool, err error) {
	name := sel.Name
	var newest *dto.MetricFamily
	for i := len(in) - 1; i >= 0 && newest == nil; i-- {
		newest = in[i].families[name]
	}
	if newest == nil {
		return 0, false, nil
	}
	typ := newest.GetType()
	if g == GaugeDeriv && typ != dto.MetricType_GAUGE && typ != dto.MetricType_UNTYPED {
		return 0, false, fmt.Errorf("metric %s: gauge %s needs a gauge, got a %s", name, g, typ)
	}
	// selected returns the series of the newest scrape that sel selects.
	selected := func() []*dto.Metric {
		var out []*dto.Metric
		for _, m := range newest.GetMetric() {
			if sel.matches(m) {
				out = append(out, m)
			}
		}
		return out
	}
	// series returns, oldest first, the scrapes' series of the family that
	// have the newest scrape's type and that sel selects, by label set.
	series := func() (keys []string, by map[string][]point) {
		by = map[string][]point{}
		for _, sc := range in {
			f := sc.families[name]
			if f.GetType() != typ {
				continue
			}
			for _, m := range f.GetMetric() {
				if !sel.matches(m) {
					continue
				}
				k := labelsKey(m)
				if by[k] == nil {
					keys = append(keys, k)
				}
				by[k] = append(by[k], point{sc, m})
			}
		}
		slices.Sort(keys) // a fixed order of additions, for reproducible sums
		return keys, by
	}
	switch typ {
	case dto.MetricType_COUNTER:
		keys, by := series()
		for _, k := range keys {
			if r, rok := counterRate(by[k]); rok {
				v, ok = v+r, true
			}
		}
		return v, ok, nil
	case dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
		if g == GaugeDeriv {
			keys, by := series()
			for _, k := range keys {
				if d, dok := deriv(by[k]); dok {
					v, ok = v+d, true
				}
			}
			return v, ok, nil
		}
		ms := selected()
		for _, m := range ms {
			v += gaugeValue(m)
		}
		return v, len(ms) > 0, nil
	case dto.MetricType_HISTOGRAM:
		if err := checkQuantile(q); err != nil {
			return 0, false, fmt.Errorf("histogram %s: %w", name, err)
		}
		keys, by := series()
		total := map[float64]float64{}
		for _, k := range keys {
			for upper, n := range bucketIncrease(by[k]) {
				total[upper] += n
			}
		}
		v, ok = bucketQuantile(q, total)
		return v, ok, nil
	case dto.MetricType_SUMMARY:
		if err := checkQuantile(q); err != nil {
			return 0, false, fmt.Errorf("summary %s: %w", name, err)
		}
		ms := selected()
		if len(ms) != 1 {
			return 0, false, nil // quantiles of several series cannot be combined
		}
		for _, sq := range ms[0].GetSummary().GetQuantile() {
			if sq.GetQuantile() == q {
				return sq.GetValue(), true, nil
			}
		}
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("metric %s: type %s is not supported", name, typ)
	}
}

// point is a series' sample in one scrape.
type point struct {
	scrape
	m *dto.Metric
}

// labelsKey identifies the series of m within its family.
func labelsKey(m *dto.Metric) string {
	ls := make(model.LabelSet, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		ls[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
	}
	return ls.String()
}

func checkQuantile(q float64) error {
	if !(q >= 0 && q <= 1) { // also rejects NaN
		return fmt.Errorf("quantile %v is not in [0, 1]", q)
	}
	return nil
}

// counterRate returns the per-second rate of a counter series over its
// points: the increase from the first to the last, a decrease meaning
// that the counter restarted from 0, divided by the time between them.
func counterRate(pts []point) (float64, bool) {
	if len(pts) < 2 {
		return 0, false
	}
	secs := pts[len(pts)-1].at.Sub(pts[0].at).Seconds()
	if secs <= 0 {
		return 0, false
	}
	var inc float64
	for i := 1; i < len(pts); i++ {
		prev, cur := pts[i-1].m.GetCounter().GetValue(), pts[i].m.GetCounter().GetValue()
		if cur < prev {
			prev = 0 // a reset
		}
		inc += cur - prev
	}
	return inc / secs, true
}

// deriv returns the per-second growth of a gauge series over its points,
// computed as PromQL's deriv(): the slope of the least-squares line
// through them, with times in seconds (at the milliseconds Prometheus
// stores) and Kahan-Neumaier sums, a constant series having slope 0.
func deriv(pts []point) (float64, bool) {
	if len(pts) < 2 {
		return 0, false
	}
	t0 := pts[0].at.UnixMilli()
	var n, sumX, cX, sumY, cY, sumXY, cXY, sumX2, cX2 float64
	first, constant := gaugeValue(pts[0].m), true
	for _, p := range pts {
		x, y := float64(p.at.UnixMilli()-t0)/1e3, gaugeValue(p.m)
		if y != first {
			constant = false
		}
		n++
		sumX, cX = kahansum.Inc(x, sumX, cX)
		sumY, cY = kahansum.Inc(y, sumY, cY)
		sumXY, cXY = kahansum.Inc(x*y, sumXY, cXY)
		sumX2, cX2 = kahansum.Inc(x*x, sumX2, cX2)
	}
	if constant {
		if math.IsInf(first, 0) {
			return math.NaN(), true
		}
		return 0, true
	}
	sumX, sumY, sumXY, sumX2 = sumX+cX, sumY+cY, sumXY+cXY, sumX2+cX2
	covXY := sumXY - sumX*sumY/n
	varX := sumX2 - sumX*sumX/n
	return covXY / varX, true
}

// gaugeValue returns the value of a gauge or untyped sample.
func gaugeValue(m *dto.Metric) float64 {
	return m.GetGauge().GetValue() + m.GetUntyped().GetValue() // only one is set
}

// bucketIncrease returns how much each cumulative bucket of a histogram
// series grew over its points, by upper bound. The series restarted from
// 0 between two points if a bucket or the count decreased or the bucket
// layout changed.
func bucketIncrease(pts []point) map[float64]float64 {
	inc := map[float64]float64{}
	for i := 1; i < len(pts); i++ {
		prev, cur := buckets(pts[i-1].m.GetHistogram()), buckets(pts[i].m.GetHistogram())
		reset := len(prev) != len(cur)
		for upper, n := range cur {
			if p, ok := prev[upper]; !ok || n < p {
				reset = true
			}
		}
		for upper, n := range cur {
			if !reset {
				n -= prev[upper]
			}
			inc[upper] += n
		}
	}
	return inc
}

// buckets returns the cumulative counts of a classic histogram by upper
// bound, +Inf included (the sample count if the +Inf bucket is not
// listed, as in the protobuf format).
func buckets(h *dto.Histogram) map[float64]float64 {
	out := map[float64]float64{}
	for _, b := range h.GetBucket() {
		if u := b.GetUpperBound(); !math.IsNaN(u) {
			out[u] = count(b.CumulativeCountFloat, b.GetCumulativeCount())
		}
	}
	if _, ok := out[math.Inf(1)]; !ok {
		out[math.Inf(1)] = count(h.SampleCountFloat, h.GetSampleCount())
	}
	return out
}

// count returns a count given either as a float or as an integer.
func count(f *float64, n uint64) float64 {
	if f != nil {
		return *f
	}
	return float64(n)
}

// bucketQuantile interpolates the q-quantile of cumulative bucket counts
// (by upper bound, +Inf included) as Prometheus's histogram_quantile does.
// ok is false when there is no observation.
func bucketQuantile(q float64, counts map[float64]float64) (float64, bool) {
	type bucket struct{ upper, count float64 }
	bs := make([]bucket, 0, len(counts))
	for u, c := range counts {
		bs = append(bs, bucket{u, c})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.upper, b.upper) })
	if len(bs) < 2 {
		return 0, false // only +Inf: no bound to interpolate with
	}
	for i := 1; i < len(bs); i++ { // cumulative counts cannot decrease
		bs[i].count = max(bs[i].count, bs[i-1].count)
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	b := sort.Search(len(bs)-1, func(i int) bool { return bs[i].count >= rank })
	switch {
	case b == len(bs)-1: // in the +Inf bucket
		return bs[len(bs)-2].upper, true
	case b == 0 && bs[0].upper <= 0:
		return bs[0].upper, true
	}
	start, end, n := 0.0, bs[b].upper, bs[b].count
	if b > 0 {
		start = bs[b-1].upper
		n -= bs[b-1].count
		rank -= bs[b-1].count
	}
	return start + (end-start)*(rank/n), true
}
