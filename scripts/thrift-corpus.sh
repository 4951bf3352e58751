#!/usr/bin/env bash
# Loads every IDL file of Apache Thrift's own sources with cfg and with the
# reference compiler (thrift, generating Python), and fails on any file one
# accepts and the other refuses (compiler's TestThriftCorpus, which
# scripts/test.sh runs too). The sources come from the Go module proxy, as
# the module github.com/apache/thrift at v0.17.0.
#
#   scripts/thrift-corpus.sh             run the test, printing the counts
#   scripts/thrift-corpus.sh --download  only print the sources' directory
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(go mod download -json github.com/apache/thrift@v0.17.0 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ]; then
	echo "thrift-corpus: could not download github.com/apache/thrift@v0.17.0" >&2
	exit 1
fi
if [ "${1:-}" = --download ]; then
	echo "$dir"
	exit 0
fi
CFG_THRIFT_CORPUS=$dir go test -count=1 -run '^TestThriftCorpus$' -v ./compiler/ | grep -E 'corpus of|refuses|^(--- |ok|FAIL)'
