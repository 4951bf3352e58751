package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/internal/freeport"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// TestClusterStopsCutOff attacks the guarantee that a daemon over etcd
// stops when etcd does not answer: cut off from it by a partition that
// drops every byte and leaves the connection open (the worst case: no
// error ever comes back), a daemon waiting to be elected and one that
// publishes each say so on /healthz (for monitoring or a load balancer)
// and stop, their Close returning with the hosts' reports they could not
// save named in the log, while the other daemon publishes, at once or
// once the cut-off one's election lease has run out.
func TestClusterStopsCutOff(t *testing.T) {
	for _, publishing := range []bool{false, true} {
		name := "waiting"
		if publishing {
			name = "publishing"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, prefix := testEtcd(t)
			r := newTestRepo(t)
			r.commit("materialized_configs/a.json", `{"v":1}`)
			p, endpoint := etcdProxy(t, c.Endpoints[0])
			var logs syncbuf.Buffer
			cutCfg := Config{RepoPath: r.dir, Store: openSharedAt(t, []string{endpoint}, prefix), Member: "cut-off", Token: token,
				Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ElectionTTL: 2 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			otherCfg := cutCfg
			otherCfg.Store, otherCfg.Member, otherCfg.Logger = openShared(t, c, prefix), "other", nil

			// The test closes the daemon cut off, and cancels nothing.
			var cut, other *testDaemon
			var served <-chan error
			if publishing {
				cut, _, served = startServing(t, cutCfg)
				waitLong(t, "the daemon to be cut off to publish", cut.cluster.leading.Load)
				other = serve(t, otherCfg)
			} else {
				other = serve(t, otherCfg)
				waitLong(t, "the other daemon to publish", other.cluster.leading.Load)
				cut, _, served = startServing(t, cutCfg)
			}
			for _, d := range []*testDaemon{cut, other} {
				waitLong(t, "revision 1 on "+d.cfg.Member, func() bool { return d.latest() == 1 })
			}
			if code, body, _ := cut.do("POST", "/v1/hosts/web-1", `{"applied":1}`, map[string]string{"Authorization": "Bearer " + token}); code != 204 {
				t.Fatalf("reporting a host: %d %s", code, body)
			}

			p.BlackholeTx()
			p.BlackholeRx()
			waitLong(t, "/healthz of the daemon cut off to fail", func() bool {
				code, body, _ := cut.do("GET", "/healthz", "", nil)
				return code == 503 && strings.Contains(body, "reading the publisher's election")
			})
			closed := make(chan error, 1)
			go func() { closed <- cut.Close() }()
			select {
			case err := <-closed:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Close = %v; want the hosts' reports not saved for want of an answer", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the daemon cut off from etcd did not stop within a minute")
			}
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if !strings.Contains(logs.String(), `msg="stopping: the hosts' last reports were not saved"`) {
				t.Errorf("the log does not say the reports were not saved:\n%s", logs.String())
			}

			waitLong(t, "the other daemon to publish", other.cluster.leading.Load)
			r.commit("materialized_configs/a.json", `{"v":2}`)
			waitLong(t, "revision 2 on the other daemon", func() bool { return other.latest() == 2 })
		})
	}
}

// etcdProxy forwards connections to the etcd member at endpoint through
// etcd's own fault-injecting proxy, until the test blackholes it, and
// returns it and its client URL.
func etcdProxy(t *testing.T, endpoint string) (proxy.Server, string) {
	t.Helper()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	to, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	from := fmt.Sprintf("127.0.0.1:%d", ports[0])
	p := proxy.NewServer(proxy.ServerConfig{Logger: zap.NewNop(), From: url.URL{Scheme: "tcp", Host: from}, To: url.URL{Scheme: "tcp", Host: to.Host}})
	select {
	case <-p.Ready():
	case err := <-p.Error():
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, "http://" + from
}
