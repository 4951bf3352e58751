package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/internal/racecheck"
	"github.com/cfg-dev/cfg/internal/syncbuf"
	"github.com/cfg-dev/cfg/wire"
)

// The canary demo of examples/canary, end to end with real processes: a
// daemon, six agents, six demo services reporting Prometheus metrics, the
// load driver, and cfg canary.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// exampleBinary returns the program of the examples' package pkg
// ("canary/demosvc"), building the examples' programs once.
func exampleBinary(t *testing.T, pkg string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "cfg-examples")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"canary/demosvc", "canary/load", "gates/feedsvc"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.FromSlash(pkg)), "github.com/cfg-dev/cfg/examples/"+pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, filepath.FromSlash(pkg))
}

// startBin starts a program that is not cfg.
func startBin(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(bin, args...))
}

// freePort returns a port that was free a moment ago (see freePortNumber).
func freePort(t *testing.T) int {
	t.Helper()
	port, err := freePortNumber()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// runCode runs cfg to completion and returns its output and exit code.
func runCode(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command("cfg", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CFG_TOKEN=e2e-token", "CFG_AUTHOR_NAME=e2e", "CFG_AUTHOR_EMAIL=e2e@example.com", "GIT_CONFIG_NOSYSTEM=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// fleet is an example running: a daemon and hosts, each an agent and the
// example's service, under load.
type fleet struct {
	repo, work string
	daemon     string
	config     string   // the config the services read and canaries change
	spec       string   // the canary spec
	services   []string // the services' base URLs, by host
	agents     []string // the agents' base URLs, by host
	caches     []string // the agents' cache directories, by host
	upstream   []*proc  // the daemon and the agents
}

const fleetSize = 6

// startFleet runs the canary demo on six hosts.
func startFleet(t *testing.T) *fleet {
	t.Helper()
	demosvc := exampleBinary(t, "canary/demosvc")
	return startExample(t, "canary", fleetSize, "demo/service", "demo/canary", demoService(demosvc))
}

// demoService returns the command of the canary demo's service (the
// program demosvc) on a host, for startHosts.
func demoService(demosvc string) func(listen, agent, cache string) *exec.Cmd {
	return func(listen, agent, cache string) *exec.Cmd {
		return exec.Command(demosvc, "-listen", listen, "-agent", agent, "-cache-dir", cache, "-config", "demo/service")
	}
}

// startExample runs examples/EXAMPLE (its source/ and changes/, committed
// in a new git repository) on n hosts: a daemon, and on each host an agent
// (labelled zone=z0 or z1) and the example's service (the command
// service returns), all under the load driver's 25 requests per second. It
// returns when every host reports config.
func startExample(t *testing.T, example string, n int, config, spec string, service func(listen, agent, cache string) *exec.Cmd) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	load := exampleBinary(t, "canary/load")
	f := newExampleRepo(t, example, config, spec, nil)
	f.upstream = append(f.upstream, start(t, f.work, "serve", "--repo", f.repo, "--data-dir", filepath.Join(f.work, "daemon"),
		"--listen", "127.0.0.1:0", "--addr-file", filepath.Join(f.work, "daemon.addr"), "--poll", "100ms", "--heartbeat", "1s"))
	f.daemon = addr(t, filepath.Join(f.work, "daemon.addr"))
	eventually(t, 10*time.Second, "the daemon to publish", func() bool {
		_, code, _ := httpGet(f.daemon + "/healthz")
		return code == http.StatusOK
	})
	f.startHosts(t, n, load, service, func(int) []string { return []string{f.daemon} }, "5s")
	eventually(t, 10*time.Second, "every host to report", func() bool { return len(f.hosts(t)) == n })
	return f
}

// newExampleRepo returns a fleet, with nothing running yet, whose
// repository holds examples/EXAMPLE's source/ and changes/ and the extra
// source files (name without .cconf: content), committed with cfg.
func newExampleRepo(t *testing.T, example, config, spec string, extra map[string]string) *fleet {
	t.Helper()
	f := &fleet{repo: t.TempDir(), work: t.TempDir(), config: config, spec: spec}
	for _, dir := range []string{"source", "changes"} {
		if err := os.CopyFS(filepath.Join(f.repo, dir), os.DirFS(filepath.Join("../../examples", example, dir))); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range extra {
		if err := os.WriteFile(filepath.Join(f.repo, "source", name+".cconf"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("git", "-C", f.repo, "init", "-q", "-b", "main").CombinedOutput(); err != nil {
		t.Skipf("git init: %v %s", err, out)
	}
	run(t, f.repo, "commit", "-m", "initial")
	return f
}

// startHosts starts n hosts web-1..web-n: on each an agent (labelled
// zone=z0 or z1) of the daemons daemons(i) lists, in order, and the
// service that service returns; it waits until every service answers and
// puts them all under load's 25 requests per second.
func (f *fleet) startHosts(t *testing.T, n int, load string, service func(listen, agent, cache string) *exec.Cmd, daemons func(i int) []string, heartbeatTimeout string) {
	t.Helper()
	for i := range n {
		host := fmt.Sprintf("web-%d", i+1)
		svc := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cache := filepath.Join(f.work, host)
		f.upstream = append(f.upstream, start(t, f.work, "agent", "--daemon", strings.Join(daemons(i), ","), "--host", host, "--label", fmt.Sprintf("zone=z%d", i%2),
			"--cache-dir", cache, "--listen", "127.0.0.1:0", "--addr-file", filepath.Join(f.work, host+".addr"),
			"--metrics", "http://"+svc+"/metrics", "--report-every", "1s", "--heartbeat-timeout", heartbeatTimeout))
		agentURL := addr(t, filepath.Join(f.work, host+".addr"))
		startCmd(t, service(svc, agentURL, cache))
		f.services = append(f.services, "http://"+svc)
		f.agents = append(f.agents, agentURL)
		f.caches = append(f.caches, cache)
	}
	for i, s := range f.services {
		eventually(t, 30*time.Second, fmt.Sprintf("web-%d to serve", i+1), func() bool {
			_, code, _ := httpGet(s + "/")
			return code == http.StatusOK
		})
	}
	startBin(t, load, "-targets", strings.Join(f.services, ","), "-rps", "25")
}

// hosts returns the hosts reporting the fleet's config.
func (f *fleet) hosts(t *testing.T) []wire.Host {
	t.Helper()
	body, _, err := httpGet(f.daemon + "/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []wire.Host
	json.Unmarshal([]byte(body), &hosts)
	return slices.DeleteFunc(hosts, func(h wire.Host) bool { return !slices.Contains(h.Configs, f.config) })
}

// running returns what each demo service runs: revision and timeout_ms.
func (f *fleet) running(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range f.services {
		body, _, err := httpGet(s + "/config")
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Revision int64
			Config   struct {
				Greeting  string
				TimeoutMS int `json:"timeout_ms"`
			}
		}
		json.Unmarshal([]byte(body), &c)
		out = append(out, fmt.Sprintf("r%d/%s/%d", c.Revision, c.Config.Greeting, c.Config.TimeoutMS))
	}
	return out
}

// apply puts a change of the example (changes/CHANGE.cconf) in the work
// tree, as the source of the fleet's config, and returns it.
func (f *fleet) apply(t *testing.T, change string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.repo, "changes", change+".cconf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.repo, "source", f.config+".cconf"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func (f *fleet) canary(t *testing.T, args ...string) (*canary.Report, string, int) {
	t.Helper()
	args = append([]string{"canary", "--spec", f.spec, "--daemon", f.daemon, "--format", "json"}, args...)
	out, stderr, code := runCode(t, f.repo, args...)
	var rep canary.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("cfg %s: exit %d, report %q: %v\n%s", strings.Join(args, " "), code, out, err, stderr)
	}
	return &rep, stderr, code
}

// canaryRun is cfg canary running in the background.
type canaryRun struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
}

// startCanary starts cfg canary of demo/canary with a JSON report; it is
// killed when the test ends.
func (f *fleet) startCanary(t *testing.T, args ...string) *canaryRun {
	t.Helper()
	args = append([]string{"canary", "--spec", "demo/canary", "--daemon", f.daemon, "--format", "json"}, args...)
	c := &canaryRun{cmd: exec.Command("cfg", args...), done: make(chan struct{})}
	c.cmd.Dir = f.repo
	c.cmd.Env = append(os.Environ(), "CFG_TOKEN=e2e-token", "CFG_AUTHOR_NAME=e2e", "CFG_AUTHOR_EMAIL=e2e@example.com", "GIT_CONFIG_NOSYSTEM=1")
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

// wait waits for the run to end and returns its report, stderr and exit
// code.
func (c *canaryRun) wait(t *testing.T) (*canary.Report, string, int) {
	t.Helper()
	<-c.done
	var rep canary.Report
	out := c.stdout.String()
	stderr := c.stderr.String()
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("cfg canary: exit %d, report %q: %v\n%s", c.cmd.ProcessState.ExitCode(), out, err, stderr)
	}
	return &rep, stderr, c.cmd.ProcessState.ExitCode()
}

// overridden returns the hosts that report an override.
func (f *fleet) overridden(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, h := range f.hosts(t) {
		if len(h.Overrides) > 0 {
			out = append(out, h.Name)
		}
	}
	return out
}

// git runs command-line git in the fleet's repository.
func (f *fleet) git(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", f.repo}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=other", "GIT_AUTHOR_EMAIL=other@example.com",
		"GIT_COMMITTER_NAME=other", "GIT_COMMITTER_EMAIL=other@example.com", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func headCommit(t *testing.T, repo string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// served is what an agent served at a time: the config's bytes, and the
// override it came from (ID/VERSION), if any.
type served struct {
	at       time.Time
	data     string
	override string
}

// poller reads what every agent serves every 200 ms.
type poller struct {
	stop chan struct{}
	done chan struct{}
	seen [][]served // by host
}

func (f *fleet) poll() *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{}), seen: make([][]served, len(f.agents))}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, a := range f.agents {
				resp, err := http.Get(a + "/v1/configs/demo/service")
				if err != nil {
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == http.StatusOK {
					p.seen[i] = append(p.seen[i], served{at: time.Now(), data: string(body), override: resp.Header.Get(wire.HeaderOverride)})
				}
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// finish stops the poller and returns what each host served.
func (p *poller) finish() [][]served {
	close(p.stop)
	<-p.done
	return p.seen
}

// checkContinuous checks that no host served the old config (old) again
// after it first served another, before back (zero: never).
func checkContinuous(t *testing.T, seen [][]served, old string, back time.Time) {
	t.Helper()
	for i, obs := range seen {
		first := slices.IndexFunc(obs, func(s served) bool { return s.data != old })
		if first < 0 {
			continue
		}
		for _, s := range obs[first:] {
			if s.data == old && (back.IsZero() || s.at.Before(back)) {
				t.Errorf("web-%d served the old config at %s, %.1f s after it first served the candidate (%s) and before the rollback",
					i+1, s.at.Format("15:04:05.000"), s.at.Sub(obs[first].at).Seconds(), obs[first].override)
				break
			}
		}
	}
}

// gitShow returns a file as a commit holds it.
func gitShow(t *testing.T, repo, commit, path string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "show", commit+":"+path).Output()
	if err != nil {
		t.Fatalf("git show %s:%s: %v", commit, path, err)
	}
	return string(out)
}

// skipUnderRace skips a process test (a canary's, a cluster's) under the
// race detector: it runs without it. Its length is set by the wall clock
// (a canary's phases, leases), which the race detector does not shorten;
// the code it runs (the canary's controller, the daemon, the agent) runs
// under the race detector in those packages' tests and in TestCanaryDemo,
// here, which takes the whole path from push to landing.
func skipUnderRace(t *testing.T) {
	t.Helper()
	racecheck.SkipUnder(t, "a wall-clock process test; TestCanaryDemo covers the path under the race detector")
}

// The demo's bad change is rolled back and its good change lands, under
// a spec whose phases last three leases: every host serves the candidate
// without a gap from when it first gets it until the rollback or the
// landing, and the landing commit holds exactly the bytes canaried.
func TestCanaryDemo(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	before := f.running(t)
	head := headCommit(t, f.repo)
	old := gitShow(t, f.repo, head, "materialized_configs/demo/service.json")

	// The bad change is rolled back and never lands.
	f.apply(t, "bad")
	p := f.poll()
	rep, stderr, code := f.canary(t, "--seed", "1")
	seen := p.finish()
	if code != 1 || rep.Outcome != canary.RolledBack {
		t.Fatalf("bad change: exit %d, outcome %q (%s), want 1 and rolled_back\n%s", code, rep.Outcome, rep.Reason, stderr)
	}
	if p := rep.Phases[0]; p.Verdict != canary.Fail || !slices.ContainsFunc(p.Checks, func(c canary.CheckReport) bool { return c.Name == "error ratio" && c.Verdict == judge.Fail }) {
		t.Errorf("bad change: first phase %+v, want the error ratio check failed", p)
	}
	t.Logf("bad change rolled back: %s; every canary host back on revision %d %.1f s after the push (scrape interval %d s, breach 8 s, window 6 s: examples/canary/source/lib/checks.cinc)",
		rep.Reason, rep.Base, rep.RevertSeconds, rep.ScrapeIntervalSeconds)
	checkContinuous(t, seen, old, rep.Phases[len(rep.Phases)-1].Ended)
	if want := "the candidate is still in the working tree; to discard it: git checkout HEAD -- materialized_configs/demo/service.json source/demo/service.cconf\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("bad change: stderr does not end with %q:\n%s", want, stderr)
	}
	if got := headCommit(t, f.repo); got != head {
		t.Errorf("the bad change moved HEAD to %s", got)
	}
	for _, h := range f.hosts(t) {
		if len(h.Overrides) > 0 {
			t.Errorf("%s still reports overrides %+v after the rollback", h.Name, h.Overrides)
		}
	}
	eventually(t, 10*time.Second, "every service to run the old config", func() bool { return slices.Equal(f.running(t), before) })

	// The good change lands and reaches every host.
	f.apply(t, "good")
	p = f.poll()
	rep, stderr, code = f.canary(t, "--seed", "1")
	seen = p.finish()
	if code != 0 || rep.Outcome != canary.Landed {
		t.Fatalf("good change: exit %d, outcome %q (%s), want 0 and landed\n%s", code, rep.Outcome, rep.Reason, stderr)
	}
	checkContinuous(t, seen, old, time.Time{})
	if got := headCommit(t, f.repo); got != rep.Commit || got == head {
		t.Errorf("HEAD is %s, want the landed commit %s", got, rep.Commit)
	}
	want := fmt.Sprintf("r%d/", rep.Revision)
	eventually(t, 10*time.Second, "every service to run the landed revision", func() bool {
		for _, r := range f.running(t) {
			if !strings.HasPrefix(r, want) {
				return false
			}
		}
		return true
	})
	for _, h := range f.hosts(t) {
		if len(h.Overrides) > 0 || h.Applied < rep.Revision {
			t.Errorf("%s: overrides %+v, applied %d after landing revision %d", h.Name, h.Overrides, h.Applied, rep.Revision)
		}
	}
	if rep.Bake == nil || rep.Bake.Verdict != canary.Pass || len(rep.Baseline) != 1 {
		t.Errorf("good change: bake %+v, baseline %+v; want a passed bake", rep.Bake, rep.Baseline)
	}

	// The landing commit holds exactly what the canary hosts ran, and
	// the source it was compiled from.
	var canaried []string
	for _, obs := range seen {
		for _, s := range obs {
			if s.override != "" && !slices.Contains(canaried, s.data) {
				canaried = append(canaried, s.data)
			}
		}
	}
	goodSource, err := os.ReadFile(filepath.Join(f.repo, "changes", "good.cconf"))
	if err != nil {
		t.Fatal(err)
	}
	if got := gitShow(t, f.repo, rep.Commit, "materialized_configs/demo/service.json"); len(canaried) != 1 || got != canaried[0] {
		t.Errorf("the landing commit holds\n%s\nthe canary hosts ran %q", got, canaried)
	}
	if got := gitShow(t, f.repo, rep.Commit, "source/demo/service.cconf"); got != string(goodSource) {
		t.Errorf("the landing commit holds the source\n%s\nwant changes/good.cconf\n%s", got, goodSource)
	}

	out, _, _ := runCode(t, f.repo, "canary", "history", "--daemon", f.daemon, "--format", "json")
	var runs []wire.Run
	json.Unmarshal([]byte(out), &runs)
	if len(runs) != 2 || runs[0].Status != wire.RunRolledBack || runs[1].Status != wire.RunLanded || runs[1].Commit != rep.Commit {
		t.Fatalf("canary history: %s", out)
	}
	// One run in detail: who ran it, every evaluation, how it ended.
	out, _, code = runCode(t, f.repo, "canary", "history", runs[0].ID, "--daemon", f.daemon)
	for _, want := range []string{
		"run " + runs[0].ID + " of demo/service (spec demo/canary): rolled_back, started ",
		"  run by e2e <e2e@example.com>, ",
		"  phase \"two hosts\": check \"error ratio\" failed: ",
		"  evaluations:\n",
		"error ratio",
		"p99 latency",
		"rolled back: every canary host serves revision 1 again",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("cfg canary history %s: exit %d, output lacks %q:\n%s", runs[0].ID, code, want, out)
		}
	}
}

// A change whose failure shows only after twice the lease is rolled
// back; one whose failure shows only once it has landed is reverted by
// the bake, and is not canaried again unless asked.
func TestCanaryLateFailure(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	f := startFleet(t)
	head := headCommit(t, f.repo)
	old := gitShow(t, f.repo, head, "materialized_configs/demo/service.json")

	f.apply(t, "late")
	p := f.poll()
	rep, stderr, code := f.canary(t, "--seed", "1")
	seen := p.finish()
	if code != 1 || rep.Outcome != canary.RolledBack || !strings.HasPrefix(rep.Reason, `phase "two hosts": check "error ratio" failed`) {
		t.Fatalf("late change: exit %d, outcome %q (%s), want 1 and rolled_back in the first phase\n%s", code, rep.Outcome, rep.Reason, stderr)
	}
	checkContinuous(t, seen, old, rep.Phases[len(rep.Phases)-1].Ended)

	// Failing after 34 s: the first canaries have run it for about 27 s
	// when the phases end, and the bake lasts 20 s. While the phases run,
	// the source is edited: the landing commit holds what was canaried,
	// and the edit stays in the working tree. Once the change has landed,
	// materialized_configs/ is replaced by a link to a directory outside
	// the repository: the revert commits the old files on the landed
	// commit, and writes nothing through the link.
	late, err := os.ReadFile(filepath.Join(f.repo, "changes", "late.cconf"))
	if err != nil {
		t.Fatal(err)
	}
	later := strings.Replace(string(late), "fail_after_seconds = 9", "fail_after_seconds = 34", 1)
	servicePath := filepath.Join(f.repo, "source/demo/service.cconf")
	if err := os.WriteFile(servicePath, []byte(later), 0o644); err != nil {
		t.Fatal(err)
	}
	oldSource := gitShow(t, f.repo, head, "source/demo/service.cconf")
	c := f.startCanary(t, "--seed", "1")
	eventually(t, 60*time.Second, "the canary hosts to apply the candidate", func() bool { return len(f.overridden(t)) == 2 })
	edited := strings.Replace(later, "now a little faster", "edited while the canary ran", 1)
	if err := os.WriteFile(servicePath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the change to land", func() bool { return headCommit(t, f.repo) != head })
	landed := headCommit(t, f.repo)
	materialized := filepath.Join(f.repo, "materialized_configs")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.CopyFS(outside, os.DirFS(materialized)); err != nil {
		t.Fatal(err)
	}
	outsideBefore := readTree(t, outside)
	moved := filepath.Join(f.work, "materialized_configs.moved")
	if err := os.Rename(materialized, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, materialized); err != nil {
		t.Fatal(err)
	}
	rep, stderr, code = c.wait(t)
	if code != 4 || rep.Outcome != canary.Reverted || !strings.HasPrefix(rep.Reason, `bake: check "error ratio" failed`) {
		t.Fatalf("later change: exit %d, outcome %q (%s), want 4 and reverted by the bake\n%s", code, rep.Outcome, rep.Reason, stderr)
	}
	if rep.Commit != landed {
		t.Errorf("the report's commit is %s, want the landed %s", rep.Commit, landed)
	}
	if got := gitShow(t, f.repo, landed, "source/demo/service.cconf"); got != later {
		t.Errorf("the landing commit holds the source\n%s\nwant the one canaried\n%s", got, later)
	}
	if got := headCommit(t, f.repo); got != rep.RevertCommit {
		t.Errorf("HEAD is %s, want the revert %s", got, rep.RevertCommit)
	}
	if got := f.git(t, "rev-parse", rep.RevertCommit+"^"); got != landed {
		t.Errorf("the revert's parent is %s, want the landed commit %s", got, landed)
	}
	if got := f.git(t, "diff", "--name-only", head, rep.RevertCommit); got != "" {
		t.Errorf("the revert differs from the commit before the change in:\n%s", got)
	}
	if got := gitShow(t, f.repo, rep.RevertCommit, "materialized_configs/demo/service.json"); got != old {
		t.Errorf("the revert holds\n%s\nwant the old config\n%s", got, old)
	}
	if got := gitShow(t, f.repo, rep.RevertCommit, "source/demo/service.cconf"); got != oldSource {
		t.Errorf("the revert holds the source\n%s\nwant the old one\n%s", got, oldSource)
	}
	if diff := cmp.Diff(outsideBefore, readTree(t, outside)); diff != "" {
		t.Errorf("cfg canary wrote through the link to %s (-before +after):\n%s", outside, diff)
	}
	if got, _ := os.ReadFile(servicePath); string(got) != edited {
		t.Errorf("the working tree's source is\n%s\nwant the edit made during the canary\n%s", got, edited)
	}
	if want := "the candidate is still in the working tree; to discard it: git checkout HEAD -- materialized_configs/demo/service.json source/demo/service.cconf\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end with %q:\n%s", want, stderr)
	}
	eventually(t, 10*time.Second, "every service to run the reverted revision", func() bool {
		for _, r := range f.running(t) {
			if !strings.HasPrefix(r, fmt.Sprintf("r%d/", rep.RevertRevision)) {
				return false
			}
		}
		return true
	})
	if err := os.Remove(materialized); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, materialized); err != nil {
		t.Fatal(err)
	}

	// Not again.
	if err := os.WriteFile(filepath.Join(f.repo, "source/demo/service.cconf"), []byte(later), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCode(t, f.repo, "canary", "--spec", "demo/canary", "--daemon", f.daemon)
	want := fmt.Sprintf("this candidate of demo/service was landed and then reverted by canary run %s (started %s): see cfg canary history %s; to canary it again, give --allow-reverted\n",
		rep.ID, rep.Started.UTC().Format(time.RFC3339), rep.ID)
	if code != 1 || out != "" || stderr != want {
		t.Errorf("the reverted change again: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, stderr, want)
	}
}

// A canary whose branch moves while it runs (a commit made with git) does
// not land: nothing is committed, the override is removed and every host
// serves the committed config again, and cfg canary says the branch moved
// and exits 1.
func TestCanaryBranchMoved(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	f := startFleet(t)
	before := f.running(t)
	head := headCommit(t, f.repo)
	f.apply(t, "good")
	c := f.startCanary(t, "--seed", "1")
	eventually(t, 60*time.Second, "the canary hosts to apply the candidate", func() bool { return len(f.overridden(t)) == 2 })
	f.git(t, "commit", "-q", "--allow-empty", "-m", "meanwhile")
	meanwhile := headCommit(t, f.repo)
	rep, stderr, code := c.wait(t)
	if code != 1 || rep.Outcome != canary.RolledBack || rep.Commit != "" {
		t.Fatalf("exit %d, outcome %q (%s), commit %q; want 1, rolled_back and no commit\n%s", code, rep.Outcome, rep.Reason, rep.Commit, stderr)
	}
	if want := "landing: nothing committed: the branch moved while the canary ran (main at " + meanwhile[:12] + " now, not at " + head[:12] + "); run cfg canary again"; rep.Reason != want {
		t.Errorf("reason %q, want %q", rep.Reason, want)
	}
	if got := headCommit(t, f.repo); got != meanwhile {
		t.Errorf("HEAD is %s, want the commit made meanwhile %s", got, meanwhile)
	}
	if want := "the candidate is still in the working tree; to discard it: git checkout HEAD -- materialized_configs/demo/service.json source/demo/service.cconf\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end with %q:\n%s", want, stderr)
	}
	if got := f.overridden(t); len(got) > 0 {
		t.Errorf("%v still report overrides after the run", got)
	}
	eventually(t, 10*time.Second, "every service to run the old config", func() bool { return slices.Equal(f.running(t), before) })
	out, _, _ := runCode(t, f.repo, "canary", "history", "--daemon", f.daemon, "--format", "json")
	var runs []wire.Run
	json.Unmarshal([]byte(out), &runs)
	if len(runs) != 1 || runs[0].Status != wire.RunRolledBack || runs[0].Commit != "" {
		t.Errorf("canary history: %s", out)
	}
}

// Killing cfg canary mid-phase leaves the override to its lease: the
// daemon drops it and the hosts revert. Killed mid-phase or in its bake,
// the run is listed as abandoned once its own lease runs out.
func TestCanaryKilled(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	f := startFleet(t)
	before := f.running(t)
	f.apply(t, "good")
	p := start(t, f.repo, "canary", "--spec", "demo/canary", "--daemon", f.daemon, "--seed", "2", "--author", "e2e <e2e@example.com>")
	var canaries []string
	eventually(t, 60*time.Second, "the canary hosts to apply the candidate", func() bool {
		canaries = nil
		for _, h := range f.hosts(t) {
			if len(h.Overrides) > 0 {
				canaries = append(canaries, h.Name)
			}
		}
		return len(canaries) == 2
	})
	// cfg status shows which hosts serve the override.
	out := run(t, f.repo, "status", "--daemon", f.daemon, "demo/service")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != fleetSize+1 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "OVERRIDES") {
		t.Errorf("cfg status:\n%s", out)
	}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		override := fields[len(fields)-1]
		if slices.Contains(canaries, fields[0]) != strings.HasPrefix(override, "demo/service=canary-") ||
			!slices.Contains(canaries, fields[0]) && override != "-" {
			t.Errorf("cfg status shows %s with override %q; canaries %v:\n%s", fields[0], override, canaries, out)
		}
	}
	p.kill()
	killed := time.Now()
	eventually(t, 30*time.Second, "the hosts to revert by lease expiry", func() bool {
		for _, h := range f.hosts(t) {
			if len(h.Overrides) > 0 {
				return false
			}
		}
		return true
	})
	t.Logf("canary hosts %v reverted %.1f s after cfg canary was killed (lease 4 s)", canaries, time.Since(killed).Seconds())
	eventually(t, 10*time.Second, "every service to run the old config", func() bool { return slices.Equal(f.running(t), before) })
	// The run's own lease, as long as the override's, runs out about
	// when the override's does.
	history := func() []wire.Run {
		out, _, _ := runCode(t, f.repo, "canary", "history", "--daemon", f.daemon, "--format", "json")
		var runs []wire.Run
		json.Unmarshal([]byte(out), &runs)
		return runs
	}
	eventually(t, 10*time.Second, "the run to be listed as abandoned", func() bool {
		runs := history()
		return len(runs) == 1 && runs[0].Status == wire.RunAbandoned
	})

	// Killed in its bake, which holds no override: the change stays
	// landed, and the run is listed as abandoned once its lease runs out.
	head := headCommit(t, f.repo)
	c := f.startCanary(t, "--seed", "2")
	eventually(t, 90*time.Second, "the change to land and its bake to start", func() bool {
		return headCommit(t, f.repo) != head && len(f.overridden(t)) == 0
	})
	c.cmd.Process.Kill()
	<-c.done
	landed := headCommit(t, f.repo)
	eventually(t, 10*time.Second, "the run killed in its bake to be listed as abandoned", func() bool {
		runs := history()
		return len(runs) == 2 && runs[1].Status == wire.RunAbandoned && runs[1].Commit == landed
	})
	if now := headCommit(t, f.repo); now != landed {
		t.Errorf("the branch moved from the landing commit %s to %s after the run was killed in its bake", landed, now)
	}
}

