package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/internal/etcdproc"
	"github.com/cfg-dev/cfg/wire"
)

// The cluster end to end with real processes: three etcd members, three
// cfg serve daemons over them, and the canary demo's six hosts (agent,
// demo service) spread over the daemons, each agent listing all three,
// its own first.

var (
	etcdOnce sync.Once
	etcdDir  string // removed when the tests end (removeBuilt)
	etcdBin  string
	etcdErr  error
)

// etcdMember returns the etcd member program, building it once.
func etcdMember(t *testing.T) string {
	t.Helper()
	etcdOnce.Do(buildEtcdMember)
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	return etcdBin
}

func buildEtcdMember() {
	if etcdDir, etcdErr = os.MkdirTemp("", "cfg-etcd"); etcdErr == nil {
		etcdBin, etcdErr = etcdproc.Build(etcdDir)
	}
}

// The canary specs of the cluster's demo: the demo's checks, phases and
// bake made short, so that the runs take a third of the demo's time.
// demo/canary, which the bad change is canaried with, keeps a first phase
// long enough for that change's breach to fail it (a scrape, then a 4 s
// breach); demo/quick, which the good change lands with, has two phases
// and a bake of a few seconds.
var clusterSpecs = map[string]string{
	"demo/canary": clusterSpec("phase(\"two hosts\", Targets(count = 2), duration_seconds = 12)", 4),
	"demo/quick":  clusterSpec("phase(\"two hosts\", Targets(count = 2), duration_seconds = 5), phase(\"half\", Targets(percent = 50), duration_seconds = 4)", 4),
}

func clusterSpec(phases string, bake int) string {
	return fmt.Sprintf(`load("@cfg//canary.thrift", "Bake", "CanarySpec", "Provider", "Targets")
load("//lib/checks.cinc", "error_ratio", "phase")

export(CanarySpec(
    config = "demo/service",
    provider = Provider.SCRAPE,
    scrape_interval_seconds = 2,
    lease_seconds = 4,
    phases = [%s],
    bake = Bake(duration_seconds = %d, checks = [error_ratio()]),
))
`, phases, bake)
}

// clusterFleet is the canary demo on a cluster. Its fleet's daemon is
// the first daemon, through which the canary runs.
type clusterFleet struct {
	*fleet
	// top is the test that owns the processes: a daemon started again
	// in a subtest outlives it.
	top     *testing.T
	etcd    *etcdproc.Cluster
	urls    []string // the daemons' base URLs
	daemons []*proc  // nil while killed
	stopped []bool   // stopped with SIGSTOP
	commits int      // commits made by commit
}

const clusterDaemons = 3

// clusterPrefix is the daemons' --etcd-prefix.
const clusterPrefix = "/cfg-e2e/"

