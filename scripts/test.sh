#!/usr/bin/env bash
# test.sh runs the whole test suite: static checks, then every test once,
# those of the packages that run work concurrently under the race detector,
# the others without it. CI runs exactly this, as scripts/test.sh --install.
#
# A few tests need more than Go and skip without it: they are named at the
# start, with what to install, and every test that was skipped is listed at
# the end with its reason.
#
#   scripts/test.sh            run everything
#   scripts/test.sh --install  first install what the tests need (apt-get)
#   scripts/test.sh --check    only say what the tests need and lack
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
  ""|--install|--check) ;;
  *) echo "usage: scripts/test.sh [--install|--check]" >&2; exit 2 ;;
esac

# What tests need beyond Go: Debian packages, each with the tests that
# skip without it.
missing=()
need() { # need PACKAGE PRESENT-CHECK... -- WHAT-SKIPS
  local pkg=$1; shift
  local check=()
  while [ "$1" != -- ]; do check+=("$1"); shift; done
  shift
  if ! "${check[@]}" >/dev/null 2>&1; then
    missing+=("$pkg")
    if [ "$mode" != --install ]; then
      echo "$pkg is not installed: $*; scripts/test.sh --install installs it with apt-get, as CI does"
    fi
  fi
}
need prometheus command -v prometheus -- the tests of the canary\'s prometheus provider against a real Prometheus server \(canary/metrics\) will be skipped
need thrift-compiler command -v thrift -- the conformance tests against the reference Thrift compiler \(schema, compiler\) will be skipped
need python3-thrift /usr/bin/python3 -c 'import thrift.protocol.TCompactProtocol' -- the conformance tests against the reference Thrift library for Python \(compiler\) will be skipped
if [ "$mode" = --install ] && [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v git >/dev/null; then
  echo "git is not on PATH: the tests that run git (to make repositories, or to compare cfg with it) will be skipped"
fi
if [ "$(id -u)" != 0 ]; then
  echo "not root: the tests that fill a small tmpfs (a full disk under the daemon's store and the agent's cache) will be skipped"
fi
if [ "$mode" = --check ]; then
  exit 0
fi
# Apache Thrift's own IDL files, which compiler's TestThriftCorpus loads
# with cfg and with the reference, come from the Go module proxy.
if corpus=$(scripts/thrift-corpus.sh --download 2>/dev/null); then
  export CFG_THRIFT_CORPUS=$corpus
else
  echo "github.com/apache/thrift@v0.17.0 could not be downloaded: TestThriftCorpus (compiler) will be skipped"
fi

# Each stage says how long it took (bash's SECONDS), so that a slow stage
# shows in CI's log.
stage() { # stage NAME: ends the stage before, if any, and starts NAME
  if [ -n "${stage_name:-}" ]; then echo "== $stage_name took $((SECONDS - stage_start)) s"; fi
  stage_name=$1 stage_start=$SECONDS
  if [ -n "$stage_name" ]; then echo "== $stage_name"; fi
}
stage gofmt
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
stage "go vet"
go vet ./...
stage staticcheck
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
# Tests run through testreport: go test's usual output, then every test
# that was skipped, and why. A package gets 30 minutes rather than go test's
# default 10.
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
go build -o "$report/testreport" ./internal/testreport
# The packages that run work concurrently run under the race detector,
# which runs their tests and sees more. cmd/cfg's end-to-end tests are the
# longest package (a few minutes, side by side; more on a loaded machine):
# it is named first, so that it starts first and the other packages run
# beside it.
concurrent=(./cmd/cfg/... ./repo ./compiler ./schema ./validate ./gitrepo ./store ./daemon ./agent/... ./client ./canary/... ./gate/... ./internal/baseline ./internal/durable)
stage "go test -race (concurrent packages)"
go test -count=1 -timeout 30m -race -json "${concurrent[@]}" | "$report/testreport" -norace "$report/norace"
# A few of their tests run without the race detector only: they measure
# memory, which it makes bigger, or run programs built without it, or last
# as long as the wall clock says. Under it they skip themselves
# (racecheck.SkipUnder), and testreport wrote them down. They run now,
# beside the other packages, each package's with a go test of its own
# (-run selects exactly them), cmd/cfg's first; testreport reads the go
# tests side by side, and fails if any of them did not run.
stage "go test (the other packages, and the tests that run without the race detector)"
runs=$("$report/testreport" -norace-runs "$report/norace")
others=$(go list ./... | grep -vxF -f <(go list "${concurrent[@]}"))
inputs=() pids=()
gotest() { # gotest ARG...: go test -json ARG... in the background, into a pipe for testreport
  local out=$report/go-test-${#inputs[@]}
  mkfifo "$out"
  go test -count=1 -timeout 30m -json "$@" >"$out" &
  inputs+=("$out") pids+=($!)
}
while read -r pkg pattern; do
  if [ -n "$pkg" ]; then gotest -run "$pattern" "$pkg"; fi
done <<<"$runs"
gotest $others # import paths: a word each
failed=0
if ! "$report/testreport" -norace-ran "$report/norace" "${inputs[@]}"; then
  failed=1
  kill "${pids[@]}" 2>/dev/null || true # any go test that testreport left unread
fi
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" != 0 ]; then exit 1; fi
stage ""
echo "== all passed in $SECONDS s"
