package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
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

type reporter struct {
	w       io.Writer
	ok      bool
	output  map[testKey][]string // output of the tests running
	held    map[testKey]int      // bytes in output
	started map[string]bool      // packages without a result yet
	skipped []string             // "pkg Test: reason"
}

func newReporter(w io.Writer) *reporter {
	return &reporter{w: w, ok: true, output: map[testKey][]string{}, held: map[testKey]int{}, started: map[string]bool{}}
}

func (r *reporter) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go test writes some errors as text): show it.
			fmt.Fprintf(r.w, "%s\n", line)
			continue
		}
		r.event(e)
	}
	return sc.Err()
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
	case e.Action == "skip":
		r.skipped = append(r.skipped, fmt.Sprintf("%s %s: %s", strings.TrimPrefix(e.Package, modulePrefix), e.Test, skipReason(r.output[k])))
		r.forget(k)
	case e.Action == "pass":
		r.forget(k)
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
	if len(r.skipped) > 0 {
		slices.Sort(r.skipped)
		fmt.Fprintf(r.w, "skipped %d %s:\n", len(r.skipped), plural(len(r.skipped), "test"))
		for _, s := range r.skipped {
			fmt.Fprintf(r.w, "  %s\n", s)
		}
	}
	return r.ok
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