func startClusterFleet(t *testing.T) *clusterFleet {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	began := time.Now()
	go etcdOnce.Do(buildEtcdMember) // while the examples build
	demosvc := exampleBinary(t, "canary/demosvc")
	load := exampleBinary(t, "canary/load")
	member := etcdMember(t)
	t.Logf("built the programs in %.1f s", time.Since(began).Seconds())
	c := &clusterFleet{fleet: newExampleRepo(t, "canary", "demo/service", "demo/canary", clusterSpecs), top: t}
	f := c.fleet

	ec, err := etcdproc.Start(etcdproc.Options{Bin: member, Dir: filepath.Join(f.work, "etcd"), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	c.etcd = ec
	t.Cleanup(func() {
		ec.Close()
		if t.Failed() {
			for i := range ec.Endpoints {
				b, _ := os.ReadFile(ec.LogFile(i))
				t.Logf("etcd member %d:\n%s", i, b[max(0, len(b)-8192):])
			}
		}
	})
	for i := range clusterDaemons {
		c.daemons = append(c.daemons, nil)
		c.stopped = append(c.stopped, false)
		c.urls = append(c.urls, "")
		c.startDaemon(t, i)
	}
	f.daemon = c.urls[0]

	// Each host lists every daemon, its own first.
	f.startHosts(t, fleetSize, load, demoService(demosvc), func(i int) []string {
		var list []string
		for k := range clusterDaemons {
			list = append(list, c.urls[(i+k)%clusterDaemons])
		}
		return list
	}, "3s")
	// Every host reports through its own daemon; each daemon lists them
	// all.
	for _, u := range c.urls {
		eventually(t, 20*time.Second, "every host to be listed by "+u, func() bool { return len(c.hostsOf(t, u)) == fleetSize })
	}
	return c
}

// startDaemon starts daemon i, on the port it had if it ran before, and
// waits until it serves.
func (c *clusterFleet) startDaemon(t *testing.T, i int) {
	t.Helper()
	listen := "127.0.0.1:0"
	if c.urls[i] != "" {
		listen = strings.TrimPrefix(c.urls[i], "http://") // the agents know it
	}
	addrFile := filepath.Join(c.work, fmt.Sprintf("d%d.addr", i))
	os.Remove(addrFile)
	c.daemons[i] = start(c.top, c.work, "serve", "--repo", c.repo, "--etcd", strings.Join(c.etcd.Endpoints, ","), "--etcd-prefix", clusterPrefix,
		"--etcd-election-ttl", "2s",
		"--listen", listen, "--addr-file", addrFile, "--poll", "100ms", "--heartbeat", "500ms")
	c.urls[i] = addr(t, addrFile)
	eventually(t, 20*time.Second, fmt.Sprintf("daemon %d to serve", i), func() bool {
		_, code, _ := httpGet(c.urls[i] + "/healthz")
		return code == http.StatusOK
	})
}

// kill kills daemon i with SIGKILL.
func (c *clusterFleet) kill(i int) {
	c.daemons[i].kill()
	c.daemons[i], c.stopped[i] = nil, false
}

// stop stops daemon i with SIGSTOP: it is not up until cont.
func (c *clusterFleet) stop(t *testing.T, i int) {
	t.Helper()
	if err := c.daemons[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.stopped[i] = true
}

// cont resumes daemon i, stopped by stop, with SIGCONT.
func (c *clusterFleet) cont(t *testing.T, i int) {
	t.Helper()
	if err := c.daemons[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.stopped[i] = false
}

// hostsOf returns the hosts daemon url lists.
func (c *clusterFleet) hostsOf(t *testing.T, url string) []wire.Host {
	t.Helper()
	body, _, err := httpGet(url + "/v1/hosts")
	if err != nil {
		return nil
	}
	var hosts []wire.Host
	json.Unmarshal([]byte(body), &hosts)
	return hosts
}

// latest returns daemon i's latest revision, or -1.
func (c *clusterFleet) latest(i int) int64 {
	body, code, err := httpGet(c.urls[i] + "/v1/revisions/latest")
	if err != nil || code != http.StatusOK {
		return -1
	}
	var latest struct {
		Revision int64 `json:"revision"`
	}
	if json.Unmarshal([]byte(body), &latest) != nil {
		return -1
	}
	return latest.Revision
}

// up returns the daemons running: neither killed nor stopped.
func (c *clusterFleet) up() []int {
	var up []int
	for i, d := range c.daemons {
		if d != nil && !c.stopped[i] {
			up = append(up, i)
		}
	}
	return up
}

// publisher returns the daemon that publishes, as every daemon up names
// it on /healthz (by host and port), waiting for them to agree on one that
// is up.
func (c *clusterFleet) publisher(t *testing.T) int {
	t.Helper()
	named := regexp.MustCompile(`^ok: (?:publishing as|following the store, published by) \S*:(\d+)\n$`)
	p := -1
	eventually(t, 20*time.Second, "the daemons to agree on a publisher", func() bool {
		p = -1
		for _, i := range c.up() {
			body, _, err := httpGet(c.urls[i] + "/healthz")
			m := named.FindStringSubmatch(body)
			if err != nil || m == nil {
				return false
			}
			got := slices.IndexFunc(c.urls, func(u string) bool { return strings.HasSuffix(u, ":"+m[1]) })
			if got < 0 || p >= 0 && got != p || !slices.Contains(c.up(), got) {
				return false
			}
			p = got
		}
		return p >= 0
	})
	return p
}

// commit changes the demo's greeting and commits it: one revision.
func (c *clusterFleet) commit(t *testing.T) string {
	t.Helper()
	c.commits++
	greeting := fmt.Sprintf("cluster commit %d", c.commits)
	p := filepath.Join(c.repo, "source/demo/service.cconf")
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := regexp.MustCompile(`greeting = "[^"]*"`).ReplaceAllString(string(src), fmt.Sprintf("greeting = %q", greeting))
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, c.repo, "commit", "-m", greeting)
	return greeting
}

// greeting is the greeting agent i serves, or "".
func (c *clusterFleet) greeting(i int) string {
	body, code, err := httpGet(c.agents[i] + "/v1/configs/demo/service")
	if err != nil || code != http.StatusOK {
		return ""
	}
	var v struct {
		Greeting string `json:"greeting"`
	}
	json.Unmarshal([]byte(body), &v)
	return v.Greeting
}

// waitAgents waits until every agent serves greeting.
func (c *clusterFleet) waitAgents(t *testing.T, greeting string) {
	t.Helper()
	for i := range c.agents {
		eventually(t, 30*time.Second, fmt.Sprintf("web-%d to serve %q", i+1, greeting), func() bool { return c.greeting(i) == greeting })
	}
}

// waitLatest waits until every running daemon's latest revision is rev.
func (c *clusterFleet) waitLatest(t *testing.T, rev int64) {
	t.Helper()
	for _, i := range c.up() {
		eventually(t, 30*time.Second, fmt.Sprintf("daemon %d to serve revision %d", i, rev), func() bool { return c.latest(i) == rev })
	}
}

// checkRevisions checks that every running daemon serves revisions 1 to
// head, the same ones, and none after.
func (c *clusterFleet) checkRevisions(t *testing.T, head int64) {
	t.Helper()
	up := c.up()
	for n := int64(1); n <= head; n++ {
		var first string
		for _, i := range up {
			body, code, err := httpGet(fmt.Sprintf("%s/v1/revisions/%d", c.urls[i], n))
			if err != nil || code != http.StatusOK {
				t.Fatalf("daemon %d, revision %d: %d %v %s", i, n, code, err, body)
			}
			if first == "" {
				first = body
			} else if body != first {
				t.Errorf("revision %d: daemon %d serves\n%s\ndaemon %d serves\n%s", n, up[0], first, i, body)
			}
		}
	}
	for _, i := range up {
		if _, code, _ := httpGet(fmt.Sprintf("%s/v1/revisions/%d", c.urls[i], head+1)); code != http.StatusNotFound {
			t.Errorf("daemon %d answers %d for revision %d, after the head %d", i, code, head+1, head)
		}
	}
}

// connected returns the daemon agent i streams from, or -1.
func (c *clusterFleet) connected(i int) int {
	body, _, err := httpGet(c.agents[i] + "/v1/status")
	if err != nil {
		return -1
	}
	var st struct {
		Daemon string `json:"daemon"`
	}
	json.Unmarshal([]byte(body), &st)
	return slices.Index(c.urls, st.Daemon)
}

// TestCluster runs the scenarios of a cluster in turn, on one cluster.
func TestCluster(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	began := time.Now()
	c := startClusterFleet(t)
	t.Logf("the cluster started in %.1f s", time.Since(began).Seconds())
	head := c.latest(0)

	ok := t.Run("commit reaches every agent", func(t *testing.T) {
		g := c.commit(t)
		head++
		c.waitAgents(t, g)
		c.waitLatest(t, head)
		// cfg status works through any daemon: every host, each on the
		// revision.
		for _, u := range c.urls {
			eventually(t, 20*time.Second, "every host to report revision "+fmt.Sprint(head)+" to "+u, func() bool {
				out := run(t, c.work, "status", "--daemon", u, "--format", "json")
				var hosts []struct {
					Applied int64 `json:"applied"`
				}
				json.Unmarshal([]byte(out), &hosts)
				n := 0
				for _, h := range hosts {
					if h.Applied == head {
						n++
					}
				}
				return n == fleetSize
			})
		}
	})
	ok = ok && t.Run("canary through one daemon, hosts on the others", func(t *testing.T) {
		before := c.running(t)
		var placed []int
		for i := range c.agents {
			placed = append(placed, c.connected(i))
		}
		// The bad change is rolled back.
		c.apply(t, "bad")
		began := time.Now()
		rep, stderr, code := c.canary(t, "--seed", "1")
		t.Logf("bad change: %s in %.1f s (%s)", rep.Outcome, time.Since(began).Seconds(), rep.Reason)
		if code != 1 || rep.Outcome != canary.RolledBack {
			t.Fatalf("bad change: exit %d, outcome %q (%s), want 1 and rolled_back\n%s", code, rep.Outcome, rep.Reason, stderr)
		}
		elsewhere := 0
		for _, h := range rep.Phases[0].Canary {
			var i int
			fmt.Sscanf(h, "web-%d", &i)
			if placed[i-1] != 0 {
				elsewhere++
			}
		}
		if elsewhere == 0 {
			t.Fatalf("every canary host of %v streams from daemon 0, the canary's (placement %v): the test proves nothing", rep.Phases[0].Canary, placed)
		}
		for _, u := range c.urls {
			for _, h := range c.hostsOf(t, u) {
				if len(h.Overrides) > 0 {
					t.Errorf("%s lists %s with overrides %+v after the rollback", u, h.Name, h.Overrides)
				}
			}
		}
		eventually(t, 10*time.Second, "every service to run the old config", func() bool { return slices.Equal(c.running(t), before) })

		// The good change lands and reaches every host.
		c.apply(t, "good")
		p := c.poll()
		c.spec = "demo/quick"
		began = time.Now()
		rep, stderr, code = c.canary(t, "--seed", "1")
		seen := p.finish()
		t.Logf("good change: %s in %.1f s", rep.Outcome, time.Since(began).Seconds())
		for _, ph := range rep.Phases {
			t.Logf("phase %s: %s to %s", ph.Name, ph.Started.Format("15:04:05.0"), ph.Ended.Format("15:04:05.0"))
		}
		if code != 0 || rep.Outcome != canary.Landed {
			t.Fatalf("good change: exit %d, outcome %q (%s), want 0 and landed\n%s", code, rep.Outcome, rep.Reason, stderr)
		}
		head = rep.Revision
		want := fmt.Sprintf("r%d/", rep.Revision)
		eventually(t, 10*time.Second, "every service to run the landed revision", func() bool {
			for _, r := range c.running(t) {
				if !strings.HasPrefix(r, want) {
					return false
				}
			}
			return true
		})
		var canaried []string
		for _, obs := range seen {
			for _, s := range obs {
				if s.override != "" && !slices.Contains(canaried, s.data) {
					canaried = append(canaried, s.data)
				}
			}
		}
		if got := gitShow(t, c.repo, rep.Commit, "materialized_configs/demo/service.json"); len(canaried) != 1 || got != canaried[0] {
			t.Errorf("the landing commit holds\n%s\nthe canary hosts ran %q", got, canaried)
		}
		// The runs as every daemon records them.
		for _, u := range c.urls {
			out, _, _ := runCode(t, c.repo, "canary", "history", "--daemon", u, "--format", "json")
			var runs []wire.Run
			json.Unmarshal([]byte(out), &runs)
			if len(runs) != 2 || runs[0].Status != wire.RunRolledBack || runs[1].Status != wire.RunLanded || runs[1].Commit != rep.Commit {
				t.Errorf("cfg canary history --daemon %s: %s", u, out)
			}
		}
		c.waitLatest(t, head)
	})
	if !ok {
		return
	}

	// From here on every agent's local watch of the demo's config is
	// recorded: each revision once, in order, none missing.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchers := make([]*watcher, len(c.agents))
	for i, a := range c.agents {
		watchers[i] = &watcher{config: "demo/service"}
		go watchers[i].run(ctx, a)
	}
	for i, w := range watchers {
		eventually(t, 10*time.Second, fmt.Sprintf("web-%d's watch to start", i+1), func() bool { return len(w.seen()) > 0 })
	}
	from := head

	ok = t.Run("publisher killed while publishing", func(t *testing.T) {
		p := c.publisher(t)
		var g string
		for k := range 6 {
			g = c.commit(t)
			head++
			if k == 1 {
				c.kill(p) // with the second commit just made
			}
		}
		c.waitAgents(t, g)
		c.waitLatest(t, head)
		if q := c.publisher(t); q == p {
			t.Fatalf("daemon %d publishes after it was killed", q)
		}
		c.startDaemon(t, p)
		c.waitLatest(t, head)
		c.checkRevisions(t, head)
	})
	ok = ok && t.Run("etcd member killed", func(t *testing.T) {
		leader := c.etcd.Leader()
		if leader < 0 {
			t.Fatal("the etcd members agree on no leader")
		}
		c.etcd.Kill(leader)
		g := c.commit(t)
		head++
		c.waitAgents(t, g)
		c.waitLatest(t, head)
		if err := c.etcd.Restart(leader); err != nil {
			t.Fatal(err)
		}
	})
	ok = ok && t.Run("quorum lost and regained", func(t *testing.T) {
		old := c.greeting(0)
		down := c.etcd.Up()[:2]
		for _, m := range down {
			c.etcd.Kill(m)
		}
		if c.etcd.Quorum(2 * time.Second) {
			t.Fatal("one member of three has a quorum")
		}
		g := c.commit(t)
		// The commit cannot be published: every daemon says so, and
		// every agent serves what it had.
		// A daemon reads the election for at most 2 s; the daemons are
		// asked at once.
		slow := &http.Client{Timeout: 10 * time.Second}
		eventually(t, 30*time.Second, "every daemon to report the store unavailable", func() bool {
			var wg sync.WaitGroup
			var mu sync.Mutex
			unavailable := 0
			for _, i := range c.up() {
				wg.Go(func() {
					resp, err := slow.Get(c.urls[i] + "/healthz")
					if err != nil {
						return
					}
					resp.Body.Close()
					mu.Lock()
					defer mu.Unlock()
					if resp.StatusCode == http.StatusServiceUnavailable {
						unavailable++
					}
				})
			}
			wg.Wait()
			return unavailable == len(c.up())
		})
		for i := range c.agents {
			if got := c.greeting(i); got != old {
				t.Errorf("web-%d serves %q without a quorum, want %q", i+1, got, old)
			}
		}
		for _, i := range c.up() {
			if got := c.latest(i); got != -1 && got != head {
				t.Errorf("daemon %d serves revision %d without a quorum, want %d", i, got, head)
			}
		}
		head++
		for _, m := range down {
			if err := c.etcd.Restart(m); err != nil {
				t.Fatal(err)
			}
		}
		c.waitAgents(t, g)
		c.waitLatest(t, head)
	})
	ok = ok && t.Run("an agent's daemon killed", func(t *testing.T) {
		// The daemon most agents stream from, one that does not publish
		// if any agent streams from one.
		p := c.publisher(t)
		count := make([]int, clusterDaemons)
		for i := range c.agents {
			if d := c.connected(i); d >= 0 {
				count[d]++
			}
		}
		victim := -1
		for d, n := range count {
			if n > 0 && (victim < 0 || victim == p || d != p && n > count[victim]) {
				victim = d
			}
		}
		if victim < 0 {
			t.Fatal("no agent streams from a daemon")
		}
		var moved []int
		for i := range c.agents {
			if c.connected(i) == victim {
				moved = append(moved, i)
			}
		}
		// The daemon stops (SIGSTOP) while two commits are published, so
		// that its agents are behind when it is killed: they must fetch
		// what they missed from the daemon they fail over to.
		t.Logf("agents %v stream from daemon %d, which is stopped, then killed", moved, victim)
		c.stop(t, victim)
		var g string
		for range 2 {
			g = c.commit(t)
			head++
		}
		c.waitLatest(t, head)
		c.kill(victim)
		c.waitAgents(t, g)
		for _, i := range moved {
			if d := c.connected(i); d == victim || d < 0 {
				t.Errorf("web-%d streams from daemon %d after daemon %d was killed", i+1, d, victim)
			}
		}
		c.startDaemon(t, victim)
		c.waitLatest(t, head)
	})
	if !ok {
		return
	}
	c.checkRevisions(t, head)
	for i, w := range watchers {
		var want []int64
		for r := from; r <= head; r++ {
			want = append(want, r)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("web-%d's watch to see revision %d", i+1, head), func() bool {
			revs := w.seen()
			return len(revs) > 0 && revs[len(revs)-1] == head
		})
		if got := w.seen(); !slices.Equal(got, want) {
			t.Errorf("web-%d's local watch saw revisions %v, want %v", i+1, got, want)
		}
	}
}
