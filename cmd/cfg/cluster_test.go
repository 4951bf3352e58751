package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

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
func (c *clusterFleet) greeting(i int) string { return greetingAt(c.agents[i]) }

// greetingAt is the greeting of demo/service the agent or daemon at base
// serves, or "".
func greetingAt(base string) string {
	body, code, err := httpGet(base + "/v1/configs/demo/service")
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

// storeWatch is an etcd watch of the keys of the cluster's store (the
// layout of store/doc.go) from changes/ to revs/: the configs' entries
// (changes/, history/), the claims of Appends (meta/append), the
// candidates of the publisher's election (publisher/) and the revisions'
// records (revs/). One watch, so that its events come in the order etcd
// made them.
type storeWatch struct {
	cli     *clientv3.Client
	events  clientv3.WatchChan
	pending []*clientv3.Event // received, not read yet
	seen    []*clientv3.Event // read so far
}

// watchStore watches the store from now on.
func (c *clusterFleet) watchStore(t *testing.T) *storeWatch {
	t.Helper()
	cli, err := c.etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); cli.Close() })
	w := &storeWatch{cli: cli}
	w.events = cli.Watch(ctx, clusterPrefix+"changes/", clientv3.WithRange(clusterPrefix+"revs0"), clientv3.WithPrevKV(), clientv3.WithRev(w.etcdNow(t)+1))
	return w
}

// etcdNow returns etcd's revision now: the changes made after the call
// have later ones.
func (w *storeWatch) etcdNow(t *testing.T) int64 {
	t.Helper()
	resp, err := w.cli.Get(context.Background(), clusterPrefix+"revs/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// next reads events until one that match takes, and returns it.
func (w *storeWatch) next(t *testing.T, what string, match func(*clientv3.Event) bool) *clientv3.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for len(w.pending) > 0 {
			ev := w.pending[0]
			w.pending = w.pending[1:]
			w.seen = append(w.seen, ev)
			if match(ev) {
				return ev
			}
		}
		select {
		case resp, ok := <-w.events:
			if !ok || resp.Err() != nil {
				t.Fatalf("watching the store for %s: %v", what, resp.Err())
			}
			w.pending = resp.Events
		case <-deadline:
			t.Fatalf("timed out watching the store for %s", what)
		}
	}
}

// storeKey returns the key of ev within its bucket, if the bucket is b.
func storeKey(ev *clientv3.Event, b string) ([]byte, bool) {
	k, ok := bytes.CutPrefix(ev.Kv.Key, []byte(clusterPrefix+b+"/"))
	return k, ok
}

// isClaim reports whether ev is an Append's claim, and of which revision:
// the claim's value starts with the revision's number, 8 bytes big endian.
func isClaim(ev *clientv3.Event) (int64, bool) {
	if ev.Type != clientv3.EventTypePut || string(ev.Kv.Key) != clusterPrefix+"meta/append" || len(ev.Kv.Value) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(ev.Kv.Value)), true
}

// isRecord reports whether ev adds or changes a revision's record (its
// key, the number, 8 bytes big endian), and which.
func isRecord(ev *clientv3.Event) (int64, bool) {
	k, ok := storeKey(ev, "revs")
	if !ok || ev.Type != clientv3.EventTypePut || len(k) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k)), true
}

// isEntry reports whether ev writes or removes a config's entry, and of
// which revision: changes/REV NAME, or history/NAME 0x00 REV.
func isEntry(ev *clientv3.Event) (int64, bool) {
	if k, ok := storeKey(ev, "changes"); ok && len(k) > 8 {
		return int64(binary.BigEndian.Uint64(k)), true
	}
	if k, ok := storeKey(ev, "history"); ok && len(k) > 9 {
		return int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
	}
	return 0, false
}

// candidacy reports whether ev adds (true) or removes (false) daemon i's
// candidacy in the publisher's election: its key under publisher/, whose
// value names the daemon (HOST:PORT).
func (c *clusterFleet) candidacy(ev *clientv3.Event, i int, added bool) bool {
	kv := ev.Kv
	if !added {
		kv = ev.PrevKv
	}
	if _, ok := storeKey(ev, "publisher"); !ok || kv == nil || (ev.Type == clientv3.EventTypePut) != added {
		return false
	}
	member := string(kv.Value)
	return strings.HasSuffix(c.urls[i], member[strings.LastIndex(member, ":"):])
}

