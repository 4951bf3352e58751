package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/internal/freeport"
	"github.com/cfg-dev/cfg/internal/syncbuf"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
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
			cutCfg := cutOffConfig(r, openSharedAt(t, []string{endpoint}, prefix), "cut-off")
			cutCfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
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

// TestClusterAgentsLeaveCutOff attacks the guarantee that agents do not
// stay on a daemon cut off from etcd: its heartbeats say it cannot reach
// the store, and an agent watching it asks the other daemons whether they
// are ready and moves to one that is, getting what was published
// meanwhile. The agent's heartbeat timeout is an hour, so that only the
// heartbeats' word can move it.
func TestClusterAgentsLeaveCutOff(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	other := serve(t, cutOffConfig(r, openShared(t, c, prefix), "other"))
	waitLong(t, "the other daemon to publish", other.cluster.leading.Load)
	cut, cutOff := serveBehindProxy(t, r, c.Endpoints[0], prefix, "cut-off", nil)

	get, watching := startAgent(t, cut.url, other.url)
	waitLong(t, "the agent to serve a@1", func() bool { return strings.TrimSpace(get("/v1/configs/a")) == `{"v":1}` })
	waitLong(t, "the agent to watch the daemon to be cut off", func() bool { return watching() == cut.url })
	waitStreaming(t, cut)

	cutOff()
	r.commit("materialized_configs/a.json", `{"v":2}`)
	waitLong(t, "revision 2 on the other daemon", func() bool { return other.latest() == 2 })
	waitLong(t, "the agent to serve a@2", func() bool { return strings.TrimSpace(get("/v1/configs/a")) == `{"v":2}` })
	if d := watching(); d != other.url {
		t.Errorf("the agent watches %q; want the other daemon, %s", d, other.url)
	}
}

// TestClusterAgentsStayWhenNoneReady attacks the other side of
// TestClusterAgentsLeaveCutOff: when every daemon is cut off from etcd (as
// when etcd has lost its quorum), an agent told so by its daemon's
// heartbeats asks the others, finds none ready, and stays where it is,
// serving its cache, rather than go round the daemons.
func TestClusterAgentsStayWhenNoneReady(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	var ds []*testDaemon
	var cuts []func()
	for i := range 2 {
		d, cut := serveBehindProxy(t, r, c.Endpoints[i], prefix, fmt.Sprintf("daemon-%d", i), nil)
		ds, cuts = append(ds, d), append(cuts, cut)
	}
	get, watching := startAgent(t, ds[0].url, ds[1].url)
	waitLong(t, "the agent to serve a@1", func() bool { return strings.TrimSpace(get("/v1/configs/a")) == `{"v":1}` })
	waitLong(t, "the agent to watch the first daemon", func() bool { return watching() == ds[0].url })
	waitStreaming(t, ds[0])

	for _, cut := range cuts {
		cut()
	}
	waitLong(t, "the agent to ask the second daemon twice", func() bool {
		for _, m := range ds[1].scrape()["cfg_http_requests_total"].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["code"] == "503" && labels["route"] == "GET /healthz" {
				return m.GetCounter().GetValue() >= 2
			}
		}
		return false
	})
	if d := watching(); d != ds[0].url {
		t.Errorf("the agent watches %q; want the first daemon still, %s", d, ds[0].url)
	}
	if got := strings.TrimSpace(get("/v1/configs/a")); got != `{"v":1}` {
		t.Errorf("the agent serves a = %s; want its cached {\"v\":1}", got)
	}
}

