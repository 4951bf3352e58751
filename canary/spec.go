package canary

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/canary/metrics"
)

// SpecType is the Thrift type a canary spec config exports, as the
// compile records it (materialized_configs/.types.json).
const SpecType = "CanarySpec"

// SpecSchema is the schema that declares SpecType, as load() names it: a
// struct of that name in another schema is not a spec.
const SpecSchema = "@cfg//canary.thrift"

// Spec is a CanarySpec (stdlib/canary.thrift) as its canonical JSON
// holds it: every field with its default filled in.
type Spec struct {
	Config                string  `json:"config"`
	Phases                []Phase `json:"phases"`
	Provider              string  `json:"provider"` // SCRAPE or PROMETHEUS
	PrometheusURL         string  `json:"prometheus_url"`
	ScrapeIntervalSeconds int     `json:"scrape_interval_seconds"`
	LeaseSeconds          int     `json:"lease_seconds"`
	Bake                  *Bake   `json:"bake"`
}

// Bake is what a Spec watches after the change landed: checks of the
// whole fleet's hosts running the landed revision, compared with limits
// (absolute) or with the same hosts' values before the change (relative).
type Bake struct {
	DurationSeconds int     `json:"duration_seconds"`
	Checks          []Check `json:"checks"`
}

// Duration is how long the bake watches the fleet.
func (b Bake) Duration() time.Duration { return time.Duration(b.DurationSeconds) * time.Second }

// Phase is one phase of a Spec.
type Phase struct {
	Name            string  `json:"name"`
	Targets         Targets `json:"targets"`
	DurationSeconds int     `json:"duration_seconds"`
	Checks          []Check `json:"checks"`
}

// Targets selects a phase's canary hosts: one of the fields is set.
type Targets struct {
	Count    *int              `json:"count"`
	Percent  *float64          `json:"percent"`
	Selector map[string]string `json:"selector"`
}

// Check is one health check of a Phase.
type Check struct {
	Name               string    `json:"name"`
	Metric             string    `json:"metric"`
	CanaryAggregation  string    `json:"canary_aggregation"`
	ControlAggregation string    `json:"control_aggregation"`
	Predicate          Predicate `json:"predicate"`
	Worse              string    `json:"worse"`
	BreachSeconds      int       `json:"breach_seconds"`
	NoData             string    `json:"no_data"`
	Quantile           float64   `json:"quantile"`
	DivideBy           string    `json:"divide_by"`
	WindowSeconds      int       `json:"window_seconds"`
	Gauge              string    `json:"gauge"` // LATEST, DERIV, or "" (LATEST)
}

// Predicate is a check's predicate: one of the fields is set.
type Predicate struct {
	Relative *struct {
		MaxRatio float64 `json:"max_ratio"`
		Slack    float64 `json:"slack"`
	} `json:"relative"`
	Absolute *struct {
		Limit float64 `json:"limit"`
	} `json:"absolute"`
	MannWhitney *struct {
		Alpha float64 `json:"alpha"`
	} `json:"mann_whitney"`
}

// Providers.
const (
	ProviderScrape     = "SCRAPE"
	ProviderPrometheus = "PROMETHEUS"
)

// ParseSpec decodes a compiled CanarySpec config. The compiler has
// type-checked it and run its validators; ParseSpec checks that the
// config is a CanarySpec of the schema that ships with cfg (a struct of
// another schema that happens to be named CanarySpec is not) and what
// the validators cannot know.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("not a CanarySpec of @cfg//canary.thrift: %w", err)
	}
	switch {
	case s.Config == "":
		return Spec{}, errors.New("not a CanarySpec of @cfg//canary.thrift: no config")
	case len(s.Phases) == 0:
		return Spec{}, errors.New("not a CanarySpec of @cfg//canary.thrift: no phases")
	case s.ScrapeIntervalSeconds <= 0 || s.LeaseSeconds <= 0:
		return Spec{}, fmt.Errorf("not a CanarySpec of @cfg//canary.thrift: scrape_interval_seconds %d, lease_seconds %d: want both positive",
			s.ScrapeIntervalSeconds, s.LeaseSeconds)
	}
	for _, p := range s.Phases {
		for _, c := range p.Checks {
			_, err := c.judge()
			if err == nil {
				err = c.checkQuery(s.Provider)
			}
			if err != nil {
				return Spec{}, fmt.Errorf("phase %q: check %q: %w", p.Name, c.Name, err)
			}
		}
	}
	if b := s.Bake; b != nil {
		if b.DurationSeconds <= 0 || len(b.Checks) == 0 {
			return Spec{}, fmt.Errorf("bake: duration_seconds %d and %d checks: want a positive duration and a check", b.DurationSeconds, len(b.Checks))
		}
		for _, c := range b.Checks {
			if _, err := c.judge(); err != nil {
				return Spec{}, fmt.Errorf("bake: check %q: %w", c.Name, err)
			}
			if c.Predicate.MannWhitney != nil {
				return Spec{}, fmt.Errorf("bake: check %q: mann_whitney compares two groups of hosts; a bake check is relative or absolute", c.Name)
			}
		}
	}
	return s, nil
}