// TestClusterPausedPublisher attacks "two daemons publish at once (one
// paused past its lease)", with the daemons' processes. A batch of
// commits lands at once. The publisher is stopped (SIGSTOP) as it claims
// the first revision of it, in the middle of its append; the daemon
// elected once its lease runs out is stopped as it claims its own first
// revision (the same one, if the first was stopped in time). Each holds
// commits it has not published; the third daemon is killed, so that none
// publishes. The first is resumed (SIGCONT) while the second still holds
// the leadership, and a commit is made: its tailer goes on where it
// stopped until the daemon finds its lease gone, and, elected again once
// the second's lease runs out, it publishes the rest, the revision the
// second was appending first. The second, resumed, follows. In etcd,
// every claim is of the revision after the last recorded, each
// revision's record is added once, in order, and no revision's entries
// change once it is recorded (the daemons compact nothing); every daemon,
// the third started again among them, serves the same revisions, one per
// commit of the branch, and every agent the last commit.
func TestClusterPausedPublisher(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	c := startClusterFleet(t)
	from := c.latest(0)
	p := c.publisher(t)
	q, r := (p+1)%clusterDaemons, (p+2)%clusterDaemons
	c.kill(r)
	w := c.watchStore(t)

	// The batch, made on a branch of its own, lands on main at once: the
	// publisher appends it one revision after the other. The watch is
	// read as main moves, so that the publisher stops at once.
	const batch = 12
	c.git(t, "checkout", "-q", "-b", "batch")
	for range batch {
		c.commit(t)
	}
	move := exec.Command("git", "-C", c.repo, "update-ref", "refs/heads/main", "refs/heads/batch")
	if err := move.Start(); err != nil {
		t.Fatal(err)
	}
	claim := func(ev *clientv3.Event) bool { _, ok := isClaim(ev); return ok }
	w.next(t, "the publisher's first claim", claim)
	c.stop(t, p)
	if err := move.Wait(); err != nil {
		t.Fatalf("git update-ref: %v", err)
	}
	c.git(t, "checkout", "-q", "main")
	lostP := w.next(t, fmt.Sprintf("daemon %d's lease to run out", p), func(ev *clientv3.Event) bool { return c.candidacy(ev, p, false) }).Kv.ModRevision
	w.next(t, fmt.Sprintf("daemon %d's first claim", q), claim)
	c.stop(t, q)
	resumed := w.etcdNow(t)
	c.cont(t, p)
	g := c.commit(t)
	head := from + batch + 1
	lostQ := w.next(t, fmt.Sprintf("daemon %d's lease to run out", q), func(ev *clientv3.Event) bool { return c.candidacy(ev, q, false) }).Kv.ModRevision
	if lostQ < resumed {
		t.Fatalf("daemon %d's lease ran out before daemon %d was resumed: the test proves nothing", q, p)
	}
	c.waitLatest(t, head) // daemon p's, the only one up
	c.cont(t, q)
	// Daemon q campaigns again once it has given up what it was doing.
	w.next(t, fmt.Sprintf("daemon %d to campaign again", q), func(ev *clientv3.Event) bool { return c.candidacy(ev, q, true) })
	c.startDaemon(t, r)
	c.waitLatest(t, head)

	// In etcd: each claim of the revision after the last recorded (a
	// claim of another would remove the entries of recorded revisions,
	// or skip one); each revision's record added once, in order, the last
	// by daemon p elected again; no revision's entries written or removed
	// once it is recorded.
	terms := []struct {
		name            string
		until           int64   // the etcd revision its leadership ended at
		claims, appends []int64 // the revisions claimed, and appended
	}{{name: fmt.Sprintf("daemon %d", p), until: lostP}, {name: fmt.Sprintf("daemon %d", q), until: lostQ}, {name: fmt.Sprintf("daemon %d elected again", p), until: math.MaxInt64}}
	next := from + 1 // the revision after the last recorded
	for _, ev := range w.seen {
		k := 0
		for ev.Kv.ModRevision > terms[k].until {
			k++
		}
		term := &terms[k]
		if n, ok := isClaim(ev); ok {
			term.claims = append(term.claims, n)
			if n != next {
				t.Errorf("revision %d claimed after revision %d was recorded", n, next-1)
			}
			if k == 1 && ev.Kv.ModRevision > resumed {
				t.Logf("revision %d claimed after daemon %d was resumed, while daemon %d, stopped, held the leadership", n, p, q)
			}
		}
		if n, ok := isEntry(ev); ok && n < next {
			t.Errorf("revision %d's entry %q %s after the revision was recorded", n, ev.Kv.Key, map[bool]string{true: "written", false: "removed"}[ev.Type == clientv3.EventTypePut])
		}
		n, ok := isRecord(ev)
		if !ok {
			continue
		}
		term.appends = append(term.appends, n)
		if n != next || ev.Kv.Version != 1 {
			t.Errorf("revision %d's record written (version %d) after revision %d's", n, ev.Kv.Version, next-1)
		}
		next = max(next, n+1)
	}
	if next != head+1 {
		t.Errorf("records added up to revision %d, want %d", next-1, head)
	}
	if appends := terms[2].appends; len(appends) == 0 || appends[len(appends)-1] != head {
		t.Errorf("daemon %d, elected again, appended revisions %v, want the last, %d, among them", p, appends, head)
	}
	for _, term := range terms {
		t.Logf("%s: claims of revisions %v, records of %v", term.name, term.claims, term.appends)
	}

	if got := c.publisher(t); got != p {
		t.Errorf("daemon %d publishes, want daemon %d, resumed and elected again", got, p)
	}
	c.checkRevisions(t, head)
	// One revision per commit of main since revision from's, in order,
	// each changing the demo's config.
	commits := strings.Fields(c.git(t, "rev-list", "--first-parent", "--reverse", c.revision(t, r, from).Commit+"..main"))
	if int64(len(commits)) != head-from {
		t.Fatalf("%d commits after revision %d's, want %d", len(commits), from, head-from)
	}
	for k, commit := range commits {
		n := from + 1 + int64(k)
		if rev := c.revision(t, r, n); rev.Commit != commit || !slices.Equal(rev.Configs, []string{"demo/service"}) {
			t.Errorf("revision %d: commit %.12s changing %v, want commit %.12s changing demo/service", n, rev.Commit, rev.Configs, commit)
		}
	}
	for i := range clusterDaemons {
		if got := greetingAt(c.urls[i]); got != g {
			t.Errorf("daemon %d serves demo/service with the greeting %q, want %q", i, got, g)
		}
	}
	c.waitAgents(t, g)
}

// revision returns revision n as daemon i serves it.
func (c *clusterFleet) revision(t *testing.T, i int, n int64) wire.Revision {
	t.Helper()
	body, code, err := httpGet(fmt.Sprintf("%s/v1/revisions/%d", c.urls[i], n))
	var rev wire.Revision
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &rev) != nil {
		t.Fatalf("daemon %d, revision %d: %d %v %s", i, n, code, err, body)
	}
	return rev
}
