package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/internal/etcdtest"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// The cluster tests share one 3-member etcd cluster, started by the first
// that needs it; each test keeps its store under a prefix of its own.
// Tests that stop members start a cluster of their own.
var (
	etcdOnce     sync.Once
	etcdCluster  *etcdtest.Cluster
	etcdErr      error
	etcdPrefixes atomic.Int64
)

// closeTestEtcd stops the shared cluster, if a test started it.
func closeTestEtcd() {
	if etcdCluster != nil {
		etcdCluster.Close()
	}
}

// testEtcd returns the shared cluster and a prefix of the test's own.
func testEtcd(t testing.TB) (*etcdtest.Cluster, string) {
	t.Helper()
	etcdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cfg-daemon-etcd-")
		if err != nil {
			etcdErr = err
			return
		}
		etcdCluster, etcdErr = etcdtest.Start(dir, 3)
	})
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	return etcdCluster, fmt.Sprintf("/cfg-daemon-test/%d/", etcdPrefixes.Add(1))
}

// openShared opens the store under prefix in c with a client of its own,
// as a daemon's process would; both are closed when the test ends.
func openShared(t *testing.T, c *etcdtest.Cluster, prefix string) *store.Etcd {
	t.Helper()
	return openSharedAt(t, c.Endpoints, prefix)
}

// openSharedAt opens the store under prefix with a client of its own of
// the etcd members at endpoints; both are closed when the test ends.
func openSharedAt(t *testing.T, endpoints []string, prefix string) *store.Etcd {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEtcd(t.Context(), cli, prefix)
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	// The client is closed first: a call still waiting for etcd (in a
	// test that failed while cut off from it) then returns, rather than
	// hold up the store's Close, which waits for it.
	t.Cleanup(func() { st.Close() })
	t.Cleanup(func() { cli.Close() })
	return st
}

// startCluster serves n daemons of repoDir over the store under prefix
// in c, each with its own client, and waits until one of them publishes.
func startCluster(t *testing.T, c *etcdtest.Cluster, prefix, repoDir string, n int, tune func(*Config)) []*testDaemon {
	t.Helper()
	var ds []*testDaemon
	for i := range n {
		cfg := Config{RepoPath: repoDir, Store: openShared(t, c, prefix), Member: fmt.Sprintf("daemon-%d", i), Token: token,
			Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ElectionTTL: 2 * time.Second}
		if tune != nil {
			tune(&cfg)
		}
		ds = append(ds, serve(t, cfg))
	}
	waitLong(t, "a publisher", func() bool { return publisherOf(ds) != nil })
	return ds
}

// publisherOf returns the daemon of ds that publishes, or nil.
func publisherOf(ds []*testDaemon) *testDaemon {
	for _, d := range ds {
		if d.cluster.leading.Load() {
			return d
		}
	}
	return nil
}

// waitLong waits for cond for up to a minute: an election, or a member
// stopped, takes seconds on a loaded machine.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterPublishes attacks the guarantee of one publisher and many
// servers: a commit reaches the watchers of every daemon with the same
// dense revisions, and when the publisher's daemon is closed another one
// publishes the next commit, from the last published one, at once: the
// election's lease (an hour here) does not hold it up.
func TestClusterPublishes(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	ds := startCluster(t, c, prefix, r.dir, 3, func(cfg *Config) { cfg.ElectionTTL = time.Hour })
	for _, d := range ds {
		waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
	}
	var ws []*watcher
	for _, d := range ds {
		w := d.watch("configs=*")
		w.expect("snapshot 1 a@1={\"v\":1}")
		ws = append(ws, w)
	}
	r.commit("materialized_configs/a.json", `{"v":2}`)
	for _, w := range ws {
		w.expect("update 2 a@2={\"v\":2}")
	}

	pub := publisherOf(ds)
	pub.stop()
	var rest []*testDaemon
	var restW []*watcher
	for i, d := range ds {
		if d != pub {
			rest = append(rest, d)
			restW = append(restW, ws[i])
		}
	}
	waitLong(t, "another publisher", func() bool { return publisherOf(rest) != nil })
	r.commit("materialized_configs/b.txt", "hello")
	for _, w := range restW {
		w.expect("update 3 b.txt@3=hello")
	}
	for _, d := range rest {
		if got := d.latest(); got != 3 {
			t.Errorf("%s: latest revision %d, want 3", d.cfg.Member, got)
		}
	}
}