// Interval is how often metrics are read and checks evaluated.
func (s Spec) Interval() time.Duration { return time.Duration(s.ScrapeIntervalSeconds) * time.Second }

// Lease is how long an override lives unless renewed.
func (s Spec) Lease() time.Duration { return time.Duration(s.LeaseSeconds) * time.Second }

// Duration is how long the phase observes its targets.
func (p Phase) Duration() time.Duration { return time.Duration(p.DurationSeconds) * time.Second }

// window is the trailing window of the check's rates and quantiles.
func (c Check) window() time.Duration { return time.Duration(c.WindowSeconds) * time.Second }

// needsControl reports whether some check of p compares with control
// hosts.
func (p Phase) needsControl() bool {
	for _, c := range p.Checks {
		if c.Predicate.Absolute == nil {
			return true
		}
	}
	return false
}

var (
	aggregations = map[string]judge.Aggregation{"MEAN": judge.Mean, "MEDIAN": judge.Median, "P90": judge.P90, "P99": judge.P99, "SUM": judge.Sum, "MAX": judge.Max}
	directions   = map[string]judge.Direction{"HIGHER_IS_WORSE": judge.HigherIsWorse, "LOWER_IS_WORSE": judge.LowerIsWorse}
	noData       = map[string]judge.NoData{"FAIL": judge.NoDataFail, "PASS": judge.NoDataPass, "WAIT": judge.NoDataWait}
)

// judge returns the check as the judge package takes it.
func (c Check) judge() (judge.Check, error) {
	j := judge.Check{
		Name:   c.Name,
		Breach: time.Duration(c.BreachSeconds) * time.Second,
		Window: time.Duration(c.WindowSeconds) * time.Second,
	}
	unknown := func(field, value string) error {
		return fmt.Errorf("%s: %q is not known to this version of cfg", field, value)
	}
	var ok bool
	if j.CanaryAgg, ok = aggregations[c.CanaryAggregation]; !ok {
		return judge.Check{}, unknown("canary_aggregation", c.CanaryAggregation)
	}
	if j.ControlAgg, ok = aggregations[c.ControlAggregation]; !ok {
		return judge.Check{}, unknown("control_aggregation", c.ControlAggregation)
	}
	if j.Worse, ok = directions[c.Worse]; !ok {
		return judge.Check{}, unknown("worse", c.Worse)
	}
	if j.NoData, ok = noData[c.NoData]; !ok {
		return judge.Check{}, unknown("no_data", c.NoData)
	}
	switch p := c.Predicate; {
	case p.Relative != nil:
		j.Predicate = judge.Predicate{Kind: judge.Relative, MaxRatio: p.Relative.MaxRatio, Slack: p.Relative.Slack}
	case p.Absolute != nil:
		j.Predicate = judge.Predicate{Kind: judge.Absolute, Limit: p.Absolute.Limit}
	case p.MannWhitney != nil:
		j.Predicate = judge.Predicate{Kind: judge.MannWhitney, Alpha: p.MannWhitney.Alpha}
	default:
		return judge.Check{}, errors.New("predicate: none of relative, absolute, mann_whitney is set")
	}
	return j, nil
}

var gauges = map[string]metrics.Gauge{"": metrics.GaugeLatest, "LATEST": metrics.GaugeLatest, "DERIV": metrics.GaugeDeriv}

// query returns the metric query of the check.
func (c Check) query() metrics.Query {
	return metrics.Query{Metric: c.Metric, DivideBy: c.DivideBy, Quantile: c.Quantile, Window: time.Duration(c.WindowSeconds) * time.Second, Gauge: gauges[c.Gauge]}
}

// checkQuery reports what in the check's metric the provider cannot
// read, so that the spec is refused before anything is pushed.
func (c Check) checkQuery(provider string) error {
	if _, ok := gauges[c.Gauge]; !ok {
		return fmt.Errorf("gauge: %q is not known to this version of cfg", c.Gauge)
	}
	if provider == ProviderPrometheus {
		if gauges[c.Gauge] != metrics.GaugeLatest {
			return fmt.Errorf("gauge: %s is for the SCRAPE provider; with PROMETHEUS, write the function in PromQL", c.Gauge)
		}
		return nil // PromQL: the server checks it
	}
	if _, err := metrics.ParseSelector(c.Metric); err != nil {
		return fmt.Errorf("metric: %w", err)
	}
	if c.DivideBy != "" {
		if _, err := metrics.ParseSelector(c.DivideBy); err != nil {
			return fmt.Errorf("divide_by: %w", err)
		}
	}
	return nil
}
