#!/usr/bin/env bash
# gatebench.sh runs the feature gate benchmarks (package gate and its
# OpenFeature provider) COUNT times (default 10) and prints a table: for
# each benchmark, the fastest and the median wall time per op, the fastest
# and the median CPU time per op (the process's user and system time: it leaves out the
# time spent waiting for a CPU while other work runs, not the time lost to
# other work sharing the CPU), and the allocations per op. The fastest run
# is the one least disturbed by other work on the machine; the median shows
# how much that was.
#
#   scripts/gatebench.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10}
go test -run '^$' -bench . -benchmem -count "$count" ./gate ./gate/provider |
awk '
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    if (!(name in n)) order[++k] = name
    n[name]++
    for (i = 3; i < NF; i++) {
      if ($(i + 1) == "ns/op") ns[name, n[name]] = $i
      if ($(i + 1) == "cpu-ns/op") cpu[name, n[name]] = $i
      if ($(i + 1) == "allocs/op") allocs[name] = $i
    }
  }
  function sorted(arr, name, a,   i, j, t, m) {
    m = n[name]
    for (i = 1; i <= m; i++) a[i] = arr[name, i] + 0
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return m
  }
  function median(arr, name,   a, m) {
    m = sorted(arr, name, a)
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  function fastest(arr, name,   a) { sorted(arr, name, a); return a[1] }
  BEGIN {
    what["BenchmarkCheck/rules=1"] = "Check: 1 rule of 3 restraints, all evaluated"
    what["BenchmarkCheck/rules=3"] = "Check: 3 rules of 3 restraints, all 9 reached, 4 conditions"
    what["BenchmarkCheck/rules=10"] = "Check: 10 rules of 3 restraints, all 30 reached, 4 conditions"
    what["BenchmarkCheckDistinct"] = "Check: 3 rules of 3 restraints, 9 distinct conditions, all evaluated"
    what["BenchmarkCheckSmall"] = "Check: 3 rules of 1 restraint, all evaluated"
    what["BenchmarkCheckPrepared/small/per=all"] = "CheckPrepared: 3 rules of 1 restraint, the unit prepared once"
    what["BenchmarkCheckPrepared/small/per=10"] = "CheckPrepared: 3 rules of 1 restraint, Reset every 10 checks"
    what["BenchmarkCheckPrepared/small/per=1"] = "CheckPrepared: 3 rules of 1 restraint, Reset before each check"
    what["BenchmarkCheckPrepared/rules=3/per=all"] = "CheckPrepared: 3 rules of 3 restraints, the unit prepared once"
    what["BenchmarkCheckPrepared/rules=3/per=10"] = "CheckPrepared: 3 rules of 3 restraints, Reset every 10 checks"
    what["BenchmarkCheckPrepared/rules=3/per=1"] = "CheckPrepared: 3 rules of 3 restraints, Reset before each check"
    what["BenchmarkCheckPrepared/rules=10/per=all"] = "CheckPrepared: 10 rules of 3 restraints, the unit prepared once"
    what["BenchmarkCheckPrepared/rules=10/per=10"] = "CheckPrepared: 10 rules of 3 restraints, Reset every 10 checks"
    what["BenchmarkCheckPrepared/rules=10/per=1"] = "CheckPrepared: 10 rules of 3 restraints, Reset before each check"
    what["BenchmarkPrepare"] = "Prepared.Reset of the unit of five attributes alone"
    what["BenchmarkHash"] = "the hash and bucket alone (the floor)"
    what["BenchmarkOpenFeature"] = "3 rules of 3 restraints through the OpenFeature client, cfg provider"
    what["BenchmarkInMemoryProvider"] = "a boolean through the OpenFeature client, go-sdk in-memory provider"
  }
  END {
    printf "| %-38s | %-69s | %10s | %10s | %14s | %13s | %9s |\n", "benchmark", "what", "fastest ns", "median ns", "fastest CPU ns", "median CPU ns", "allocs/op"
    printf "|----------------------------------------|-----------------------------------------------------------------------|------------|------------|----------------|---------------|-----------|\n"
    for (i = 1; i <= k; i++) {
      name = order[i]
      printf "| %-38s | %-69s | %10.1f | %10.1f | %14.1f | %13.1f | %9s |\n", substr(name, 10), what[name], fastest(ns, name), median(ns, name), fastest(cpu, name), median(cpu, name), allocs[name]
    }
    printf "\nfastest and median of %d runs\n", n[order[1]]
  }'
