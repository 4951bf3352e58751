package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/cfg-dev/cfg/internal/racecheck"
)

// event is one line of go test -json (cmd/test2json), with the build
// events of go test -json.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// modulePrefix is left out of package names in the report.
const modulePrefix = "github.com/cfg-dev/cfg/"

// maxHeld bounds the output held for one test until it ends: a test that
// fails shows its last maxHeld bytes.
const maxHeld = 1 << 20

type testKey struct{ pkg, test string }

// skip is a test that was skipped, and the reason it gave.
type skip struct {
	testKey
	reason string
}

type reporter struct {
	w       io.Writer
	ok      bool
	output  map[testKey][]string // output of the tests running
	held    map[testKey]int      // bytes in output
	started map[string]bool      // packages without a result yet
	skipped []skip

	// With -norace, the tests that skipped themselves to run without
	// the race detector are in norace rather than skipped.
	noraceApart bool
	norace      []skip

	// With -norace-ran, the tests that must run, each with its result
	// ("pass", "fail", "skip") once it has one.
	mustRun map[testKey]string
}

func newReporter(w io.Writer) *reporter {
	return &reporter{w: w, ok: true, output: map[testKey][]string{}, held: map[testKey]int{}, started: map[string]bool{}}
}

// readAll reads the events of every input side by side, until each ends.
func (r *reporter) readAll(ins []io.Reader) error {
	lines := make(chan []byte)
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() {
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				lines <- bytes.Clone(sc.Bytes())
			}
			errs[i] = sc.Err()
		})
	}
	go func() {
		wg.Wait()
		close(lines)
	}()
	for line := range lines {
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go test writes some errors as text): show it.
			fmt.Fprintf(r.w, "%s\n", line)
			continue
		}
		r.event(e)
	}
	return errors.Join(errs...)
}

func (r *reporter) event(e event) {
	k := testKey{e.Package, e.Test}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.w, e.Output)
	case e.Action == "build-fail":
		r.ok = false
	case e.Action == "start":
		r.started[e.Package] = true
	case e.Test == "":
		// A package: its result line, and what it printed outside tests
		// (a panic, a timeout).
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" {
				fmt.Fprint(r.w, e.Output)
			}
		case "pass", "skip":
			delete(r.started, e.Package)
		case "fail":
			delete(r.started, e.Package)
			r.ok = false
			// Tests that never ended (a timeout's panic, a crash):
			// what they printed says why.
			var running []testKey
			for k := range r.output {
				if k.pkg == e.Package {
					running = append(running, k)
				}
			}
			slices.SortFunc(running, func(a, b testKey) int { return strings.Compare(a.test, b.test) })
			for _, k := range running {
				fmt.Fprint(r.w, strings.Join(r.output[k], ""))
				r.forget(k)
			}
		}
	case e.Action == "output":
		if strings.HasPrefix(e.Output, "=== ") {
			return
		}
		r.output[k] = append(r.output[k], e.Output)
		r.held[k] += len(e.Output)
		for r.held[k] > maxHeld && len(r.output[k]) > 1 {
			r.held[k] -= len(r.output[k][0])
			r.output[k] = r.output[k][1:]
		}
	case e.Action == "fail":
		r.ok = false
		fmt.Fprint(r.w, strings.Join(r.output[k], ""))
		r.forget(k)
		r.result(k, e.Action)
	case e.Action == "skip":
		s := skip{k, skipReason(r.output[k])}
		if why, ok := strings.CutPrefix(s.reason, racecheck.SkipPrefix); ok && r.noraceApart {
			s.reason = why
			r.norace = append(r.norace, s)
		} else {
			r.skipped = append(r.skipped, s)
		}
		r.forget(k)
		r.result(k, e.Action)
	case e.Action == "pass":
		r.forget(k)
		r.result(k, e.Action)
	}
}

// result notes the result of a test that must run.
func (r *reporter) result(k testKey, action string) {
	if _, ok := r.mustRun[k]; ok {
		r.mustRun[k] = action
	}
}

func (r *reporter) forget(k testKey) {
	delete(r.output, k)
	delete(r.held, k)
}

