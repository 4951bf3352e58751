package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/cfg-dev/cfg/cmd/cfg/internal/cli"
	"github.com/cfg-dev/cfg/internal/freeport"
	"github.com/cfg-dev/cfg/internal/racecheck"
)

func TestMain(m *testing.M) {
	testscript.Main(testMain{m}, map[string]func(){
		"cfg":        func() { os.Exit(cli.Main()) },
		"etcd-flags": etcdFlagsMain,
	})
}

// etcdFlagsMain parses its arguments as etcd's server parses its flags,
// and fails if they do not parse. It runs as a process of its own: etcd's
// flag set writes package variables that an etcd server running in the
// tests reads.
func etcdFlagsMain() {
	set := flag.NewFlagSet("etcd", flag.ContinueOnError)
	set.Usage = func() {} // the error alone
	embed.NewConfig().AddFlags(set)
	if err := set.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if set.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "arguments that are not flags: %q\n", set.Args())
		os.Exit(2)
	}
}

// processTestsParallel is how many tests of this package run at once
// unless -test.parallel says otherwise. The end-to-end tests run fleets of
// processes and spend most of their time waiting on the wall clock (a
// canary's phases and leases, an agent's heartbeats), not on the CPU, so
// they run side by side rather than GOMAXPROCS at a time.
const processTestsParallel = 16

// raceExitSleep is how long a cfg process built with the race detector
// waits when it exits, for goroutines still running to race (GORACE's
// atexit_sleep_ms, 1000 by default). cfg's commands end their goroutines
// before they exit, and any goroutine still runnable runs within it; the
// default second, in each of the thousands of cfg processes the tests run,
// is most of the package's time under the race detector.
const raceExitSleep = "atexit_sleep_ms=100"

// testMain runs the tests (testscript.Main calls Run only when the binary
// runs as the test, not as cfg): with -test.parallel at
// processTestsParallel if it was not given, and under the race detector
// with the cfg processes that the tests start waiting raceExitSleep when
// they exit, unless GORACE says otherwise.
type testMain struct{ m *testing.M }

func (tm testMain) Run() int {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(processTestsParallel)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if gorace := os.Getenv("GORACE"); racecheck.Enabled && !strings.Contains(gorace, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(gorace+" "+raceExitSleep))
	}
	code := tm.m.Run()
	removeBuilt()
	return code
}

// removeBuilt removes the programs that the tests build once and share
// (the examples', etcd's member): they outlive each test, not the test
// binary, which would otherwise leave some 70 MB in the temporary
// directory at every run.
func removeBuilt() {
	for _, dir := range []string{binDir, etcdDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
}

// TestScript runs the end-to-end scripts in testdata/script: each is a
// small config repository and the cfg commands run against it.
func TestScript(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			if gorace := os.Getenv("GORACE"); gorace != "" {
				env.Setenv("GORACE", gorace) // see testMain
			}
			// Free ports for the daemon and the agent of a script
			// that runs them (scripts use no fixed port).
			for _, name := range []string{"DAEMON_PORT", "AGENT_PORT"} {
				port, err := freePortNumber()
				if err != nil {
					return err
				}
				env.Setenv(name, strconv.Itoa(port))
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waithttp": waitHTTP,
			"http":     httpCmd,
		},
	})
}

// freePortNumber returns a port that was free a moment ago, for a process
// that must be told its port before it starts (freeport.Ports).
func freePortNumber() (int, error) {
	ports, err := freeport.Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// waitHTTP is the script command "waithttp URL [TEXT]": it waits until a
// GET of URL answers 200 (with TEXT in the body, if given), for at most a
// minute.
func waitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waithttp URL [TEXT]")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(args[0])
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("%s", resp.Status)
			case len(args) == 2 && !strings.Contains(string(body), args[1]):
				err = fmt.Errorf("body %q does not hold %q", body, args[1])
			default:
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waithttp %s: %v", args[0], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpCmd is the script command "http METHOD URL [BODY]": it makes the
// request and writes the status code and the body to stdout.
func httpCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: http METHOD URL [BODY]")
	}
	body := ""
	if len(args) == 3 {
		body = args[2]
	}
	req, err := http.NewRequest(args[0], args[1], strings.NewReader(body))
	ts.Check(err)
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n%s", resp.StatusCode, data)
}
