#!/usr/bin/env bash
# test.sh runs the whole test suite: static checks, every test, and the race
# detector on the packages that run work concurrently. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "== go test"
go test -count=1 ./...
echo "== go test -race (concurrent packages)"
go test -count=1 -race ./repo ./compiler ./schema ./validate ./gitrepo ./store ./daemon ./agent/... ./client ./canary/... ./gate/... ./cmd/cfg/... ./internal/baseline