// skipReason is the message a skipped test gave: its last line of output
// before the "--- SKIP" line.
func skipReason(output []string) string {
	lines := strings.Split(strings.Join(output, ""), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		// "file_test.go:88: reason"
		if _, rest, ok := strings.Cut(l, ".go:"); ok {
			if _, msg, ok := strings.Cut(rest, ": "); ok {
				l = msg
			}
		}
		return l
	}
	return "(no reason given)"
}

// finish prints the skipped tests and reports whether everything passed.
func (r *reporter) finish() bool {
	for pkg := range r.started {
		fmt.Fprintf(r.w, "FAIL\t%s (no result: the output ended)\n", pkg)
		r.ok = false
	}
	if r.mustRun != nil {
		var missing []testKey
		ran := 0
		for k, result := range r.mustRun {
			switch result {
			case "":
				missing = append(missing, k)
			case "pass", "fail":
				ran++
			}
		}
		slices.SortFunc(missing, compareTests)
		for _, k := range missing {
			fmt.Fprintf(r.w, "FAIL\t%s: skipped under the race detector, and not run without it\n", name(k))
			r.ok = false
		}
		if ran > 0 {
			fmt.Fprintf(r.w, "ran without the race detector: %d %s skipped under it\n", ran, plural(ran, "test"))
		}
	}
	r.list(fmt.Sprintf("skipped %d %s:", len(r.skipped), plural(len(r.skipped), "test")), r.skipped)
	r.list(fmt.Sprintf("%d %s skipped under the race detector, to run without it:", len(r.norace), plural(len(r.norace), "test")), r.norace)
	return r.ok
}

// list prints skipped tests, if any, under a heading.
func (r *reporter) list(heading string, skips []skip) {
	if len(skips) == 0 {
		return
	}
	slices.SortFunc(skips, func(a, b skip) int { return compareTests(a.testKey, b.testKey) })
	fmt.Fprintln(r.w, heading)
	for _, s := range skips {
		fmt.Fprintf(r.w, "  %s: %s\n", name(s.testKey), s.reason)
	}
}

// name is how the report names a test: its package, without the module's
// path, and its name.
func name(k testKey) string {
	return strings.TrimPrefix(k.pkg, modulePrefix) + " " + k.test
}

func compareTests(a, b testKey) int {
	return strings.Compare(name(a), name(b))
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// writeTests writes tests to the file name, one "package test" a line,
// in order.
func writeTests(name string, tests []skip) error {
	tests = slices.Clone(tests)
	slices.SortFunc(tests, func(a, b skip) int { return compareTests(a.testKey, b.testKey) })
	var b strings.Builder
	for _, s := range tests {
		fmt.Fprintf(&b, "%s %s\n", s.pkg, s.test)
	}
	return os.WriteFile(name, []byte(b.String()), 0o666)
}

// readTests reads the tests that writeTests wrote.
func readTests(name string) ([]testKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var tests []testKey
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: %q is not a package and a test", name, n, strings.TrimSpace(line))
		}
		tests = append(tests, testKey{f[0], f[1]})
	}
	return tests, nil
}

// printRuns prints, for each package of the tests of the file name, in
// the order of the file, a line of the package and a go test -run pattern
// that selects exactly its tests: each test's name, a subtest's with each
// of its parts, matched whole.
func printRuns(name string, w io.Writer) error {
	tests, err := readTests(name)
	if err != nil {
		return err
	}
	var pkgs []string
	patterns := map[string][]string{}
	for _, k := range tests {
		if _, ok := patterns[k.pkg]; !ok {
			pkgs = append(pkgs, k.pkg)
		}
		var parts []string
		for _, part := range strings.Split(k.test, "/") {
			parts = append(parts, "^"+regexp.QuoteMeta(part)+"$")
		}
		patterns[k.pkg] = append(patterns[k.pkg], strings.Join(parts, "/"))
	}
	for _, pkg := range pkgs {
		if _, err := fmt.Fprintf(w, "%s %s\n", pkg, strings.Join(patterns[pkg], "|")); err != nil {
			return err
		}
	}
	return nil
}
