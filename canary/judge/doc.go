// Package judge decides the health checks of a canary phase.
//
// A phase of `cfg canary` pushes a config change to canary hosts and
// compares them with control hosts still on the old config. Every scrape
// interval the controller reads, for each check, the per-host values of the
// check's metric on both sides and feeds them to the check's [Tracker]
// with [Tracker.Observe]; when the phase's duration is over it calls
// [Tracker.Final]. A [Check] mirrors the Check struct of
// stdlib/canary.thrift.
//
// # Input values
//
// Observe takes one value per host for each side. Values that are NaN or
// ±Inf (a rate over a window without samples, a division by zero) are
// ignored, as if that host had not reported: a side whose values are all
// non-finite has no data. Observe never modifies the slices it is given.
//
// # Aggregations
//
// Each side's values are combined into one number with the side's
// [Aggregation] ([Aggregate]), computed with
// github.com/aclements/go-moremath/stats:
//
//	Mean    arithmetic mean (stats.Sample.Mean)
//	Median  stats.Sample.Quantile(0.5)
//	P90     stats.Sample.Quantile(0.9)
//	P99     stats.Sample.Quantile(0.99)
//	Sum     stats.Sample.Sum
//	Max     the maximum (stats.Sample.Bounds)
//
// Quantiles use go-moremath's definition, method R8 of Hyndman and Fan
// (1996), the "median-unbiased" estimator: for n sorted values x[1..n] and
// h = 1/3 + q·(n + 1/3), the quantile is x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] −
// x[⌊h⌋]), clamped to x[1] when h < 1 and to x[n] when h >= n. The median
// is the usual median (the middle value, or the mean of the two middle
// values). On small slices high quantiles are the maximum: P90 of fewer
// than 7 values and P99 of fewer than 67 values equal Max (for example P90
// of 1..10 is 9.633…, P90 of 1..5 is 5). An aggregation of no (finite)
// values does not exist: Aggregate returns false and the side has no data.
//
// # Predicates
//
// The [Predicate] says when the aggregated canary value c is healthy,
// compared with the aggregated control value k; [Direction] says which way
// the metric gets worse:
//
//	                  HigherIsWorse                 LowerIsWorse
//	Relative          c <= k × MaxRatio + Slack     c >= k / MaxRatio − Slack
//	Absolute          c <= Limit                    c >= Limit
//	MannWhitney       p >= Alpha, p from the one-sided test that the canary
//	                  samples are higher (HigherIsWorse) or lower
//	                  (LowerIsWorse) than the control samples
//
// Relative is mirrored by dividing by MaxRatio, not by multiplying by
// 2 − MaxRatio: MaxRatio 1.25 lets a latency grow by 25% and a throughput
// shrink to 1/1.25 = 80% of the control's. Slack is an absolute allowance
// in the metric's unit in both directions; it keeps tiny control values
// (an error rate of 0) from making any canary value a breach. MaxRatio must
// be positive. The ratio assumes a non-negative metric: with a negative
// control value, k × MaxRatio is below k. The comparisons include equality:
// a canary exactly on the bound passes.
//
// Absolute needs only the canary side; the control side may be empty (its
// aggregate is still reported when present). Relative and MannWhitney need
// both sides.
//
// # Mann-Whitney
//
// MannWhitney runs a one-sided Mann-Whitney U test (as Kayenta does) of the
// canary samples against the control samples with
// stats.MannWhitneyUTest, and fails when the canary is worse with
// p < Alpha. The samples of a side are the per-host values of every
// evaluation in the trailing Window, pooled: an evaluation made at time e
// is in the window of an evaluation at time t when t − e < Window (the
// current evaluation is always in it, so a Window of 0 tests the current
// values only). Evaluations that drop out of the window are forgotten.
//
// Until each side has at least [MinSamples] samples in the window the test
// cannot judge: the evaluation's verdict is [Waiting], whatever the NoData
// policy, and it neither starts nor ends a breach. A side with no sample at
// all in the window is "no data" and handled by the NoData policy. Even
// with enough samples, small samples cannot reach a small p: the smallest
// one-sided p of n1 and n2 samples is 1/C(n1+n2, n1), e.g. 0.05 for 3
// against 3, so Alpha 0.05 needs more than 3 samples a side to fail.
//
// go-moremath computes the exact distribution of U for samples of up to 50
// values a side (25 when some values are tied, accounting for the ties) and
// a normal approximation with tie and continuity correction beyond. When
// every pooled value of both sides is equal the test is undefined (the
// library returns ErrSamplesEqual): there is no evidence of a difference,
// so the evaluation passes with P = 1. The test is run as "the sample
// expected to be lower is lower" (LocationLess, with the control samples
// first for HigherIsWorse and the canary samples first for LowerIsWorse):
// the library's LocationGreater over-counts the probability of ties in its
// exact path, so this keeps p exact and the two directions exact mirrors of
// each other.
//
// The Evaluation's Canary and Control values are still the aggregations of
// the current evaluation's values, CanaryN and ControlN its counts; the
// Reason gives the pooled counts.
//
// # Breaches
//
// An evaluation whose predicate fails starts a breach, unless one is
// already in progress; the breach lasts until an evaluation's predicate
// passes. The check fails on a failing evaluation when the breach has
// lasted at least Breach, measured from the time of the breach's first
// failing evaluation to the current evaluation's time. Before that the
// verdict is [Breach]. So with Breach 0 the first failing evaluation fails
// the check; with a 2 s interval and Breach 4s, failing evaluations at 2 s,
// 4 s and 6 s fail the check at 6 s, while failing evaluations at 2 s and
// 4 s followed by a passing one at 6 s are a brief breach that does not
// fail the check. A phase must not end in breach: Final fails a check
// whose breach is still in progress, however short ([Tracker.Breaching]
// tells the controller, which goes on evaluating past the end of the
// phase until the breach ends or lasts Breach, so that Final sees it
// settled).
//
// A check only fails on evidence: on an evaluation whose predicate failed
// (or, with NoDataFail, that had no data). An evaluation that cannot judge
// (no data with NoDataWait or NoDataPass, too few Mann-Whitney samples)
// neither starts nor ends a breach: a breach in progress keeps its start
// time, and the next evaluation that judges decides whether it has lasted
// Breach. Such evaluations report the breach in progress in BreachFor.
//
// Once a check has failed, it stays failed: every later Observe, and Final,
// returns [Fail] with the reason of the failure.
//
// # No data
//
// A side is needed when the predicate compares it (see Predicates). An
// evaluation has no data when a needed side has no finite value (for
// MannWhitney: no value in the window). The [NoData] policy says what then:
//
//	NoDataFail  the check fails at once, whatever Breach.
//	NoDataPass  the evaluation counts as passing: its verdict is Pass.
//	NoDataWait  the evaluation's verdict is Waiting ("no data"); the check
//	            keeps waiting. If the phase ends before any evaluation
//	            could judge, Final fails the check.
//
// In detail, Final fails a check that never judged (no evaluation had the
// data its predicate needs, including enough Mann-Whitney samples, or
// Observe was never called) unless its policy is NoDataPass: NoDataFail is
// never more lenient than NoDataWait. A NoDataWait check that got data at
// some point and passed is judged on that data and Final passes it.
//
// # Invalid checks
//
// [Check.Validate] reports a check that cannot be judged: an unknown enum
// value, MaxRatio <= 0, a non-finite Slack or Limit, Alpha outside (0, 1),
// a negative Breach or Window. A Tracker of an invalid check has failed
// from the start: Observe and Final return Fail with the validation error
// as reason, so a bad spec rolls the change back instead of passing it.
//
// # Time
//
// Times are passed explicitly, so a Tracker can be driven by tests and
// replays. Successive Observe calls must not go back in time. A Tracker is
// not safe for concurrent use.
package judge
