package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/internal/syncbuf"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// madeUp returns n names of configs that do not exist, of 110 bytes each.
func madeUp(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("made/up/%s/%0*d", prefix, 100-len(prefix), i))
	}
	return out
}

// watchStatus sends a local watch request and returns its status and,
// unless it is 200 (a stream, which it ends), its body.
func watchStatus(t *testing.T, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func watchURL(base string, names ...string) string {
	return base + "/v1/watch?configs=" + url.QueryEscape(strings.Join(names, ","))
}

func subscribed(a *testAgent) []string {
	var out []string
	for _, c := range a.Status().Configs {
		out = append(out, c.Name)
	}
	return out
}

// TestLocalClientsCannotBreakTheSubscription: local clients name
// thousands of configs that do not exist, as three requests of 4,000 names
// did, which grew state.json to 1.5 MB and the agent's watch URL beyond
// what the daemon takes (431), leaving the agent stale for good. The
// agent takes at most MaxWatchConfigs names per request and MaxPending
// configs it holds no version of, keeps its watch one the daemon takes,
// and drops the names that do not exist once no local client has named
// them for the grace, but not a name a local watch stream still names.
func TestLocalClientsCannotBreakTheSubscription(t *testing.T) {
	r := newGitRepo(t)
	r.commit("feed/job", `{"v":1}`)
	addr, _ := serveDaemon(t, r.dir, t.TempDir(), "127.0.0.1:0")
	logs := &syncbuf.Buffer{}
	dir := t.TempDir()
	const grace = 300 * time.Millisecond
	a := serveAgent(t, Config{Daemons: []string{"http://" + addr}, Host: "web-1", CacheDir: dir, ReportEvery: time.Hour,
		HeartbeatTimeout: 6 * hb, Heartbeat: hb, FetchTimeout: time.Second, MissingGrace: grace, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	a.waitServes(t, "feed/job", `{"v":1}`)

	for i := range 3 {
		code, body := watchStatus(t, watchURL(a.URL, madeUp(fmt.Sprint(i), 4000)...))
		if want := `{"error":"configs: got 4000 names, want at most 1000"}`; code != 400 || body != want {
			t.Errorf("watch of 4,000 names: %d %s, want 400 %s", code, body, want)
		}
	}
	r.commit("feed/job", `{"v":2}`)
	a.waitServes(t, "feed/job", `{"v":2}`)

	// Within the bounds: 200 names that do not exist are subscribed to,
	// 100 more are not.
	first, endFirst := localWatchCancel(t, watchURL(a.URL, append(madeUp("a", 100), "feed/job")...))
	if ev := <-first; ev.Type != wire.Snapshot || len(ev.Configs) != 1 {
		t.Fatalf("first event = %+v", ev)
	}
	_, endSecond := localWatchCancel(t, watchURL(a.URL, madeUp("b", 100)...))
	code, body := watchStatus(t, watchURL(a.URL, madeUp("c", 100)...))
	want := fmt.Sprintf(`{"error":"the agent's subscription is full: 300 configs it holds no version of, at most %d (one a daemon says does not exist is dropped %v after a local client last named it)"}`, MaxPending, grace)
	if code != 503 || body != want {
		t.Errorf("watch beyond the bound: %d %s, want 503 %s", code, body, want)
	}
	if n := len(subscribed(a)); n != 201 {
		t.Errorf("%d configs subscribed, want 201", n)
	}
	r.commit("feed/job", `{"v":3}`)
	a.waitServes(t, "feed/job", `{"v":3}`)
	if got := collect(t, first, "feed/job", 3); !slices.Equal(got, []int64{3}) {
		t.Errorf("revisions on the local watch = %v", got)
	}

	// A stream ended: its names go after the grace; the other stream's
	// stay for as long as it is open.
	endSecond()
	waitFor(t, "the second stream's names to be dropped", func() bool { return len(subscribed(a)) == 101 })
	waitForLog(t, logs, `level=INFO msg="dropped subscribed configs that do not exist" configs=100 first=made/up/b/`)
	if got := subscribed(a); got[0] != "feed/job" || !strings.HasPrefix(got[1], "made/up/a/") {
		t.Errorf("subscribed after the drop: %.3q", got)
	}
	endFirst()
	waitFor(t, "the first stream's names to be dropped", func() bool { return len(subscribed(a)) == 1 })
	waitFor(t, "state.json to shrink", func() bool {
		st, err := cache.ReadState(dir)
		return err == nil && slices.Equal(st.Configs, []string{"feed/job"})
	})

	// A config that does not exist yet, watched for longer than the
	// grace, arrives when it is created.
	later, _ := localWatchCancel(t, watchURL(a.URL, "feed/later"))
	if ev := <-later; ev.Type != wire.Snapshot || len(ev.Configs) != 0 {
		t.Fatalf("first event = %+v", ev)
	}
	if code, _ := watchStatus(t, watchURL(a.URL, "made/up/gone")); code != 200 {
		t.Fatalf("watch of made/up/gone: %d", code)
	}
	waitForLog(t, logs, `level=INFO msg="dropped subscribed configs that do not exist" configs=1 first=made/up/gone`)
	if got := subscribed(a); !slices.Equal(got, []string{"feed/job", "feed/later"}) {
		t.Errorf("subscribed after the grace: %q", got)
	}
	r.commit("feed/later", `{"later":1}`)
	if got := collect(t, later, "feed/later", 4); !slices.Equal(got, []int64{4}) {
		t.Errorf("revisions of feed/later = %v", got)
	}
}

// TestRestartWithABloatedState: state.json left by an earlier agent
// subscribes to 12,000 configs that do not exist (1.5 MB). The agent
// keeps MaxPending of them, watches the daemon with a request it takes,
// serves the updates of the configs it holds, and drops the rest once
// the daemon has said they do not exist and the grace has passed.
func TestRestartWithABloatedState(t *testing.T) {
	r := newGitRepo(t)
	r.commit("feed/job", `{"v":1}`)
	addr, _ := serveDaemon(t, r.dir, t.TempDir(), "127.0.0.1:0")
	dir := t.TempDir()
	logs := &syncbuf.Buffer{}
	cfg := Config{Daemons: []string{"http://" + addr}, Host: "web-1", CacheDir: dir, ReportEvery: time.Hour,
		HeartbeatTimeout: 6 * hb, Heartbeat: hb, FetchTimeout: time.Second, MissingGrace: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	a := serveAgent(t, cfg)
	a.waitServes(t, "feed/job", `{"v":1}`)
	waitFor(t, "state.json", func() bool { st, _ := cache.ReadState(dir); return st.Revision == 1 && len(st.Configs) == 1 })
	a.stop()

	st, err := cache.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Configs = append(st.Configs, madeUp("x", 12000)...)
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("state.json: %d bytes", len(b))

	a = serveAgent(t, cfg)
	waitForLog(t, logs, fmt.Sprintf(`level=WARN msg="state.json subscribes to more configs without a version than the agent takes; dropping the others" dropped=%d kept=%d max_pending=%d`,
		12000-MaxPending, MaxPending, MaxPending))
	r.commit("feed/job", `{"v":2}`)
	a.waitServes(t, "feed/job", `{"v":2}`)
	waitFor(t, "the names that do not exist to be dropped", func() bool { return len(subscribed(a)) == 1 })
	waitFor(t, "state.json to shrink", func() bool {
		st, err := cache.ReadState(dir)
		return err == nil && slices.Equal(st.Configs, []string{"feed/job"}) && st.Revision == 2
	})
	r.commit("feed/job", `{"v":3}`)
	a.waitServes(t, "feed/job", `{"v":3}`)
}

// TestWatchWithGetFromAnEarlierDaemon: a daemon that does not take POST
// /v1/watch (405) is watched with GET and a query string.
func TestWatchWithGetFromAnEarlierDaemon(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d := agenttest.NewDaemon(t, repo)
	target, _ := url.Parse(d.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var posts atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/watch" {
			posts.Add(1)
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, `{"error":"no endpoint POST /v1/watch"}`, http.StatusMethodNotAllowed)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	logs := &syncbuf.Buffer{}
	cfg := testConfig(t.TempDir())
	cfg.Daemons = []string{"http://" + ln.Addr().String()}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	a := serveAgent(t, cfg)
	a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
	repo.Publish(job(2))
	a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
	waitForLog(t, logs, `level=INFO msg="the daemon does not take POST /v1/watch; watching with GET" daemon=http://`+ln.Addr().String())
	if ws := d.Watches(); len(ws) == 0 || ws[0].From != 1 || !slices.Equal(ws[0].Configs, []string{"feed/job"}) || posts.Load() == 0 {
		t.Errorf("watches %+v after %d POSTs", ws, posts.Load())
	}
}

// TestSubscriptionBytesBound: configs that exist are subscribed to as
// long as their names fit in MaxSubscriptionBytes (lowered here), so that
// the watch request stays one the daemon reads; beyond, a request for
// another config is 503 and changes nothing.
func TestSubscriptionBytesBound(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1), other(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	limit := nameCost("feed/job") + 4
	a := serveAgent(t, testConfig(dir, d), func(a *Agent) { a.maxSubBytes = limit })
	a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
	r := get(t, a.URL+"/v1/configs/other")
	want := fmt.Sprintf(`{"error":"config \"other\": the agent's subscription is full: its names would take %d bytes, at most %d"}`,
		nameCost("feed/job")+nameCost("other"), limit)
	if r.code != 503 || strings.TrimSpace(r.body) != want {
		t.Errorf("GET other: %d %s, want 503 %s", r.code, r.body, want)
	}
	if code, body := watchStatus(t, watchURL(a.URL, "feed/job", "later")); code != 503 || !strings.Contains(body, "subscription is full: its names would take") {
		t.Errorf("watch of a new config: %d %s, want 503", code, body)
	}
	if got := subscribed(a); !slices.Equal(got, []string{"feed/job"}) {
		t.Errorf("subscribed: %q", got)
	}
	if _, err := cache.Read(dir, "other"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("other in the cache: %v", err)
	}
	repo.Publish(job(2))
	a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
}

// TestNamesTheDaemonRefuses: a name the daemon would refuse is refused
// by the agent, so that it never reaches the subscription.
func TestNamesTheDaemonRefuses(t *testing.T) {
	r := agenttest.NewRepo(t, hb)
	r.Publish(job(1))
	d := agenttest.NewDaemon(t, r)
	a := startAgent(t, t.TempDir(), d)
	long := strings.Repeat("x", repo.MaxNameLen+1)
	tooLong := `{"error":"config name \"` + long[:40] + `\"...: longer than 1024 bytes"}`
	for _, tc := range []struct{ path, want string }{
		{"/v1/configs/" + long, tooLong},
		{"/v1/configs/a,b", `{"error":"config name \"a,b\": character ',' not allowed (want ASCII letters, digits and . _ - + @)"}`},
		{"/v1/configs/a%0Db", `{"error":"config name \"a\\rb\": character '\\r' not allowed (want ASCII letters, digits and . _ - + @)"}`},
		{"/v1/watch?configs=" + long, tooLong},
		{"/v1/watch?configs=a%0Ab", `{"error":"config name \"a\\nb\": character '\\n' not allowed (want ASCII letters, digits and . _ - + @)"}`},
		{"/v1/watch?configs=" + strings.Repeat("a,", MaxWatchConfigs) + "a", `{"error":"configs: got 1001 names, want at most 1000"}`},
	} {
		if r := get(t, a.URL+tc.path); r.code != 400 || strings.TrimSpace(r.body) != tc.want {
			t.Errorf("GET %.60s: %d %s, want 400 %s", tc.path, r.code, r.body, tc.want)
		}
	}
	if got := subscribed(a); len(got) != 0 {
		t.Errorf("subscribed: %q", got)
	}
}

// TestDeletedConfigDropped: a deleted config no local client names is
// dropped from the subscription after the grace, with its tombstone; a
// request for it later fetches it again.
func TestDeletedConfigDropped(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1), other(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	cfg := testConfig(dir, d)
	cfg.MissingGrace = 100 * time.Millisecond
	a := serveAgent(t, cfg)
	a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
	a.waitServes(t, "other", "{\"other\": 1}\n")
	repo.Publish(agenttest.Change{Name: "feed/job", Deleted: true})
	waitFor(t, "the deletion", func() bool { return get(t, a.URL+"/v1/configs/feed/job").code == 404 })
	waitFor(t, "feed/job to be dropped", func() bool { return slices.Equal(subscribed(a), []string{"other"}) })
	// The agent drops the name, then removes the tombstone from its
	// cache.
	waitFor(t, "the tombstone to be removed", func() bool {
		_, err := os.Stat(filepath.Join(dir, "meta", "feed", "job.json"))
		return errors.Is(err, os.ErrNotExist)
	})
	if _, err := cache.Read(dir, "feed/job"); !errors.Is(err, cache.ErrNotFound) || err.Error() != `config "feed/job": not in the cache` {
		t.Errorf("cache.Read = %v", err)
	}
	repo.Publish(job(3))
	a.waitServes(t, "feed/job", "{\"rev\": 3}\n")
	if got := subscribed(a); !slices.Equal(got, []string{"feed/job", "other"}) {
		t.Errorf("subscribed: %q", got)
	}
}

// TestSubscriptionFitsTheDaemonsBody attacks the promise that the agent's
// watch stays one its daemons take: the largest subscription the agent
// keeps (MaxSubscriptionBytes of names, as nameCost counts them), sent
// as POST /v1/watch with the longest host name whose JSON is longest and
// the largest revision, fits in the body a daemon reads (daemon.MaxBody),
// with names short and long.
func TestSubscriptionFitsTheDaemonsBody(t *testing.T) {
	for _, size := range []int{8, 100, 1019} { // 1,019 digits: 1,024 bytes with their slashes
		var names []string
		cost := 0
		for i := 0; ; i++ {
			digits := fmt.Sprintf("%0*d", size, i)
			var elems []string
			for len(digits) > 200 {
				elems, digits = append(elems, digits[:200]), digits[200:]
			}
			name := strings.Join(append(elems, digits), "/")
			if err := repo.CheckName(name); err != nil {
				t.Fatal(err)
			}
			if cost+nameCost(name) > MaxSubscriptionBytes {
				break
			}
			names = append(names, name)
			cost += nameCost(name)
		}
		from := int64(math.MaxInt64)
		body, err := json.Marshal(wire.WatchRequest{Configs: names, From: &from, Host: strings.Repeat("<", 253)})
		if err != nil {
			t.Fatal(err)
		}
		if len(body) > daemon.MaxBody {
			t.Errorf("names of %d digits: the largest watch request is %d bytes, more than the %d a daemon reads", size, len(body), daemon.MaxBody)
		}
	}
}
