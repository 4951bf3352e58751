// Command testreport reads the output of go test -json on stdin and
// prints what go test prints without -json (each package's result, and the
// output of every test that failed), then every test that was skipped,
// with the reason it gave. scripts/test.sh runs the tests through it, so
// that a run that passed says what it did not test, and why.
//
//	go test -json ./... | go run ./internal/testreport
//
// It exits 1 if a test, a package or a build failed, or if the input ends
// without a result for a package that started.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	ok, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// report reads go test -json events from r and writes the report to w; ok
// is false if anything failed.
func report(r io.Reader, w io.Writer) (ok bool, err error) {
	rep := newReporter(w)
	if err := rep.read(r); err != nil {
		return false, err
	}
	return rep.finish(), nil
}