// TestClusterOverrides attacks the guarantee that an override set through
// one daemon reaches the hosts connected to any other: set, renewed (a
// keep-alive of its lease), deleted, and gone for every daemon when its
// lease runs out.
func TestClusterOverrides(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	ds := startCluster(t, c, prefix, r.dir, 2, nil)
	a, b := ds[0], ds[1]
	waitLong(t, "revision 1 on b", func() bool { return b.latest() == 1 })
	w := b.watch("configs=a&host=web-1")
	w.expect("snapshot 1 a@1=a1", "overrides 1")

	if code, body := a.putOverride("run-1", "a", []string{"web-1"}, `{"v":"A"}`, 30); code != 200 {
		t.Fatalf("PUT override on a: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-1@1:{"v":"A"}`)
	// A second change through a sees the first: a new version.
	if code, body := a.putOverride("run-1", "a", []string{"web-1"}, `{"v":"A2"}`, 30); code != 200 || !strings.Contains(body, `"version":2`) {
		t.Fatalf("PUT override on a again: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-1@2:{"v":"A2"}`)
	// A renewal through a goes to the hosts of b again, with its expiry,
	// and does not write the override's data again: its key in etcd is
	// the one the last change wrote.
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	modRevision := func() int64 {
		t.Helper()
		resp, err := cli.Get(context.Background(), prefix+"overrides/run-1")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("the override's key in etcd: %v, %v", resp, err)
		}
		return resp.Kvs[0].ModRevision
	}
	written := modRevision()
	code, body, _ := a.do("POST", "/v1/overrides/run-1/renew", "", auth)
	var renewed wire.Override
	if err := json.Unmarshal([]byte(body), &renewed); code != 200 || err != nil {
		t.Fatalf("renew on a: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-1@2:{"v":"A2"}`)
	if got := modRevision(); got != written {
		t.Errorf("the override's key was written again by its renewal (modified at etcd revision %d, before it %d)", got, written)
	}
	_, body, _ = b.do("GET", "/v1/overrides/run-1", "", nil)
	var onB wire.Override
	if err := json.Unmarshal([]byte(body), &onB); err != nil || !onB.Expires.Equal(renewed.Expires) {
		t.Errorf("override on b after the renewal: %s, want expiry %v", body, renewed.Expires)
	}
	// A conflicting override through b is refused as on one daemon.
	if code, body := b.putOverride("run-2", "a", []string{"web-1"}, `{"v":"X"}`, 30); code != 409 {
		t.Errorf("conflicting PUT on b: %d %s, want 409", code, body)
	}
	if code, _, _ := a.do("DELETE", "/v1/overrides/run-1", "", auth); code != 204 {
		t.Fatalf("DELETE on a: %d", code)
	}
	w.expect("overrides 1")
	// The removal retired the id for every daemon: a PUT of it through b
	// (one held up past the DELETE) is refused.
	if code, body := b.putOverride("run-1", "a", []string{"web-1"}, `{"v":"late"}`, 30); code != 410 || !strings.Contains(errorMessage(body), "id retired") {
		t.Errorf("PUT on b of the override removed through a: %d %s, want 410", code, body)
	}

	// A run whose writer stops is abandoned when its lease runs out, on
	// every daemon; when its override's lease runs out, the hosts of b
	// revert.
	run := `{"config":"a","status":"running","started":"2026-01-02T03:04:05Z","lease_seconds":1}`
	if code, body, _ := b.do("PUT", "/v1/canaries/run-3", run, auth); code != 204 {
		t.Fatalf("PUT run on b: %d %s", code, body)
	}
	if code, body := a.putOverride("run-3", "a", []string{"web-1"}, `{"v":"B"}`, 1); code != 200 {
		t.Fatalf("PUT override on a: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-3@1:{"v":"B"}`)
	w.expect("overrides 1")
	for _, d := range ds {
		waitLong(t, "the run abandoned on "+d.cfg.Member, func() bool {
			runs := d.runs()
			return len(runs) == 1 && runs[0].Status == wire.RunAbandoned
		})
		waitLong(t, "no override on "+d.cfg.Member, func() bool {
			code, body, _ := d.do("GET", "/v1/overrides", "", nil)
			return code == 200 && body == "[]\n"
		})
	}
	w.quiet(300 * time.Millisecond)
}

// TestClusterOverrideAnsweredOnceServed attacks the guarantee that a
// daemon of a cluster answers a change of an override once it serves the
// change: each change through it is what it lists at once, and the next
// change through it builds on it (the next version), however soon it
// comes.
func TestClusterOverrideAnsweredOnceServed(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	ds := startCluster(t, c, prefix, r.dir, 2, nil)
	for _, d := range ds {
		waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
	}
	get := func(d *testDaemon, id string) (int, wire.Override) {
		code, body, _ := d.do("GET", "/v1/overrides/"+id, "", nil)
		var o wire.Override
		if code == 200 {
			if err := json.Unmarshal([]byte(body), &o); err != nil {
				t.Fatalf("GET override %s on %s: %s: %v", id, d.cfg.Member, body, err)
			}
		}
		return code, o
	}
	for _, d := range ds {
		id := "run-" + d.cfg.Member
		for v := int64(1); v <= 10; v++ {
			data := fmt.Sprintf(`{"v":%d}`, v)
			if code, body := d.putOverride(id, "a", []string{"web-1"}, data, 30); code != 200 || !strings.Contains(body, fmt.Sprintf(`"version":%d`, v)) {
				t.Fatalf("PUT %s on %s: %d %s, want version %d", data, d.cfg.Member, code, body, v)
			}
			if code, o := get(d, id); code != 200 || o.Version != v || string(o.Data) != data {
				t.Fatalf("GET on %s right after PUT %s: %d version %d %s", d.cfg.Member, data, code, o.Version, o.Data)
			}
			code, body, _ := d.do("POST", "/v1/overrides/"+id+"/renew", "", auth)
			var renewed wire.Override
			if err := json.Unmarshal([]byte(body), &renewed); code != 200 || err != nil {
				t.Fatalf("renew on %s: %d %s", d.cfg.Member, code, body)
			}
			if code, o := get(d, id); code != 200 || !o.Expires.Equal(renewed.Expires) {
				t.Fatalf("GET on %s right after a renewal: %d expires %v, want %v", d.cfg.Member, code, o.Expires, renewed.Expires)
			}
		}
		if code, _, _ := d.do("DELETE", "/v1/overrides/"+id, "", auth); code != 204 {
			t.Fatalf("DELETE on %s: %d", d.cfg.Member, code)
		}
		if code, o := get(d, id); code != 404 {
			t.Fatalf("GET on %s right after DELETE: %d %+v, want 404", d.cfg.Member, code, o)
		}
		// The next daemon's override is for the same host and config: it
		// conflicts with this one until that daemon has followed the
		// removal (each daemon checks conflicts against what it serves).
		for _, other := range ds {
			waitLong(t, "the removal of "+id+" on "+other.cfg.Member, func() bool { code, _ := get(other, id); return code == 404 })
		}
	}
}

// TestClusterHosts attacks the guarantee that the hosts reported to any
// daemon are listed by every daemon (cfg status and cfg canary read them
// through any).
func TestClusterHosts(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	ds := startCluster(t, c, prefix, r.dir, 2, nil)
	a, b := ds[0], ds[1]
	if code, body, _ := b.do("POST", "/v1/hosts/web-1", `{"labels":{"tier":"canary"},"configs":["a"],"applied":1}`, auth); code != 204 {
		t.Fatalf("report to b: %d %s", code, body)
	}
	if code, body, _ := a.do("POST", "/v1/hosts/web-2", `{"configs":["a"],"applied":1}`, auth); code != 204 {
		t.Fatalf("report to a: %d %s", code, body)
	}
	// b writes its reports to the store within hostsFlushEvery.
	waitLong(t, "a to list both hosts", func() bool {
		_, body, _ := a.do("GET", "/v1/hosts", "", nil)
		var hosts []wire.Host
		if err := json.Unmarshal([]byte(body), &hosts); err != nil {
			t.Fatalf("GET /v1/hosts: %s", body)
		}
		return len(hosts) == 2 && hosts[0].Name == "web-1" && hosts[0].Labels["tier"] == "canary" && hosts[1].Name == "web-2"
	})
}

// TestCompactedFrom attacks the guarantee that a watcher asking for
// revisions whose history the publisher compacted (--keep-revisions) gets
// a snapshot, the whole truth, rather than an error it would retry
// forever, on the daemon's own store and on a shared one.
func TestCompactedFrom(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "bolt", true: "etcd"}[shared], func(t *testing.T) {
			r := newTestRepo(t)
			r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
			var d *testDaemon
			if shared {
				c, prefix := testEtcd(t)
				d = startCluster(t, c, prefix, r.dir, 1, func(cfg *Config) { cfg.KeepRevisions = 2 })[0]
			} else {
				d = serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, KeepRevisions: 2})
			}
			waitLong(t, "revision 1", func() bool { return d.latest() == 1 })
			r.commit("materialized_configs/a.json", "a2")
			waitLong(t, "revision 2", func() bool { return d.latest() == 2 })
			r.commit("materialized_configs/b.json", "")
			waitLong(t, "revision 3", func() bool { return d.latest() == 3 })
			r.commit("materialized_configs/a.json", "a4")
			waitLong(t, "revision 4", func() bool { return d.latest() == 4 })
			// Revisions 1 and 2 are compacted (the floor is 4-2): from 1,
			// the history is gone.
			waitLong(t, "the compaction", func() bool { return d.compacted(2) })
			w := d.watch("configs=a,b&from=1")
			w.expect("snapshot 4 a@4=a4")
			r.commit("materialized_configs/a.json", "a5")
			w.expect("update 5 a@5=a5")
			// From the floor, the history is there.
			d.watch("configs=a,b&from=3").expect("update 4 a@4=a4", "update 5 a@5=a5")
		})
	}
}

// compacted reports whether the changes of revision n were compacted.
func (d *testDaemon) compacted(n int64) bool {
	err := d.store.Changed(d.t.Context(), n, func(string) error { return nil })
	return errors.Is(err, store.ErrCompacted)
}

// watchedCluster starts an etcd cluster of three members of its own and two
// daemons over it, tailing a repository that holds a.json, and returns them
// once each has revision 1, with a watch of a on each.
func watchedCluster(t *testing.T) (*etcdtest.Cluster, *testRepo, []*testDaemon, []*watcher) {
	t.Helper()
	c, err := etcdtest.Start(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	ds := startCluster(t, c, "/cfg/", r.dir, 2, nil)
	var ws []*watcher
	for _, d := range ds {
		waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
		w := d.watch("configs=a")
		w.expect("snapshot 1 a@1=a1")
		ws = append(ws, w)
	}
	return c, r, ds, ws
}

// TestClusterMemberStopped attacks the guarantee that publishing goes on
// when one etcd member of three stops: the etcd leader, the worst case.
func TestClusterMemberStopped(t *testing.T) {
	c, r, _, ws := watchedCluster(t)
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no etcd leader")
	}
	c.Stop(leader)
	r.commit("materialized_configs/a.json", "a2")
	for _, w := range ws {
		w.expect("update 2 a@2=a2")
	}
	r.commit("materialized_configs/a.json", "a3")
	for _, w := range ws {
		w.expect("update 3 a@3=a3")
	}
}

// TestClusterStaleClone attacks the guarantee that a daemon elected while
// its clone of the repository is behind what was published waits for it,
// rather than taking the difference for a rewritten branch and publishing
// the configs of its older head.
func TestClusterStaleClone(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	clone := t.TempDir()
	g, err := git.PlainClone(clone, false, &git.CloneOptions{URL: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	first := startCluster(t, c, prefix, r.dir, 1, nil)[0]
	waitLong(t, "revision 1", func() bool { return first.latest() == 1 })
	w := first.watch("configs=a")
	w.expect("snapshot 1 a@1=a1")
	c2 := r.commit("materialized_configs/a.json", "a2")
	w.expect("update 2 a@2=a2")

	// The daemon of the clone, which has only the first commit, is
	// elected once the first one is closed.
	second := serve(t, Config{RepoPath: clone, Store: openShared(t, c, prefix), Member: "stale", Token: token,
		Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ElectionTTL: 2 * time.Second})
	sw := second.watch("configs=a&from=2")
	first.stop()
	unhealthy := func(what, reason string) {
		t.Helper()
		waitLong(t, what, func() bool {
			code, body, _ := second.do("GET", "/healthz", "", nil)
			return code == 503 && strings.Contains(body, reason)
		})
		if got := second.latest(); got != 2 {
			t.Fatalf("latest revision with a stale clone: %d, want 2", got)
		}
	}
	unhealthy("the daemon to wait for the published commit", "is not in the repository")
	// Fetched, the clone has the commit, but its branch is behind it.
	if err := g.Fetch(&git.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	unhealthy("the daemon to wait for its branch", "behind the published commit")
	// Once the branch has the published commit and one more, the
	// daemon publishes that one.
	head, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Storer.SetReference(plumbing.NewHashReference(head.Name(), plumbing.NewHash(c2))); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "the daemon of the clone to be ready", func() bool {
		code, _, _ := second.do("GET", "/healthz", "", nil)
		return code == 200
	})
	r.commit("materialized_configs/a.json", "a3")
	if err := g.Fetch(&git.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	remote, err := g.Reference(plumbing.NewRemoteReferenceName("origin", head.Name().Short()), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Storer.SetReference(plumbing.NewHashReference(head.Name(), remote.Hash())); err != nil {
		t.Fatal(err)
	}
	sw.expect("update 3 a@3=a3")
}

// TestClusterBranchReset attacks the guarantee that the publisher of a
// cluster takes its branch reset to one of its older commits for a clone
// that is behind, not for a rewritten branch: it waits, not ready and
// publishing nothing, until a commit is made on top of the older one;
// that commit, of which the published one is not an ancestor, makes a
// rewritten branch, published at once as one revision of the differences,
// which every daemon serves.
func TestClusterBranchReset(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	c1 := r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
	ds := startCluster(t, c, prefix, r.dir, 2, nil)
	for _, d := range ds {
		waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
	}
	var ws []*watcher
	for _, d := range ds {
		ws = append(ws, d.watch("configs=*&from=1"))
	}
	r.commit("materialized_configs/a.json", "a2", "materialized_configs/c.json", "c2")
	for _, w := range ws {
		w.expect("update 2 a@2=a2 c@2=c2")
	}

	r.reset(c1)
	waitLong(t, "the publisher to wait for its branch", func() bool {
		pub := publisherOf(ds)
		if pub == nil {
			return false
		}
		code, body, _ := pub.do("GET", "/healthz", "", nil)
		return code == 503 && strings.Contains(body, "behind the published commit")
	})
	for _, d := range ds {
		if got := d.latest(); got != 2 {
			t.Fatalf("%s: latest revision %d with the branch reset, want 2", d.cfg.Member, got)
		}
	}
	// The work tree still holds the second commit's files: the commit on
	// top of the first one keeps b, changes a and removes c.
	r.commit("materialized_configs/a.json", "a3", "materialized_configs/c.json", "")
	for _, w := range ws {
		w.expect("update 3 a@3=a3 c@3=-")
	}
	for _, d := range ds {
		waitLong(t, "revision 3 on "+d.cfg.Member, func() bool { return d.latest() == 3 })
	}
	waitLong(t, "the publisher to be ready", func() bool {
		pub := publisherOf(ds)
		if pub == nil {
			return false
		}
		code, _, _ := pub.do("GET", "/healthz", "", nil)
		return code == 200
	})
	for _, w := range ws {
		w.quiet(300 * time.Millisecond)
	}
}

// TestClusterQuorumLost attacks the guarantee that losing etcd's quorum
// (two members of three stopped) stops publishing and makes every daemon
// unready, while their watch streams stay open with heartbeats and send
// nothing else; once the quorum is back, every daemon is ready again and
// the commit made meanwhile reaches the same streams as the next
// revision.
func TestClusterQuorumLost(t *testing.T) {
	c, r, ds, ws := watchedCluster(t)
	healthz := func(d *testDaemon) (int, string) {
		code, body, _ := d.do("GET", "/healthz", "", nil)
		return code, body
	}
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no etcd leader")
	}
	down := []int{leader, (leader + 1) % 3}
	for _, m := range down {
		c.Stop(m)
	}
	r.commit("materialized_configs/a.json", "a2")
	for _, d := range ds {
		waitLong(t, d.cfg.Member+" to be unready", func() bool { code, _ := healthz(d); return code == 503 })
	}
	// The streams stay open: heartbeats keep coming, and nothing else.
	for i, w := range ws {
		for beats := 0; beats < 3; {
			select {
			case e, ok := <-w.events:
				if !ok {
					t.Fatalf("%s: the watch stream ended without a quorum", ds[i].cfg.Member)
				}
				if e.Type != "heartbeat" {
					t.Fatalf("%s: event %s without a quorum", ds[i].cfg.Member, e)
				}
				beats++
			case <-time.After(time.Minute):
				t.Fatalf("%s: no heartbeat for a minute without a quorum", ds[i].cfg.Member)
			}
		}
	}
	for _, m := range down {
		if err := c.Restart(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range ws {
		w.expect("update 2 a@2=a2")
	}
	for _, d := range ds {
		waitLong(t, d.cfg.Member+" to be ready again", func() bool {
			code, body := healthz(d)
			return code == 200 && strings.HasPrefix(body, "ok: ")
		})
		if got := d.latest(); got != 2 {
			t.Errorf("%s: latest revision %d, want 2", d.cfg.Member, got)
		}
	}
	waitLong(t, "a publisher with the quorum back", func() bool { return publisherOf(ds) != nil })
}

// followOnly is a shared store whose daemon follows it but never
// campaigns to publish: with no other daemon, none is elected.
type followOnly struct{ *store.Etcd }

func (followOnly) Lead(ctx context.Context, member string, ttl int, lead func(ctx context.Context) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// publisherMetrics returns the daemon's cfg_publishing and its
// cfg_publisher series, by member, from one scrape of /metrics.
func (d *testDaemon) publisherMetrics() (publishing float64, publishers map[string]float64) {
	d.t.Helper()
	families := d.scrape()
	f, ok := families["cfg_publishing"]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].Gauge == nil {
		d.t.Fatalf("%s: cfg_publishing: got %v, want one gauge", d.cfg.Member, f)
	}
	publishing = f.GetMetric()[0].GetGauge().GetValue()
	publishers = map[string]float64{}
	for _, m := range families["cfg_publisher"].GetMetric() {
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "member" || m.Gauge == nil {
			d.t.Fatalf("%s: cfg_publisher series %v, want a gauge labelled member", d.cfg.Member, m)
		}
		publishers[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	return publishing, publishers
}

// checkPublisher checks the publisher's metrics of each daemon of ds:
// cfg_publishing is 1 on pub only, and cfg_publisher has one series, of
// pub's member, or none if pub is nil.
func checkPublisher(t *testing.T, ds []*testDaemon, pub *testDaemon) {
	t.Helper()
	want := map[string]float64{}
	if pub != nil {
		want[pub.cfg.Member] = 1
	}
	for _, d := range ds {
		wantPublishing := map[bool]float64{false: 0, true: 1}[d == pub]
		if publishing, _ := d.publisherMetrics(); publishing != wantPublishing {
			t.Errorf("%s: cfg_publishing %v, want %v", d.cfg.Member, publishing, wantPublishing)
		}
		// cfg_publisher is as read from the election at most a second
		// before.
		waitLong(t, fmt.Sprintf("%s: cfg_publisher %v", d.cfg.Member, want), func() bool {
			_, publishers := d.publisherMetrics()
			return maps.Equal(publishers, want)
		})
	}
}

// TestClusterPublisherMetrics attacks the guarantee that /metrics says
// which daemon of a cluster publishes: cfg_publishing is 1 on the elected
// daemon and 0 on the others, and every daemon's cfg_publisher{member} is
// 1 for the elected one, and only for it, as read from the election at
// most a second before the scrape. When the publisher stops, the metrics
// of the others follow the daemon elected next; while none is elected,
// cfg_publisher has no series.
func TestClusterPublisherMetrics(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	// This daemon follows the store without campaigning: it scrapes the
	// same as any other and stays once the others have stopped.
	follower := serve(t, Config{RepoPath: r.dir, Store: followOnly{openShared(t, c, prefix)}, Member: "follower", Token: token,
		Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	ds := startCluster(t, c, prefix, r.dir, 2, nil)
	all := append([]*testDaemon{follower}, ds...)
	pub := publisherOf(ds)
	checkPublisher(t, all, pub)

	pub.stop()
	var next *testDaemon
	for _, d := range ds {
		if d != pub {
			next = d
		}
	}
	waitLong(t, "the other daemon to be elected", func() bool { return publisherOf([]*testDaemon{next}) != nil })
	checkPublisher(t, []*testDaemon{follower, next}, next)

	next.stop()
	waitLong(t, "the election to be empty", func() bool {
		leader, err := follower.cluster.store.Leader(t.Context())
		return err == nil && leader == ""
	})
	checkPublisher(t, []*testDaemon{follower}, nil)
}

// TestClusterPrefixes attacks the guarantee that --etcd-prefix lets
// several stores share one etcd cluster: two clusters of two daemons
// each, under prefixes one inside the other, tailing repositories of
// their own, each elect a publisher of their own at once, and neither
// sees the other's store, revisions, hosts, overrides or canary runs,
// though both use the same config and override names.
func TestClusterPrefixes(t *testing.T) {
	c, base := testEtcd(t)
	type group struct {
		name string
		r    *testRepo
		ds   []*testDaemon
		ws   []*watcher
		st   string // the store's identity, from the watch's snapshot
	}
	var gs []*group
	for i, name := range []string{"A", "B"} {
		g := &group{name: name, r: newTestRepo(t)}
		g.r.commit("materialized_configs/a.json", name+"1")
		g.ds = startCluster(t, c, base+strings.Repeat("b/", i), g.r.dir, 2, func(cfg *Config) { cfg.Member = name + "-" + cfg.Member })
		gs = append(gs, g)
	}
	// Host reports first: they reach the store within hostsFlushEvery.
	for _, g := range gs {
		if code, body, _ := g.ds[0].do("POST", "/v1/hosts/web-"+g.name, `{"configs":["a"],"applied":1}`, auth); code != 204 {
			t.Fatalf("report to %s: %d %s", g.ds[0].cfg.Member, code, body)
		}
	}

	// Each cluster has its own publisher, named by each of its daemons.
	for _, g := range gs {
		pub := publisherOf(g.ds)
		if pub == nil {
			t.Fatalf("cluster %s: no publisher", g.name)
		}
		checkPublisher(t, g.ds, pub)
	}

	// Revisions: each cluster numbers its own, from its own repository.
	for _, g := range gs {
		for _, d := range g.ds {
			waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
			w := d.watch("configs=a&host=web-1")
			e := w.next()
			if got, want := e.String(), "snapshot 1 a@1="+g.name+"1"; got != want {
				t.Fatalf("%s: %s, want %s", d.cfg.Member, got, want)
			}
			if g.st == "" {
				g.st = e.Store
			} else if e.Store != g.st {
				t.Errorf("%s: store %s, want %s as its cluster's", d.cfg.Member, e.Store, g.st)
			}
			w.expect("overrides 1")
			g.ws = append(g.ws, w)
		}
	}
	if gs[0].st == gs[1].st {
		t.Errorf("both clusters serve store %s", gs[0].st)
	}
	a, b := gs[0], gs[1]
	a.r.commit("materialized_configs/a.json", "A2")
	for _, w := range a.ws {
		w.expect("update 2 a@2=A2")
	}
	// B's next revision is 2 as well, of its own commit.
	b.r.commit("materialized_configs/a.json", "B2")
	for _, w := range b.ws {
		w.expect("update 2 a@2=B2")
	}
	a.r.commit("materialized_configs/a.json", "A3")
	for _, w := range a.ws {
		w.expect("update 3 a@3=A3")
	}
	for _, g := range gs {
		for _, d := range g.ds {
			want := map[string]int64{"A": 3, "B": 2}[g.name]
			if got := d.latest(); got != want {
				t.Errorf("%s: latest revision %d, want %d", d.cfg.Member, got, want)
			}
		}
	}

	// Overrides: the same override in both, each its own first version,
	// reaching the streams of its own cluster only.
	for _, g := range gs {
		code, body := g.ds[0].putOverride("run-1", "a", []string{"web-1"}, `{"v":"`+g.name+`"}`, 30)
		if code != 200 || !strings.Contains(body, `"version":1`) {
			t.Fatalf("PUT override on %s: %d %s, want version 1", g.ds[0].cfg.Member, code, body)
		}
		for _, w := range g.ws {
			w.expect(fmt.Sprintf(`overrides %d a=run-1@1:{"v":"%s"}`, g.ds[0].latest(), g.name))
		}
	}
	// A's removal reaches A's streams, and B's keep B's override.
	if code, _, _ := a.ds[1].do("DELETE", "/v1/overrides/run-1", "", auth); code != 204 {
		t.Fatalf("DELETE on %s: %d", a.ds[1].cfg.Member, code)
	}
	for _, w := range a.ws {
		w.expect("overrides 3")
	}
	for _, d := range b.ds {
		code, body, _ := d.do("GET", "/v1/overrides/run-1", "", nil)
		var o wire.Override
		if err := json.Unmarshal([]byte(body), &o); code != 200 || err != nil || string(o.Data) != `{"v":"B"}` {
			t.Errorf("%s: override run-1: %d %s, want B's", d.cfg.Member, code, body)
		}
	}

	// Canary runs: each cluster lists its own.
	for _, g := range gs {
		run := `{"config":"a","status":"running","started":"2026-01-02T03:04:05Z"}`
		if code, body, _ := g.ds[0].do("PUT", "/v1/canaries/canary-"+g.name, run, auth); code != 204 {
			t.Fatalf("PUT run on %s: %d %s", g.ds[0].cfg.Member, code, body)
		}
	}
	for _, g := range gs {
		for _, d := range g.ds {
			if runs := d.runs(); len(runs) != 1 || runs[0].ID != "canary-"+g.name {
				t.Errorf("%s: runs %+v, want canary-%s only", d.cfg.Member, runs, g.name)
			}
		}
	}

	// Hosts: once each cluster's other daemon lists the host reported to
	// the first, every daemon lists its own cluster's host only.
	hosts := func(d *testDaemon) []string {
		_, body, _ := d.do("GET", "/v1/hosts", "", nil)
		var list []wire.Host
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("%s: GET /v1/hosts: %s", d.cfg.Member, body)
		}
		var names []string
		for _, h := range list {
			names = append(names, h.Name)
		}
		return names
	}
	for _, g := range gs {
		waitLong(t, g.ds[1].cfg.Member+" to list web-"+g.name, func() bool { return slices.Contains(hosts(g.ds[1]), "web-"+g.name) })
	}
	for _, g := range gs {
		for _, d := range g.ds {
			if got := hosts(d); !slices.Equal(got, []string{"web-" + g.name}) {
				t.Errorf("%s: hosts %v, want web-%s only", d.cfg.Member, got, g.name)
			}
		}
	}
}

// countingLeader is a shared store that counts its reads of the election.
type countingLeader struct {
	*store.Etcd
	reads atomic.Int64
}

func (c *countingLeader) Leader(ctx context.Context) (string, error) {
	c.reads.Add(1)
	return c.Etcd.Leader(ctx)
}

// blockingLeader is a shared store whose Leader waits for gate and names
// daemon-0, counting its reads; it has no other method.
type blockingLeader struct {
	SharedStore
	gate  chan struct{}
	reads atomic.Int64
}

func (b *blockingLeader) Leader(ctx context.Context) (string, error) {
	b.reads.Add(1)
	select {
	case <-b.gate:
		return "daemon-0", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// TestElectionReadOneAtATime attacks the rule that the daemon reads the
// election once at a time, the requests that come meanwhile sharing the
// read, and keeps the answer for leaderFresh: a hundred requests while a
// read waits on etcd make no other read, nor do a hundred more within
// leaderFresh after it, and the first request after that reads again.
// It runs in a bubble of its own (testing/synctest), where the clock
// moves only when every goroutine waits, so that "every request waits on
// the one read" is a condition the test can wait for.
func TestElectionReadOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &blockingLeader{gate: make(chan struct{})}
		d := &Daemon{ctx: t.Context(), cluster: &cluster{store: st, election: electionRead{fresh: leaderFresh}}}
		// ask asks n requests' worth at once, and returns once every one
		// is answered or waits on a read.
		var wg sync.WaitGroup
		ask := func(n int) {
			for range n {
				wg.Go(func() {
					if leader, err := d.leader(t.Context()); leader != "daemon-0" || err != nil {
						t.Errorf("leader: %q, %v; want daemon-0", leader, err)
					}
				})
			}
			synctest.Wait()
		}
		ask(100)
		if n := st.reads.Load(); n != 1 {
			t.Errorf("100 requests while the election was being read read it %d times; want 1", n)
		}
		close(st.gate) // etcd answers
		wg.Wait()

		time.Sleep(leaderFresh - time.Millisecond)
		ask(100)
		wg.Wait()
		if n := st.reads.Load(); n != 1 {
			t.Errorf("100 requests within %v of the read read the election %d more times; want none", leaderFresh, n-1)
		}
		time.Sleep(time.Millisecond)
		ask(1)
		wg.Wait()
		if n := st.reads.Load(); n != 2 {
			t.Errorf("a request %v after the read read the election %d more times; want 1", leaderFresh, n-1)
		}
	})
}

// TestClusterElectionReadShared attacks the bound on what /healthz and
// /metrics, which anyone may call at any rate, cost etcd: their callers
// share the daemon's read of the election, kept for a while (an hour
// here, a second by default), so that a hundred requests at once after
// the first read cost etcd nothing more, and each still names the
// publisher.
func TestClusterElectionReadShared(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	st := &countingLeader{Etcd: openShared(t, c, prefix)}
	d := serve(t, Config{RepoPath: r.dir, Store: st, Member: "daemon-0", Token: token,
		Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ElectionTTL: 2 * time.Second})
	waitLong(t, "/healthz and /metrics to say the daemon publishes", func() bool {
		code, body, _ := d.do("GET", "/healthz", "", nil)
		_, publishers := d.publisherMetrics()
		return code == 200 && body == "ok: publishing as daemon-0\n" && maps.Equal(publishers, map[string]float64{"daemon-0": 1})
	})
	// From here, the last read is kept an hour.
	e := &d.cluster.election
	e.mu.Lock()
	e.fresh = time.Hour
	e.mu.Unlock()
	reads := st.reads.Load()
	if reads == 0 {
		t.Fatal("/healthz did not read the election")
	}

	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if i%2 == 0 {
				if code, body, _ := d.do("GET", "/healthz", "", nil); code != 200 || body != "ok: publishing as daemon-0\n" {
					t.Errorf("/healthz: %d %q", code, body)
				}
				return
			}
			if _, publishers := d.publisherMetrics(); !maps.Equal(publishers, map[string]float64{"daemon-0": 1}) {
				t.Errorf("cfg_publisher: %v, want daemon-0 only", publishers)
			}
		})
	}
	wg.Wait()
	if n := st.reads.Load() - reads; n != 0 {
		t.Errorf("100 requests of /healthz and /metrics read the election %d more times; want none", n)
	}
}
