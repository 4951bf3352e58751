package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary stand for cfgbench when a benchmark starts
// the running executable again: as cfgbench -generate (-process) and as
// the etcd server (-serve).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-generate" {
		main()
		os.Exit(0)
	}
	if etcdMain() {
		return
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is the cfg of this tree, built once for the tests that run it.
var built struct {
	once sync.Once
	dir  string
	cfg  string
	err  error
}

// cfgOfTree returns the cfg of this tree, built on first use, or skips t
// in -short mode (why: what the test does besides) and without git.
func cfgOfTree(t *testing.T, why string) string {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "cfgbench-test-"); built.err != nil {
			return
		}
		built.cfg = filepath.Join(built.dir, "cfg")
		if out, err := exec.Command("go", "build", "-o", built.cfg, "github.com/cfg-dev/cfg/cmd/cfg").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building cfg: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.cfg
}

// TestRun runs the whole benchmark on a tiny repository: the compiler and the
// baseline must write the same bytes, and the table has a row per engine.
func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"-n", "60", "-runs", "1", "-j", "1", "-nowrite", "-dir", t.TempDir()}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "verified: typed and baseline outputs are identical") {
		t.Errorf("stderr does not report the verification:\n%s", stderr.String())
	}
	for _, e := range []string{"typed", "baseline", "typed-nowrite", "baseline-nowrite"} {
		if !regexp.MustCompile(`(?m)^ *60 +` + e + ` +1 `).MatchString(stdout.String()) {
			t.Errorf("no row for %s in\n%s", e, stdout.String())
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-n", "10,x"}, `-n: bad number "x"`},
		{[]string{"-j", "0"}, `-j: bad number "0"`},
		{[]string{"-runs", "0"}, "-runs: got 0, want at least 1"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"-serve", "-streams", "1000,0"}, `-streams: bad number "0"`},
		{[]string{"-serve", "-fanout", "x"}, `-fanout: bad number "x"`},
		{[]string{"-serve", "-changes", "0"}, "-changes: got 0, want at least 1"},
		{[]string{"-paper"}, "-paper: only with -process"},
		{[]string{"-process", "-fanout", "1000,x"}, `-fanout: bad number "x"`},
		{[]string{"-process", "-changes", "0"}, "-changes: got 0, want at least 1"},
		{[]string{"-cluster", "-fanout", "1000,x"}, `-fanout: bad number "x"`},
		{[]string{"-cluster", "-changes", "0"}, "-changes: got 0, want at least 1"},
		{[]string{"-cluster", "-serve"}, "-cluster: not with -serve"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, new(bytes.Buffer))
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("parseFlags(%q): got %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

// TestServeFlags checks what -serve measures by default, and that -n
// replaces its sizes.
func TestServeFlags(t *testing.T) {
	o, err := parseFlags([]string{"-serve", "-runs", "3"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	so := o.serveOpts
	if !slices.Equal(so.sizes, []int{1000, 20000}) || !slices.Equal(so.memory, []int{1000, 5000}) || !slices.Equal(so.latency, []int{1, 100, 1000}) ||
		so.rounds != 100 || so.runs != 3 || so.command != "scripts/bench.sh -serve -runs 3" {
		t.Errorf("-serve -runs 3: got %+v", so)
	}
	o, err = parseFlags([]string{"-serve", "-n", "50", "-streams", "20,10"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.serveOpts.sizes, []int{50}) || !slices.Equal(o.serveOpts.memory, []int{10, 20}) {
		t.Errorf("-serve -n 50 -streams 20,10: sizes %v, streams %v", o.serveOpts.sizes, o.serveOpts.memory)
	}
}

func TestFirstDiff(t *testing.T) {
	got := firstDiff([]byte("{\n  \"a\": 1\n}\n"), []byte("{\n  \"a\": 1.0\n}\n"))
	want := `line 2: typed "  \"a\": 1", baseline "  \"a\": 1.0"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestServe runs the daemon's benchmark against etcd on a tiny
// repository, with the cfg of this tree: every row of the table is there,
// with numbers.
func TestServe(t *testing.T) {
	cfg := cfgOfTree(t, "builds cfg and starts etcd")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-serve", "-cfg", cfg, "-n", "30", "-runs", "1", "-streams", "5,10", "-fanout", "1,3", "-changes", "3", "-dir", t.TempDir()}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, system := range []string{"cfg serve", "etcd 3.7.3"} {
		row := regexp.MustCompile(`(?m)^ *30 +\d+ +` + system + `( +\d+){4}( +[\d.]+ / [\d.]+){2}$`)
		if !row.MatchString(stdout.String()) {
			t.Errorf("no row for %s in\n%s", system, stdout.String())
		}
	}
	if !strings.Contains(stdout.String(), "command: scripts/bench.sh -serve -cfg ") {
		t.Errorf("no command in\n%s", stdout.String())
	}
	// The changes paired: 3 a run for each watcher count.
	for _, w := range []string{"1", "3"} {
		row := regexp.MustCompile(`(?m)^ *30 +` + w + ` +3 +[-+][\d.]+ +[-+][\d.]+ to [-+][\d.]+ +\d+ %$`)
		if !row.MatchString(stdout.String()) {
			t.Errorf("no paired row for %s watchers in\n%s", w, stdout.String())
		}
	}
}

// TestMedianInterval checks the median and its confidence interval
// against the ranks tables give: for 100 values, the 40th and the 61st;
// for 10 or fewer, all of them.
func TestMedianInterval(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // in no order medianInterval relies on
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	med, lo, hi := medianInterval(ds)
	if med != 50500*time.Microsecond || lo != 40*time.Millisecond || hi != 61*time.Millisecond {
		t.Errorf("1..100 ms: median %v, interval %v to %v; want 50.5ms, 40ms to 61ms", med, lo, hi)
	}
	if ds[0] != 100*time.Millisecond {
		t.Errorf("medianInterval sorted its argument")
	}
	med, lo, hi = medianInterval(ds[95:]) // 5 4 3 2 1
	if med != 3*time.Millisecond || lo != time.Millisecond || hi != 5*time.Millisecond {
		t.Errorf("1..5 ms: median %v, interval %v to %v; want 3ms, 1ms to 5ms", med, lo, hi)
	}
	if med, lo, hi := medianInterval(nil); med != 0 || lo != 0 || hi != 0 {
		t.Errorf("no values: %v %v %v", med, lo, hi)
	}
}

// TestProcess runs the process benchmark on a tiny repository with a cfg
// built from this tree: a row per step, each with the CPU time and peak RSS
// the child's rusage (for the daemon, /proc) reports, and the command that
// reproduces it; the daemon's rows from two runs, each starting it afresh
// on the repository its compiles made, committed.
func TestProcess(t *testing.T) {
	cfg := cfgOfTree(t, "builds cfg")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-process", "-cfg", cfg, "-n", "40", "-runs", "2", "-fanout", "3,7", "-changes", "2", "-dir", t.TempDir()}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, step := range []string{`cold compile +[0-9.]+ +[0-9.]+ +[1-9][0-9]* MB +100% +rm -rf \.cfg materialized_configs && cfg compile -q`,
		`no-op compile .* MB .* cfg compile -q`, `module edit \([0-9]+ users\) .* MB .* source/lib/.*\.cinc && cfg compile -q`, `validate .* MB .* cfg validate -q`,
		`first publish +[0-9.]+ +[0-9.]+ +[1-9][0-9]* MB +[0-9]+% +cfg serve --repo \. --branch live --data-dir DATA, until GET /healthz answers 200`,
		`3 watchers, 2 changes \(p50 / p99 ms\) +[0-9.]+ / [0-9.]+ +[0-9.]+ +[1-9][0-9]* MB +- +3 × GET /v1/watch\?configs=bench/hot\.json, then 2 × .*`,
		`7 watchers, 2 changes \(p50 / p99 ms\) +[0-9.]+ / [0-9.]+ +[0-9.]+ +[1-9][0-9]* MB +- +7 × GET .*`} {
		if !regexp.MustCompile(`(?m)^40 +` + step + `$`).MatchString(stdout.String()) {
			t.Errorf("no row matching %q in\n%s", step, stdout.String())
		}
	}
	if want := "to reproduce: scripts/bench.sh -process -n 40 -runs 2 -fanout 3,7 -changes 2 -keep -dir DIR"; !strings.Contains(stdout.String(), want) {
		t.Errorf("no %q in\n%s", want, stdout.String())
	}
}

// TestProcessFlags checks what -process measures by default, and that -n,
// -paper, -fanout and -changes change it.
func TestProcessFlags(t *testing.T) {
	o, err := parseFlags([]string{"-process"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.sizes, []int{20000}) || !slices.Equal(o.fanout, []int{1000}) || o.changes != 20 {
		t.Errorf("-process: sizes %v, fan-out %v, %d changes; want [20000], [1000], 20", o.sizes, o.fanout, o.changes)
	}
	o, err = parseFlags([]string{"-process", "-paper", "-n", "50", "-fanout", "30,9", "-changes", "7"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.sizes, []int{50, PaperConfigs}) || !slices.Equal(o.fanout, []int{30, 9}) || o.changes != 7 {
		t.Errorf("-process -paper -n 50 -fanout 30,9 -changes 7: sizes %v, fan-out %v, %d changes", o.sizes, o.fanout, o.changes)
	}
}

// TestClusterFlags checks what -cluster measures by default, and that -n
// and -fanout replace it.
func TestClusterFlags(t *testing.T) {
	o, err := parseFlags([]string{"-cluster", "-runs", "2"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	co := o.clusterOpt
	if !o.cluster || co.configs != 1000 || !slices.Equal(co.watchers, []int{1000, 3000}) || co.rounds != 100 || co.runs != 2 ||
		co.cfg != "cfg" || co.command != "scripts/bench.sh -cluster -runs 2" {
		t.Errorf("-cluster -runs 2: got %+v", co)
	}
	o, err = parseFlags([]string{"-cluster", "-n", "50", "-fanout", "30,9", "-changes", "7"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if co := o.clusterOpt; co.configs != 50 || !slices.Equal(co.watchers, []int{30, 9}) || co.rounds != 7 {
		t.Errorf("-cluster -n 50 -fanout 30,9 -changes 7: got %+v", co)
	}
}

// TestCluster runs the cluster's fan-out benchmark on a tiny repository,
// with the cfg of this tree: a row of each system and of each of its
// processes, with numbers.
func TestCluster(t *testing.T) {
	cfg := cfgOfTree(t, "builds cfg and etcd and starts a cluster")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-cluster", "-cfg", cfg, "-n", "30", "-runs", "1", "-fanout", "7", "-changes", "3", "-dir", t.TempDir()}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, row := range []string{
		`7 +cfg serve, bbolt( +[\d.]+){2} +1\.00 +1\.00( +[\d.]+){2}`,
		`7 +3 cfg serve, etcd( +[\d.]+){6}`,
		`7 +etcd watch( +[\d.]+){4} +1\.00 +1\.00`,
		`7 +cfg serve, bbolt +daemon +7( +[\d.]+){4}`,
		`7 +3 cfg serve, etcd +daemon 1 \(publisher\) +3( +[\d.]+){4}`,
		`7 +3 cfg serve, etcd +daemon 3 +2( +[\d.]+){4}`,
		`7 +3 cfg serve, etcd +etcd member m2 +0( +[\d.]+){3} +-`,
		`7 +etcd watch +etcd member m0 +3( +[\d.]+){3} +-`,
	} {
		if !regexp.MustCompile(`(?m)^ *` + row + ` *$`).MatchString(stdout.String()) {
			t.Errorf("no row matching %q in\n%s", row, stdout.String())
		}
	}
	if !strings.Contains(stdout.String(), "command: scripts/bench.sh -cluster -cfg ") {
		t.Errorf("no command in\n%s", stdout.String())
	}
}
