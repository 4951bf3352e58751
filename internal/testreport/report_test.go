package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// events is go test -json output of a run in which one test passed, one
// was skipped, one subtest was skipped by a testscript condition, one test
// failed and one package failed to build.
const events = `{"Action":"start","Package":"github.com/cfg-dev/cfg/canary/metrics"}
{"Action":"run","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestProm"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestProm","Output":"=== RUN   TestProm\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestProm","Output":"    prometheus_test.go:88: prometheus is not on PATH: apt-get install prometheus\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestProm","Output":"--- SKIP: TestProm (0.00s)\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestProm"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestOK","Output":"    x_test.go:5: a log line of a test that passes\n"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/canary/metrics","Test":"TestOK"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Output":"PASS\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/canary/metrics","Output":"ok  \tgithub.com/cfg-dev/cfg/canary/metrics\t0.01s\n"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/canary/metrics"}
{"Action":"start","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestScript/log","Output":"        > [!exec:git] skip 'needs git'\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestScript/log","Output":"    --- SKIP: TestScript/log (0.00s)\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestScript/log"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestBad","Output":"    bad_test.go:9: got 1, want 2\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestBad"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Output":"FAIL\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Output":"FAIL\tgithub.com/cfg-dev/cfg/cmd/cfg\t0.02s\n"}
{"Action":"fail","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
{"ImportPath":"github.com/cfg-dev/cfg/x [x.test]","Action":"build-output","Output":"# github.com/cfg-dev/cfg/x\n"}
{"ImportPath":"github.com/cfg-dev/cfg/x [x.test]","Action":"build-output","Output":"x/x.go:2:1: syntax error\n"}
{"ImportPath":"github.com/cfg-dev/cfg/x [x.test]","Action":"build-fail"}
`

func TestReport(t *testing.T) {
	out, ok := runReport(t, options{}, events)
	if ok {
		t.Error("report says ok, want a failure")
	}
	want := `ok  	github.com/cfg-dev/cfg/canary/metrics	0.01s
    bad_test.go:9: got 1, want 2
--- FAIL: TestBad (0.00s)
FAIL
FAIL	github.com/cfg-dev/cfg/cmd/cfg	0.02s
# github.com/cfg-dev/cfg/x
x/x.go:2:1: syntax error
skipped 2 tests:
  canary/metrics TestProm: prometheus is not on PATH: apt-get install prometheus
  cmd/cfg TestScript/log: > [!exec:git] skip 'needs git'
`
	if out != want {
		t.Errorf("report:\n%s\nwant:\n%s", out, want)
	}

	// A run that passed, and one whose output ended early.
	if out, ok := runReport(t, options{}, strings.Join(strings.SplitAfter(events, "\n")[:11], "")); !ok {
		t.Errorf("a run that passed: not ok:\n%s", out)
	}
	if out, ok := runReport(t, options{}, strings.Join(strings.SplitAfter(events, "\n")[:3], "")); ok || !strings.Contains(out, "FAIL\tgithub.com/cfg-dev/cfg/canary/metrics (no result: the output ended)") {
		t.Errorf("output ended early: ok %v:\n%s", ok, out)
	}
}