// TestClusterRequestsCutOff attacks the guarantee that a client never
// waits on a store the daemon cannot reach: cut off from etcd (every byte
// dropped, the connection left open), the daemon answers each request
// that needs the store with 503, the reason and Retry-After, whether it
// has found itself cut off yet or not (once it has, at once: their reads
// of the store start already given up on), and still serves what it holds
// in memory.
func TestClusterRequestsCutOff(t *testing.T) {
	for _, known := range []bool{false, true} {
		name := "unknown"
		if known {
			name = "known"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, prefix := testEtcd(t)
			r := newTestRepo(t)
			r.commit("materialized_configs/a.json", `{"v":1}`)
			st := &deadReads{}
			cut, cutOff := serveBehindProxy(t, r, c.Endpoints[0], prefix, "cut-off", func(e *store.Etcd) store.Store {
				st.Etcd = e
				return st
			})
			if code, body, _ := cut.do("GET", "/v1/configs/a", "", nil); code != 200 {
				t.Fatalf("GET /v1/configs/a before the cut: %d %s", code, body)
			}

			cutOff()
			if known {
				waitLong(t, "/healthz to fail", func() bool {
					code, _, _ := cut.do("GET", "/healthz", "", nil)
					return code == 503
				})
			}
			auth := map[string]string{"Authorization": "Bearer " + token}
			dead := st.n.Load()
			requests := []struct{ method, path, body string }{
				{"GET", "/v1/configs/a", ""},
				{"GET", "/v1/revisions/latest", ""},
				{"GET", "/v1/revisions/1", ""},
				{"GET", "/v1/hosts", ""},
				{"GET", "/v1/canaries", ""},
				{"POST", "/v1/watch", `{"configs":["a"]}`},
				{"PUT", "/v1/overrides/o1", `{"config":"a","hosts":["web-1"],"data":"eyJ2Ijo5fQ==","lease_seconds":60}`},
			}
			for _, req := range requests {
				code, body, h := doWithin(t, cut, req.method, req.path, req.body, auth)
				if code != 503 || !strings.Contains(body, "the daemon cannot reach its store: reading the publisher's election") || h.Get("Retry-After") != strconv.Itoa(RetryAfter) {
					t.Errorf("%s %s cut off: %d %s (Retry-After %q); want 503 saying the store is unreachable, with Retry-After %d", req.method, req.path, code, strings.TrimSpace(body), h.Get("Retry-After"), RetryAfter)
				}
			}
			// Known cut off, the daemon waits for etcd in none of them.
			if n := st.n.Load() - dead; known && n != int64(len(requests)) {
				t.Errorf("%d of the %d requests' reads of the store started already given up on; want all", n, len(requests))
			}
			// What the daemon holds in memory needs no store.
			if code, body, _ := doWithin(t, cut, "GET", "/v1/overrides", "", nil); code != 200 {
				t.Errorf("GET /v1/overrides cut off: %d %s", code, body)
			}
			if code, body, _ := doWithin(t, cut, "POST", "/v1/hosts/web-1", `{"applied":1}`, auth); code != 204 {
				t.Errorf("POST /v1/hosts/web-1 cut off: %d %s", code, body)
			}
		})
	}
}

// deadReads is a shared store that counts the reads of configs,
// revisions, hosts and runs that start with their context already ended:
// reads that the daemon gave up on before they began.
type deadReads struct {
	*store.Etcd
	n atomic.Int64
}

func (s *deadReads) count(ctx context.Context) {
	if ctx.Err() != nil {
		s.n.Add(1)
	}
}

func (s *deadReads) Get(ctx context.Context, name string) (store.ConfigVersion, error) {
	s.count(ctx)
	return s.Etcd.Get(ctx, name)
}

func (s *deadReads) Latest(ctx context.Context) (store.Revision, error) {
	s.count(ctx)
	return s.Etcd.Latest(ctx)
}

func (s *deadReads) Revision(ctx context.Context, n int64) (store.Revision, error) {
	s.count(ctx)
	return s.Etcd.Revision(ctx, n)
}

func (s *deadReads) Hosts(ctx context.Context) ([]store.Host, error) {
	s.count(ctx)
	return s.Etcd.Hosts(ctx)
}

func (s *deadReads) Runs(ctx context.Context) ([]wire.Run, error) {
	s.count(ctx)
	return s.Etcd.Runs(ctx)
}

