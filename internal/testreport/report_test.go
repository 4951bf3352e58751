package main

import (
	"os"
	"os/exec"
	"path/filepath"
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
	var out strings.Builder
	ok, err := report(strings.NewReader(events), &out)
	if err != nil {
		t.Fatal(err)
	}
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
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}

	// A run that passed, and one whose output ended early.
	out.Reset()
	if ok, _ := report(strings.NewReader(strings.Join(strings.SplitAfter(events, "\n")[:11], "")), &out); !ok {
		t.Errorf("a run that passed: not ok:\n%s", out.String())
	}
	out.Reset()
	if ok, _ := report(strings.NewReader(strings.Join(strings.SplitAfter(events, "\n")[:3], "")), &out); ok || !strings.Contains(out.String(), "FAIL\tgithub.com/cfg-dev/cfg/canary/metrics (no result: the output ended)") {
		t.Errorf("output ended early: ok %v:\n%s", ok, out.String())
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
	var out strings.Builder
	ok, err := report(strings.NewReader(in), &out)
	if err != nil || ok {
		t.Fatalf("report: ok %v, %v", ok, err)
	}
	want := "FAIL\tp\t600.1s\npanic: test timed out after 10m0s\n\trunning tests:\n\t\tTestSlow (10m0s)\n"
	if out.String() != want {
		t.Errorf("report:\n%q\nwant\n%q", out.String(), want)
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