// SIGTERM, like Ctrl-C, rolls back: cfg canary removes the override,
// exits only once every canary host reports serving the committed config
// again, and exits 1 with the run recorded as rolled back, not left to
// its lease.
func TestCanaryTerminated(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	f := startFleet(t)
	before := f.running(t)
	head := headCommit(t, f.repo)
	f.apply(t, "good")
	c := f.startCanary(t, "--seed", "1")
	eventually(t, 60*time.Second, "the canary hosts to apply the candidate", func() bool { return len(f.overridden(t)) == 2 })
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rep, stderr, code := c.wait(t)
	if got := f.overridden(t); len(got) > 0 {
		t.Errorf("%v still report the override when cfg canary has exited (exit %d, outcome %q (%s), revert_seconds %v)\n%s", got, code, rep.Outcome, rep.Reason, rep.RevertSeconds, stderr)
	}
	if code != 1 || rep.Outcome != canary.RolledBack || rep.Reason != "interrupted" || rep.Commit != "" {
		t.Fatalf("exit %d, outcome %q (%s), commit %q; want 1, rolled_back (interrupted) and no commit\n%s", code, rep.Outcome, rep.Reason, rep.Commit, stderr)
	}
	if got := headCommit(t, f.repo); got != head {
		t.Errorf("HEAD moved to %s", got)
	}
	if want := "the candidate is still in the working tree; to discard it: git checkout HEAD -- materialized_configs/demo/service.json source/demo/service.cconf\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end with %q:\n%s", want, stderr)
	}
	eventually(t, 10*time.Second, "every service to run the old config", func() bool { return slices.Equal(f.running(t), before) })
	out, _, _ := runCode(t, f.repo, "canary", "history", "--daemon", f.daemon, "--format", "json")
	var runs []wire.Run
	json.Unmarshal([]byte(out), &runs)
	if len(runs) != 1 || runs[0].Status != wire.RunRolledBack || runs[0].Commit != "" {
		t.Errorf("canary history: %s", out)
	}
}

// readTree returns every file under dir, by slash-separated path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
