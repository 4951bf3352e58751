#!/usr/bin/env bash
# gatebench.sh runs the feature gate benchmarks (package gate and its
# OpenFeature provider) COUNT times (default 10) and prints a table: for
# each benchmark, the fastest and the median ns/op and the allocations per
# op. The fastest run is the one least disturbed by other work on the
# machine; the median shows how much that was.
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
    ns[name, ++n[name]] = $3
    allocs[name] = $7
  }
  function median(name,   i, j, t, m, a) {
    m = n[name]
    for (i = 1; i <= m; i++) a[i] = ns[name, i] + 0
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  function fastest(name,   i, b) {
    b = ns[name, 1] + 0
    for (i = 2; i <= n[name]; i++) if (ns[name, i] + 0 < b) b = ns[name, i] + 0
    return b
  }
  BEGIN {
    what["BenchmarkCheck/rules=1"] = "Check, 1 rule of 3 restraints"
    what["BenchmarkCheck/rules=3"] = "Check, 3 rules of 3 restraints"
    what["BenchmarkCheck/rules=10"] = "Check, 10 rules of 3 restraints"
    what["BenchmarkHash"] = "the hash and bucket alone (the floor)"
    what["BenchmarkOpenFeature"] = "3 rules through the OpenFeature client, cfg provider"
    what["BenchmarkInMemoryProvider"] = "a boolean through the OpenFeature client, go-sdk in-memory provider (the peer)"
  }
  END {
    printf "| %-35s | %-78s | %10s | %10s | %9s |\n", "benchmark", "what", "fastest ns", "median ns", "allocs/op"
    printf "|%s|%s|%s|%s|%s|\n", "-------------------------------------", "--------------------------------------------------------------------------------", "------------", "------------", "-----------"
    for (i = 1; i <= k; i++) {
      name = order[i]
      printf "| %-35s | %-78s | %10.1f | %10.1f | %9s |\n", name, what[name], fastest(name), median(name), allocs[name]
    }
    printf "\nfastest and median of %d runs\n", n[order[1]]
  }'
