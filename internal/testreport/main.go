// Command testreport reads the output of go test -json and prints what go
// test prints without -json (each package's result, and the output of
// every test that failed), then every test that was skipped, with the
// reason it gave. scripts/test.sh runs the tests through it, so that a run
// that passed says what it did not test, and why.
//
//	go test -json ./... | go run ./internal/testreport
//
// It reads the files named as arguments side by side (named pipes, each
// written by a go test of its own), or standard input if none is named.
// It exits 1 if a test, a package or a build failed, or if the input ends
// without a result for a package that started.
//
// Some tests run without the race detector only: under it they skip
// themselves with a reason that starts with racecheck.SkipPrefix
// (racecheck.SkipUnder). scripts/test.sh runs the packages that run work
// concurrently under the race detector only, and then those tests without
// it:
//
//	go test -race -json PKGS | testreport -norace FILE
//	testreport -norace-runs FILE  # PKG PATTERN a line: go test -run PATTERN PKG
//	go test -json -run PATTERN PKG | testreport -norace-ran FILE
//
// -norace writes the tests that skipped themselves so to FILE, one
// "package test" a line, and lists them apart from the tests skipped;
// -norace-runs prints, for each package of FILE, a go test -run pattern
// that selects exactly its tests; -norace-ran fails unless every test of
// FILE ran (or was skipped, for a reason of its own, which is listed).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	var opts options
	flag.StringVar(&opts.norace, "norace", "", "write to `file` the tests that skipped themselves to run without the race detector")
	runs := flag.String("norace-runs", "", "print, for each package of `file` (written by -norace), the package and a go test -run pattern that selects its tests, and exit")
	flag.StringVar(&opts.noraceRan, "norace-ran", "", "fail unless every test of `file` (written by -norace) ran")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go test -json ... | testreport [flags] [file...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *runs != "" {
		if err := printRuns(*runs, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ins := []io.Reader{os.Stdin}
	if flag.NArg() > 0 {
		ins = nil
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
				os.Exit(1)
			}
			ins = append(ins, f)
		}
	}
	ok, err := report(ins, os.Stdout, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// options are testreport's flags.
type options struct {
	norace    string // write the tests skipped to run without the race detector here
	noraceRan string // the tests that must run, written by -norace
}

// report reads go test -json events from ins, side by side, and writes the
// report to w; ok is false if anything failed.
func report(ins []io.Reader, w io.Writer, opts options) (ok bool, err error) {
	rep := newReporter(w)
	rep.noraceApart = opts.norace != ""
	if opts.noraceRan != "" {
		tests, err := readTests(opts.noraceRan)
		if err != nil {
			return false, err
		}
		rep.mustRun = map[testKey]string{}
		for _, k := range tests {
			rep.mustRun[k] = ""
		}
	}
	if err := rep.readAll(ins); err != nil {
		return false, err
	}
	ok = rep.finish()
	if opts.norace != "" {
		if err := writeTests(opts.norace, rep.norace); err != nil {
			return false, err
		}
	}
	return ok, nil
}