// TestReportTimeout checks that the output of a test that never ended
// (the panic of go test's timeout) is shown when its package fails.
func TestReportTimeout(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestSlow"}
{"Action":"output","Package":"p","Test":"TestSlow","Output":"=== RUN   TestSlow\n"}
{"Action":"output","Package":"p","Test":"TestSlow","Output":"panic: test timed out after 10m0s\n"}
{"Action":"output","Package":"p","Test":"TestSlow","Output":"\trunning tests:\n\t\tTestSlow (10m0s)\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t600.1s\n"}
{"Action":"fail","Package":"p"}
`
	out, ok := runReport(t, options{}, in)
	if ok {
		t.Fatalf("report: ok, want a failure:\n%s", out)
	}
	want := "FAIL\tp\t600.1s\npanic: test timed out after 10m0s\n\trunning tests:\n\t\tTestSlow (10m0s)\n"
	if out != want {
		t.Errorf("report:\n%q\nwant\n%q", out, want)
	}
}

// TestScriptSaysWhatItSkips runs scripts/test.sh --check without
// prometheus on PATH: it says which tests will be skipped and how to
// install what they need; with prometheus on PATH it says nothing of it.
func TestScriptSaysWhatItSkips(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"bash", "dirname", "id"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	run := func() string {
		cmd := exec.Command(filepath.Join(bin, "bash"), "../../scripts/test.sh", "--check")
		cmd.Env = []string{"PATH=" + bin}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("test.sh --check: %v\n%s", err, out)
		}
		return string(out)
	}
	want := "prometheus is not installed: the tests of the canary's prometheus provider against a real Prometheus server (canary/metrics) will be skipped; scripts/test.sh --install installs it with apt-get, as CI does\n"
	if got := run(); !strings.Contains(got, want) {
		t.Errorf("test.sh --check without prometheus:\n%s\nwant it to contain:\n%s", got, want)
	}
	if err := os.WriteFile(filepath.Join(bin, "prometheus"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := run(); strings.Contains(got, "prometheus") {
		t.Errorf("test.sh --check with prometheus on PATH mentions it:\n%s", got)
	}
}

// raceEvents is go test -race -json output in which a test and a subtest
// skipped themselves to run without the race detector
// (racecheck.SkipUnder), and another test was skipped for a reason of its
// own.
const raceEvents = `{"Action":"start","Package":"github.com/cfg-dev/cfg/daemon"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory","Output":"=== RUN   TestMemory\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory","Output":"    bounds_test.go:9: runs without the race detector: measures memory\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory","Output":"--- SKIP: TestMemory (0.00s)\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestFullDisk","Output":"    disk_test.go:5: not root: cannot mount a tmpfs\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestFullDisk"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestOK"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Output":"ok  \tgithub.com/cfg-dev/cfg/daemon\t9.1s\n"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/daemon"}
{"Action":"start","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme/README.md:680","Output":"    readme_test.go:679: runs without the race detector: runs a program built without it\n"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme/README.md:680","Output":"    --- SKIP: TestReadme/README.md:680 (0.00s)\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme/README.md:680"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme"}
{"Action":"output","Package":"github.com/cfg-dev/cfg/cmd/cfg","Output":"ok  \tgithub.com/cfg-dev/cfg/cmd/cfg\t99.1s\n"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
`

// TestReportNorace checks that the tests that skipped themselves under
// the race detector are passed on to the run without it, and that that
// run fails unless each of them ran: the race run writes them down (-norace)
// and lists them apart from the tests skipped, -norace-runs selects
// exactly them, and the run without the race detector (-norace-ran)
// fails if one has no result.
func TestReportNorace(t *testing.T) {
	norace := filepath.Join(t.TempDir(), "norace")
	out, ok := runReport(t, options{norace: norace}, raceEvents)
	if !ok {
		t.Errorf("the race run: not ok:\n%s", out)
	}
	want := `ok  	github.com/cfg-dev/cfg/daemon	9.1s
ok  	github.com/cfg-dev/cfg/cmd/cfg	99.1s
skipped 1 test:
  daemon TestFullDisk: not root: cannot mount a tmpfs
2 tests skipped under the race detector, to run without it:
  cmd/cfg TestReadme/README.md:680: runs a program built without it
  daemon TestMemory: measures memory
`
	if out != want {
		t.Errorf("the race run's report:\n%s\nwant:\n%s", out, want)
	}
	data, err := os.ReadFile(norace)
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/cfg-dev/cfg/cmd/cfg TestReadme/README.md:680\ngithub.com/cfg-dev/cfg/daemon TestMemory\n"; string(data) != want {
		t.Errorf("-norace wrote:\n%s\nwant:\n%s", data, want)
	}

	// Without -norace, they are skipped like any other, with their reason.
	out, _ = runReport(t, options{}, raceEvents)
	if want := "skipped 3 tests:\n" +
		"  cmd/cfg TestReadme/README.md:680: runs without the race detector: runs a program built without it\n" +
		"  daemon TestFullDisk: not root: cannot mount a tmpfs\n" +
		"  daemon TestMemory: runs without the race detector: measures memory\n"; !strings.HasSuffix(out, want) {
		t.Errorf("a race run without -norace:\n%s\nwant it to end with:\n%s", out, want)
	}

	var runs strings.Builder
	if err := printRuns(norace, &runs); err != nil {
		t.Fatal(err)
	}
	if want := "github.com/cfg-dev/cfg/cmd/cfg ^TestReadme$/^README\\.md:680$\ngithub.com/cfg-dev/cfg/daemon ^TestMemory$\n"; runs.String() != want {
		t.Errorf("-norace-runs:\n%s\nwant:\n%s", runs.String(), want)
	}

	// The run without the race detector, one go test a package.
	cmdcfg := `{"Action":"start","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme/README.md:680"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/cmd/cfg","Test":"TestReadme"}
{"Action":"pass","Package":"github.com/cfg-dev/cfg/cmd/cfg"}
`
	daemon := func(test string) string {
		return `{"Action":"start","Package":"github.com/cfg-dev/cfg/daemon"}
` + test + `{"Action":"pass","Package":"github.com/cfg-dev/cfg/daemon"}
`
	}
	ran := `{"Action":"pass","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory"}
`
	out, ok = runReport(t, options{noraceRan: norace}, cmdcfg, daemon(ran))
	if want := "ran without the race detector: 2 tests skipped under it\n"; !ok || out != want {
		t.Errorf("every test ran without the race detector: ok %v:\n%s\nwant:\n%s", ok, out, want)
	}
	// One that did not run fails the run.
	out, ok = runReport(t, options{noraceRan: norace}, cmdcfg, daemon(""))
	if want := "FAIL\tdaemon TestMemory: skipped under the race detector, and not run without it\n"; ok || !strings.Contains(out, want) {
		t.Errorf("a test that did not run without the race detector: ok %v:\n%s\nwant it to contain:\n%s", ok, out, want)
	}
	out, ok = runReport(t, options{noraceRan: norace}, cmdcfg)
	if ok || !strings.Contains(out, "FAIL\tdaemon TestMemory") {
		t.Errorf("a package whose tests did not run without the race detector: ok %v:\n%s", ok, out)
	}
	// One that skipped itself for a reason of its own is listed with it.
	skipped := `{"Action":"output","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory","Output":"    bounds_test.go:9: not on Linux\n"}
{"Action":"skip","Package":"github.com/cfg-dev/cfg/daemon","Test":"TestMemory"}
`
	out, ok = runReport(t, options{noraceRan: norace}, cmdcfg, daemon(skipped))
	if want := "skipped 1 test:\n  daemon TestMemory: not on Linux\n"; !ok || !strings.HasSuffix(out, want) {
		t.Errorf("a test skipped without the race detector too: ok %v:\n%s\nwant it to end with:\n%s", ok, out, want)
	}
}

// runReport runs report on inputs, side by side.
func runReport(t *testing.T, opts options, inputs ...string) (string, bool) {
	t.Helper()
	var ins []io.Reader
	for _, in := range inputs {
		ins = append(ins, strings.NewReader(in))
	}
	var out strings.Builder
	ok, err := report(ins, &out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), ok
}

// TestNoraceRunsSelect runs the tests of a fixture package (testdata/norace)
// as scripts/test.sh does: with TESTREPORT_RACE set, some skip themselves
// to run without the race detector, as they do under it; then go test
// -run with the patterns of -norace-runs runs them, and exactly them.
func TestNoraceRunsSelect(t *testing.T) {
	const pkg = "github.com/cfg-dev/cfg/internal/testreport/testdata/norace"
	goTest := func(env string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("go", append([]string{"test", "-count=1", "-json"}, args...)...)
		cmd.Env = append(os.Environ(), "TESTREPORT_RACE="+env)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go test %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	norace := filepath.Join(t.TempDir(), "norace")
	var out strings.Builder
	if ok, err := report([]io.Reader{bytes.NewReader(goTest("1", pkg))}, &out, options{norace: norace}); err != nil || !ok {
		t.Fatalf("the run that skips: ok %v, %v:\n%s", ok, err, out.String())
	}
	var runs strings.Builder
	if err := printRuns(norace, &runs); err != nil {
		t.Fatal(err)
	}
	gotPkg, pattern, _ := strings.Cut(strings.TrimSuffix(runs.String(), "\n"), " ")
	if gotPkg != pkg || strings.Contains(pattern, "\n") {
		t.Fatalf("-norace-runs:\n%s\nwant one line, of %s", runs.String(), pkg)
	}
	json2 := goTest("", "-run", pattern, pkg)
	out.Reset()
	if ok, err := report([]io.Reader{bytes.NewReader(json2)}, &out, options{noraceRan: norace}); err != nil || !ok {
		t.Errorf("the run of the tests that skipped: ok %v, %v:\n%s", ok, err, out.String())
	}
	var passed []string
	for line := range bytes.Lines(json2) {
		var e event
		if err := json.Unmarshal(line, &e); err == nil && e.Action == "pass" && e.Test != "" {
			passed = append(passed, e.Test)
		}
	}
	slices.Sort(passed)
	want := []string{"TestMemory", "TestReadme", "TestReadme/README.md:680", "TestReadme/a/b", "TestReadme/x(y)|z_[1]"}
	if !slices.Equal(passed, want) {
		t.Errorf("go test -run %s passed %q, want %q", pattern, passed, want)
	}
}
