package daemon

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cfg-dev/cfg/internal/etcdtest"
	"github.com/cfg-dev/cfg/store"
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
func testEtcd(t *testing.T) (*etcdtest.Cluster, string) {
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
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st, err := store.OpenEtcd(t.Context(), cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
// publishes the next commit, from the last published one.
func TestClusterPublishes(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	ds := startCluster(t, c, prefix, r.dir, 3, nil)
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
