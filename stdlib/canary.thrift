// CanarySpec describes how a config change is tried on a few hosts before it
// lands: ordered phases, each pushing the candidate to some targets for a
// while and comparing their health with control hosts still on the old
// config. A spec is itself a config: a .cconf exports a CanarySpec.
//
//   load("@cfg//canary.thrift", "CanarySpec", "Phase", "Targets", "Check", ...)

enum Aggregation {
  MEAN = 1,
  MEDIAN = 2,
  P90 = 3,
  P99 = 4,
  SUM = 5,
  MAX = 6,
}

// Direction says which way a metric gets worse.
enum Direction {
  HIGHER_IS_WORSE = 1,
  LOWER_IS_WORSE = 2,
}

// NoData says what a check does when a side has no samples.
enum NoData {
  FAIL = 1,
  PASS = 2,
  WAIT = 3, // keep waiting until the phase ends, then fail
}

// Targets selects the canary hosts of a phase among the hosts subscribed to
// the config; control hosts are drawn from the rest.
union Targets {
  1: i32 count
  2: double percent
  3: map<string, string> selector
}

// Relative passes while canary <= control * max_ratio + slack (for a
// HIGHER_IS_WORSE metric; mirrored for LOWER_IS_WORSE).
struct Relative {
  1: required double max_ratio
  2: optional double slack = 0
}

// Absolute passes while the canary value stays on the good side of limit.
struct Absolute {
  1: required double limit
}

// MannWhitney compares the canary and control samples with a one-sided
// Mann-Whitney U test (as Kayenta does): it fails when the canary is worse
// with p < alpha.
struct MannWhitney {
  1: optional double alpha = 0.05
}

union Predicate {
  1: Relative relative
  2: Absolute absolute
  3: MannWhitney mann_whitney
}

// Gauge says how the scrape provider reads a gauge (or untyped) metric.
enum Gauge {
  LATEST = 1, // its value in the newest scrape
  DERIV = 2,  // its per-second growth over the window, as PromQL's deriv()
}

struct Check {
  1: required string name
  // A PromQL metric selector, such as
  // http_requests_failed_total{endpoint="checkout"}, or, with the
  // prometheus provider, a PromQL expression.
  2: required string metric
  3: optional Aggregation canary_aggregation = Aggregation.MEAN
  4: optional Aggregation control_aggregation = Aggregation.MEAN
  5: required Predicate predicate
  6: optional Direction worse = Direction.HIGHER_IS_WORSE
  // How long a breach must last before the phase fails.
  7: optional i32 breach_seconds = 0
  8: optional NoData no_data = NoData.WAIT
  // For a histogram, the quantile of each host's observations in the
  // window; for a summary, the quantile it exports.
  9: optional double quantile = 0.99
  // Scrape provider only: divide each host's value by this selector's (an
  // error ratio: failures_total divided by requests_total).
  10: optional string divide_by
  // Rates, growth rates and histogram quantiles are computed over this
  // trailing window, and the Mann-Whitney test compares the samples taken
  // in it. With the prometheus provider, $window in the metric stands for
  // it.
  11: optional i32 window_seconds = 10
  // Scrape provider only: how a gauge metric is read; unset, its latest
  // value. DERIV catches a slow leak that a latest value hides. With the
  // prometheus provider, write deriv(...[$window]) in PromQL.
  12: optional Gauge gauge
}

struct Phase {
  1: required string name
  2: required Targets targets
  3: required i32 duration_seconds
  4: required list<Check> checks
}

enum Provider {
  SCRAPE = 1,     // read each host's Prometheus endpoint directly
  PROMETHEUS = 2, // PromQL over a Prometheus server's HTTP API
}

// Bake watches the whole fleet once the change has landed (its commit
// published and applied by the hosts): every scrape interval for
// duration_seconds, each check compares the hosts running the landed
// revision with a limit (absolute) or with the same hosts' values read
// before anything was pushed (relative: "control" is the fleet before the
// change). A check that fails, or is still in breach when the bake ends,
// reverts the change: cfg canary commits a revert and the fleet goes back
// to the old config. Some failures show only at full rollout (a shared
// dependency overloaded by the whole fleet); a bake catches them.
struct Bake {
  1: required i32 duration_seconds
  2: required list<Check> checks
}

struct CanarySpec {
  // The config the spec canaries, e.g. "feed/cache_job".
  1: required string config
  2: required list<Phase> phases
  3: optional Provider provider = Provider.SCRAPE
  4: optional string prometheus_url
  5: optional i32 scrape_interval_seconds = 2
  // How long an override lives unless renewed: an abandoned canary reverts
  // by itself.
  6: optional i32 lease_seconds = 30
  // Checks of the whole fleet after landing; without a bake, cfg canary
  // ends when the change has landed.
  7: optional Bake bake
}