// doWithin makes a request of d as do does, failing the test if no
// answer comes within a minute.
func doWithin(t *testing.T, d *testDaemon, method, path, body string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, d.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer within a minute: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// gatedStore is a shared store whose snapshots and reads of revisions
// of named configs (a watch stream's; the daemon's own read every
// config), once gated, wait for open to close before they read: the test
// cuts the store off while a watch stream waits there to read it.
type gatedStore struct {
	*store.Etcd
	gated   atomic.Bool
	waiting chan struct{} // gets a value as a read starts to wait
	open    chan struct{}
}

func (g *gatedStore) wait(ctx context.Context, sel store.Selection) {
	if !g.gated.Load() || sel.IsAll() {
		return
	}
	select {
	case g.waiting <- struct{}{}:
	case <-ctx.Done():
		return
	}
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

func (g *gatedStore) Snapshot(ctx context.Context, sel store.Selection, fn func(store.ConfigVersion) error) (store.Revision, error) {
	g.wait(ctx, sel)
	return g.Etcd.Snapshot(ctx, sel, fn)
}

func (g *gatedStore) Since(ctx context.Context, from int64, sel store.Selection, fn func(store.ConfigVersion) error) error {
	g.wait(ctx, sel)
	return g.Etcd.Since(ctx, from, sel, fn)
}

// TestClusterWatchReadCutOff attacks the guarantee that a watch stream
// cut off from etcd while it reads the store (its snapshot or its replay,
// its headers sent; or a revision whose configs the daemon does not hold)
// does not hang there, with no way to say so in a heartbeat until the
// read is done: the daemon cuts it, so that its client moves on at once
// rather than after its heartbeat timeout, and counts it in
// cfg_watchers_dropped_total.
func TestClusterWatchReadCutOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		from int64 // -1: a snapshot
		big  bool  // cut while it reads revision 2, of more than hubBytes
	}{
		{"snapshot", -1, false},
		{"replay", 1, false},
		{"big revision", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, prefix := testEtcd(t)
			r := newTestRepo(t)
			r.commit("materialized_configs/a.json", `{"v":1}`)
			st := &gatedStore{waiting: make(chan struct{}, 1), open: make(chan struct{})}
			cut, cutOff := serveBehindProxy(t, r, c.Endpoints[0], prefix, "cut-off", func(e *store.Etcd) store.Store {
				st.Etcd = e
				return st
			})

			req := wire.WatchRequest{Configs: []string{"a", "big"}}
			if tc.from >= 0 {
				req.From = &tc.from
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cl, err := wire.NewClient(cut.url, token, nil)
			if err != nil {
				t.Fatal(err)
			}
			st.gated.Store(!tc.big)
			w, err := cl.Watch(ctx, req, wire.WatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if tc.big {
				if ev, err := w.Next(); err != nil || ev.Type != wire.Snapshot {
					t.Fatalf("first event: %+v, %v; want the snapshot", ev, err)
				}
				st.gated.Store(true)
				r.commit("materialized_configs/big.json", `"`+strings.Repeat("b", hubBytes)+`"`)
			}
			<-st.waiting
			cutOff()
			close(st.open)
			for {
				ev, err := w.Next()
				if ctx.Err() != nil {
					t.Fatal("the stream was not cut within a minute of the daemon being cut off")
				}
				if err != nil {
					break
				}
				if ev.Type != wire.Heartbeat {
					t.Fatalf("the stream sent %+v; want it cut", ev)
				}
			}
			if n := cut.metric("cfg_watchers_dropped_total", "reason", dropUnreachable); n != 1 {
				t.Errorf("cfg_watchers_dropped_total{reason=%q} = %v; want 1", dropUnreachable, n)
			}
		})
	}
}

// TestClusterAgentsStartCutOff attacks the guarantee that an agent does
// not wait on a daemon cut off from etcd when it starts (or comes back)
// either: the cut-off daemon answers its fetch and its watch with 503, and
// the agent gets its configs from the next daemon and watches it,
// although its heartbeat timeout is an hour.
func TestClusterAgentsStartCutOff(t *testing.T) {
	c, prefix := testEtcd(t)
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	other := serve(t, cutOffConfig(r, openShared(t, c, prefix), "other"))
	waitLong(t, "the other daemon to publish", other.cluster.leading.Load)
	cut, cutOff := serveBehindProxy(t, r, c.Endpoints[0], prefix, "cut-off", nil)
	cutOff()

	get, watching := startAgent(t, cut.url, other.url)
	waitLong(t, "the agent to serve a@1", func() bool { return strings.TrimSpace(get("/v1/configs/a")) == `{"v":1}` })
	waitLong(t, "the agent to watch the other daemon", func() bool { return watching() == other.url })
	r.commit("materialized_configs/a.json", `{"v":2}`)
	waitLong(t, "the agent to serve a@2", func() bool { return strings.TrimSpace(get("/v1/configs/a")) == `{"v":2}` })
}

// waitStreaming waits until the agent's watch stream on d has sent its
// first overrides event, which follows its replay and first heartbeat: a
// stream cut off from etcd while it still reads the store to open has
// nothing to say until it is, and the agent leaves it only after its
// heartbeat timeout.
func waitStreaming(t *testing.T, d *testDaemon) {
	t.Helper()
	waitLong(t, "the agent's stream on "+d.cfg.Member+" to be open", func() bool {
		for _, m := range d.scrape()["cfg_watch_events_sent_total"].GetMetric() {
			if m.GetCounter().GetValue() >= 1 {
				return true
			}
		}
		return false
	})
}

// startAgent serves an agent of the daemons at urls, in that order, with
// a heartbeat timeout of an hour (only a heartbeat's word, or a failure,
// moves it), until the test ends. It returns functions that GET a path
// of its local API and name the daemon it watches.
func startAgent(t *testing.T, urls ...string) (get func(path string) string, watching func() string) {
	t.Helper()
	var logs syncbuf.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the agent's log:\n%s", logs.String())
		}
	})
	ag, err := agent.New(agent.Config{Daemons: urls, Host: "web-1", CacheDir: t.TempDir(), Token: token,
		HeartbeatTimeout: time.Hour, ReportEvery: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	local := "http://" + ln.Addr().String()
	get = func(path string) string {
		resp, err := http.Get(local + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	watching = func() string {
		var st agent.Status
		if err := json.Unmarshal([]byte(get("/v1/status")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Daemon
	}
	return get, watching
}

// cutOffConfig is the configuration of the cut-off tests' daemons, of
// the repository r over st, named member: quick heartbeats, polls and
// elections.
func cutOffConfig(r *testRepo, st store.Store, member string) Config {
	return Config{RepoPath: r.dir, Store: st, Member: member, Token: token,
		Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, ElectionTTL: 2 * time.Second}
}

// serveBehindProxy serves a daemon of r named member, over the store
// under prefix that it reaches through a proxy (etcdProxy) of the etcd
// member at endpoint (wrapped by wrap, unless nil), until the test ends,
// and waits for revision 1 on it. It returns the daemon and cut, which
// cuts it off from etcd: every byte dropped both ways, the connection
// left open, so that no error ever comes back.
func serveBehindProxy(t *testing.T, r *testRepo, endpoint, prefix, member string, wrap func(*store.Etcd) store.Store) (d *testDaemon, cut func()) {
	t.Helper()
	p, proxied := etcdProxy(t, endpoint)
	e := openSharedAt(t, []string{proxied}, prefix)
	var st store.Store = e
	if wrap != nil {
		st = wrap(e)
	}
	// Closed whatever Close returns: cut off, it cannot save the hosts'
	// reports.
	d, _, served := startServing(t, cutOffConfig(r, st, member))
	t.Cleanup(func() { d.Close(); <-served })
	waitLong(t, "revision 1 on "+member, func() bool { return d.latest() == 1 })
	return d, func() {
		p.BlackholeTx()
		p.BlackholeRx()
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
