#!/usr/bin/env bash
# bench.sh builds cmd/cfgbench and cmd/cfg and runs cfgbench: by default the
# table comparing the cfg compiler with the untyped baseline on synthetic
# repositories; with -process, the time, CPU time and peak RSS of the cfg
# command compiling, validating and serving (first publish, fan-out to
# 1,000 watchers); with -soak, the soak benchmark of the
# distribution daemon; with -serve, the daemon against an embedded etcd
# holding the same configs; with -cluster, the fan-out of three daemons over
# a three-member etcd cluster against one daemon over bbolt and etcd's own
# watches (it builds etcd's server from internal/etcdmember).
#
#   scripts/bench.sh                      # N=1000,10000, 5 runs, -j 1 and all CPUs
#   scripts/bench.sh -n 1000 -runs 3      # flags are passed to cfgbench
#   scripts/bench.sh -cpuprofile cpu.out  # then: go tool pprof cpu.out
#   scripts/bench.sh -process -runs 3     # cfg compile, validate and serve, N=20000
#   scripts/bench.sh -process -paper      # and N=100000 (takes long)
#   scripts/bench.sh -soak                # 5,000 watch streams against cfg serve
#   scripts/bench.sh -serve -runs 3       # cfg serve against etcd: RSS and propagation
#   scripts/bench.sh -cluster -runs 3     # 3 daemons over etcd: 1,000 and 3,000 watchers
#
# Repositories are generated under $TMPDIR (set TMPDIR=/dev/shm to take the
# disk out of the measurement). Progress goes to stderr, the table to stdout.
# The cfg built here comes first in PATH, so that -process, -soak, -serve
# and -cluster run it.
set -euo pipefail

cd "$(dirname "$0")/.."
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/cfgbench" ./cmd/cfgbench
go build -o "$bin/cfg" ./cmd/cfg
PATH="$bin:$PATH" "$bin/cfgbench" "$@"
