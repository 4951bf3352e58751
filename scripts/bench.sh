#!/usr/bin/env bash
# bench.sh builds cmd/cfgbench and cfg and prints the table comparing the
# cfg compiler with the untyped baseline on synthetic repositories, or, with
# -process, the time, CPU time and peak RSS of the cfg command itself.
#
#   scripts/bench.sh                      # N=1000,10000, 5 runs, -j 1 and all CPUs
#   scripts/bench.sh -n 1000 -runs 3      # flags are passed to cfgbench
#   scripts/bench.sh -cpuprofile cpu.out  # then: go tool pprof cpu.out
#   scripts/bench.sh -process -runs 3     # cfg compile and validate, N=20000
#   scripts/bench.sh -process -paper      # and N=100000 (takes long)
#
# Repositories are generated under $TMPDIR (set TMPDIR=/dev/shm to take the
# disk out of the measurement). Progress goes to stderr, the table to stdout.
set -euo pipefail

cd "$(dirname "$0")/.."
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/cfgbench" ./cmd/cfgbench
go build -o "$bin/cfg" ./cmd/cfg
"$bin/cfgbench" -cfg "$bin/cfg" "$@"
