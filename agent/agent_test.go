package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/wire"
)

const hb = 50 * time.Millisecond // the test daemons' heartbeat

type testAgent struct {
	*Agent
	URL  string
	stop func()
}

func startAgent(t *testing.T, dir string, daemons ...*agenttest.Daemon) *testAgent {
	t.Helper()
	return serveAgent(t, testConfig(dir, daemons...))
}

// testConfig is the configuration of a test agent of daemons, with its
// cache in dir.
func testConfig(dir string, daemons ...*agenttest.Daemon) Config {
	var urls []string
	for _, d := range daemons {
		urls = append(urls, d.URL)
	}
	return Config{
		Daemons:     urls,
		Host:        "web-1",
		Labels:      map[string]string{"cluster": "c1"},
		CacheDir:    dir,
		Token:       "tok",
		ReportEvery: time.Hour,
		// 20 heartbeats: shorter timeouts ended streams whose beats were
		// late under -race on a loaded machine.
		HeartbeatTimeout: 20 * hb,
		Heartbeat:        hb,
		FetchTimeout:     time.Second,
	}
}

// serveAgent serves an agent of cfg on 127.0.0.1 until the test ends,
// after the functions given have set it up.
func serveAgent(t *testing.T, cfg Config, setup ...func(*Agent)) *testAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.retryMin, a.retryMax = 10*time.Millisecond, 50*time.Millisecond
	for _, f := range setup {
		f(a)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testAgent{Agent: a, URL: "http://" + ln.Addr().String(), stop: stop}
}

type response struct {
	code   int
	body   string
	header http.Header
}

func get(t *testing.T, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, string(b), resp.Header}
}

// waitLimit bounds how long a test waits for a condition before it fails.
// It only bounds a failing test: some conditions take hundreds of round
// trips (TestRestartWithABloatedState: 256 GETs of names that do not
// exist, and a watch restarted after each batch dropped), which took up to
// 18 s under -race with the machine's two cores shared with three other
// runs of the test.
const waitLimit = time.Minute

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func job(rev int) agenttest.Change {
	return agenttest.Change{Name: "feed/job", Type: "Job", Data: fmt.Appendf(nil, "{\"rev\": %d}\n", rev)}
}

func other(rev int) agenttest.Change {
	return agenttest.Change{Name: "other", Type: "Job", Data: fmt.Appendf(nil, "{\"other\": %d}\n", rev)}
}

func (a *testAgent) applied() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Agent.applied
}

// waitServes waits until the agent serves want for name.
func (a *testAgent) waitServes(t *testing.T, name, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the agent to serve %q for %s", want, name), func() bool {
		r := get(t, a.URL+"/v1/configs/"+name)
		return r.code == 200 && r.body == want
	})
}

func TestFetchOnFirstRequest(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1), agenttest.Change{Name: "service/banner.txt", Data: []byte("hi")})
	repo.Publish(other(2))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	a := startAgent(t, dir, d)

	r := get(t, a.URL+"/v1/configs/feed/job")
	if r.code != 200 || r.body != "{\"rev\": 1}\n" {
		t.Fatalf("GET feed/job = %d %q", r.code, r.body)
	}
	for h, want := range map[string]string{
		"Cfg-Revision": "1", "Cfg-Latest-Revision": "2", "Cfg-Commit": repo.Commit(1),
		"Cfg-Type": "Job", "Content-Type": "application/json",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}
	r = get(t, a.URL+"/v1/configs/service/banner.txt")
	if r.code != 200 || r.body != "hi" || r.header.Get("Content-Type") != "application/octet-stream" || r.header.Get("Cfg-Type") != "" {
		t.Errorf("GET raw config = %d %q %v", r.code, r.body, r.header)
	}

	// Later requests come from the agent's memory.
	for range 3 {
		get(t, a.URL+"/v1/configs/feed/job")
	}
	if got := d.Gets(); !slices.Equal(got, []string{"feed/job", "service/banner.txt"}) {
		t.Errorf("daemon GETs = %q, want one per config", got)
	}

	// Written to the cache, data before meta, and to the state.
	cv, err := cache.Read(dir, "feed/job")
	if err != nil || string(cv.Data) != "{\"rev\": 1}\n" || cv.Revision != 1 || cv.Type != "Job" || cv.Commit != repo.Commit(1) {
		t.Errorf("cache.Read = %+v, %v", cv, err)
	}
	waitFor(t, "state.json to list both configs", func() bool {
		st, _ := cache.ReadState(dir)
		return slices.Equal(st.Configs, []string{"feed/job", "service/banner.txt"})
	})

	// A config no daemon has is 404 and is not subscribed to.
	r = get(t, a.URL+"/v1/configs/feed/nope")
	if r.code != 404 || r.body != "{\"error\":\"unknown config \\\"feed/nope\\\"\"}\n" {
		t.Errorf("GET unknown = %d %q", r.code, r.body)
	}
	if r := get(t, a.URL+"/v1/configs/a/../b"); r.code == 200 {
		t.Errorf("GET a/../b = %d", r.code)
	}

	// One watch for both configs, from the revision the first fetch saw.
	waitFor(t, "a watch for both configs", func() bool {
		ws := d.Watches()
		return len(ws) > 0 && slices.Equal(ws[len(ws)-1].Configs, []string{"feed/job", "service/banner.txt"})
	})
	if ws := d.Watches(); ws[0].From != 2 {
		t.Errorf("first watch from=%d, want 2", ws[0].From)
	}
	// Reported with the token.
	waitFor(t, "a report listing both configs", func() bool {
		for _, rep := range d.Reports() {
			if rep.Host == "web-1" && rep.Authorization == "Bearer tok" && rep.Labels["cluster"] == "c1" &&
				len(rep.Configs) == 2 && rep.Applied == 2 {
				return true
			}
		}
		return false
	})
}

func TestUpdatesWrittenAndServed(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	a := startAgent(t, dir, d)
	get(t, a.URL+"/v1/configs/feed/job")

	// A reader of the cache never sees a torn or mismatched version.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			cv, err := cache.Read(dir, "feed/job")
			if err != nil {
				t.Errorf("cache.Read: %v", err)
				return
			}
			if want := fmt.Sprintf("{\"rev\": %d}\n", cv.Revision); string(cv.Data) != want {
				t.Errorf("cache.Read: revision %d with data %q", cv.Revision, cv.Data)
				return
			}
		}
	})
	var last int64
	for i := 2; i <= 30; i++ {
		last = repo.Publish(job(i), other(i))
	}
	a.waitServes(t, "feed/job", "{\"rev\": 30}\n")
	close(stop)
	wg.Wait()
	waitFor(t, "state.json at the last revision", func() bool {
		st, _ := cache.ReadState(dir)
		return st.Revision == last && st.Commit == repo.Commit(last)
	})
	// Only the subscribed config is cached.
	if _, err := cache.Read(dir, "other"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("cache.Read(other) = %v, want not found", err)
	}
	if r := get(t, a.URL+"/v1/configs/feed/job"); r.header.Get("Cfg-Revision") != "30" {
		t.Errorf("Cfg-Revision = %q, want 30", r.header.Get("Cfg-Revision"))
	}

	// A deletion is a tombstone: 404 from the agent and the cache.
	repo.Publish(agenttest.Change{Name: "feed/job", Deleted: true})
	waitFor(t, "the deletion", func() bool { return get(t, a.URL+"/v1/configs/feed/job").code == 404 })
	if _, err := cache.Read(dir, "feed/job"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("cache.Read after delete = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "feed", "job")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data file after delete: %v", err)
	}
	// And it comes back.
	repo.Publish(job(33))
	a.waitServes(t, "feed/job", "{\"rev\": 33}\n")
	if n := len(d.Gets()); n != 1 {
		t.Errorf("daemon saw %d GETs, want 1", n)
	}
}

func TestRestartServesFromCacheWithDaemonDown(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	repo.Publish(job(2))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	a := startAgent(t, dir, d)
	get(t, a.URL+"/v1/configs/feed/job")
	repo.Publish(other(3))
	repo.Publish(job(4))
	a.waitServes(t, "feed/job", "{\"rev\": 4}\n")
	a.stop()
	d.Stop()

	// Everything is down; a new agent serves the cache at once.
	a2 := startAgent(t, dir, d)
	r := get(t, a2.URL+"/v1/configs/feed/job")
	if r.code != 200 || r.body != "{\"rev\": 4}\n" || r.header.Get("Cfg-Revision") != "4" {
		t.Fatalf("GET from cache = %d %q %v", r.code, r.body, r.header)
	}
	// A config it never held is unavailable, not unknown.
	if r := get(t, a2.URL+"/v1/configs/other"); r.code != 503 {
		t.Errorf("GET uncached config with no daemon = %d %s, want 503", r.code, r.body)
	}

	// The daemon comes back with news; the agent resumes from state.json.
	repo.Publish(job(5))
	d.Start(t)
	a2.waitServes(t, "feed/job", "{\"rev\": 5}\n")
	ws := d.Watches()
	if w := ws[len(ws)-1]; w.From != 4 || !slices.Equal(w.Configs, []string{"feed/job"}) {
		t.Errorf("watch after restart = %+v, want feed/job from 4", w)
	}
}

// localWatch opens a local watch stream and sends its events on a channel.
func localWatch(t *testing.T, url string) <-chan wire.Event {
	t.Helper()
	ch, _ := localWatchCancel(t, url)
	return ch
}

// localWatchCancel is localWatch, and returns a function that ends the
// stream.
func localWatchCancel(t *testing.T, url string) (<-chan wire.Event, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("watch: %s", resp.Status)
	}
	ch := make(chan wire.Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev wire.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("watch event %q: %v", sc.Text(), err)
				return
			}
			if ev.Type != wire.Heartbeat {
				ch <- ev
			}
		}
	}()
	var once sync.Once
	end := func() { once.Do(func() { cancel(); resp.Body.Close(); <-done }) }
	t.Cleanup(end)
	return ch, end
}

// collect reads events until the config reaches revision last and
// returns the config's revisions in the order they came.
func collect(t *testing.T, ch <-chan wire.Event, name string, last int64) []int64 {
	t.Helper()
	var revs []int64
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch ended after %v", revs)
			}
			for _, c := range ev.Configs {
				if c.Name == name {
					revs = append(revs, c.Revision)
					if c.Revision >= last {
						return revs
					}
				}
			}
		case <-timeout:
			t.Fatalf("timed out; got revisions %v, want up to %d", revs, last)
		}
	}
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestFailoverResumesWithoutGapsOrDuplicates(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d1 := agenttest.NewDaemon(t, repo)
	d2 := agenttest.NewDaemon(t, repo)
	a := startAgent(t, t.TempDir(), d1, d2)
	get(t, a.URL+"/v1/configs/feed/job")
	events := localWatch(t, a.URL+"/v1/watch?configs=feed/job")
	if got := collect(t, events, "feed/job", 1); !slices.Equal(got, []int64{1}) {
		t.Fatalf("snapshot revisions = %v", got)
	}
	for i := 2; i <= 5; i++ {
		repo.Publish(job(i))
	}
	waitFor(t, "revision 5 applied", func() bool { return a.applied() == 5 && a.Status().Daemon != "" })

	// The daemon the agent watches dies (on a loaded machine, a stream
	// silent for the heartbeat timeout may have failed over before: the
	// agent may be on either). Every watch from now on is from 5 or
	// later, and the first on the other daemon from 5.
	n1, n2 := len(d1.Watches()), len(d2.Watches())
	first, second, n := d1, d2, n2
	if a.Status().Daemon == d2.URL {
		first, second, n = d2, d1, n1
	}
	first.Stop()
	for i := 6; i <= 10; i++ {
		repo.Publish(job(i))
		time.Sleep(time.Millisecond)
	}
	if got := collect(t, events, "feed/job", 10); !slices.Equal(got, seq(2, 10)) {
		t.Errorf("revisions seen = %v, want 2..10 once each", got)
	}
	ws := second.Watches()[n:]
	if len(ws) == 0 || ws[0].From != 5 {
		t.Errorf("watches on the other daemon = %+v, want the first from 5", ws)
	}

	// And back: the other daemon dies, the first returns.
	first.Start(t)
	second.Stop()
	for i := 11; i <= 15; i++ {
		repo.Publish(job(i))
	}
	if got := collect(t, events, "feed/job", 15); !slices.Equal(got, seq(11, 15)) {
		t.Errorf("revisions seen = %v, want 11..15 once each", got)
	}
	a.waitServes(t, "feed/job", "{\"rev\": 15}\n")
}

func TestHeartbeatTimeoutFailsOver(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d1 := agenttest.NewDaemon(t, repo)
	d2 := agenttest.NewDaemon(t, repo)
	a := startAgent(t, t.TempDir(), d1, d2)
	get(t, a.URL+"/v1/configs/feed/job")
	waitFor(t, "a watch", func() bool { return a.Status().Daemon != "" })
	n1, n2 := len(d1.Watches()), len(d2.Watches())
	watched, other, n := d1, d2, n2
	if a.Status().Daemon == d2.URL {
		watched, other, n = d2, d1, n1
	}

	// The daemon watched hangs: its connection stays open, silent.
	watched.SetStalled(true)
	repo.Publish(job(2))
	a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
	waitFor(t, "the watch on the other daemon", func() bool { return a.Status().Daemon == other.URL })
	if ws := other.Watches()[n:]; len(ws) == 0 || ws[0].From != 1 {
		t.Errorf("watches on the other daemon = %+v, want the first from 1", ws)
	}
}

func TestSubscriptionGrows(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	repo.Publish(other(2))
	d := agenttest.NewDaemon(t, repo)
	a := startAgent(t, t.TempDir(), d)
	get(t, a.URL+"/v1/configs/feed/job")
	waitFor(t, "the first watch", func() bool { return len(d.Watches()) == 1 })
	repo.Publish(job(3))
	a.waitServes(t, "feed/job", "{\"rev\": 3}\n")

	get(t, a.URL+"/v1/configs/other")
	// The first watch naming other (on a loaded machine, a stalled
	// stream may have been watched again before).
	var w agenttest.WatchRequest
	waitFor(t, "a watch of other", func() bool {
		ws := d.Watches()
		i := slices.IndexFunc(ws, func(w agenttest.WatchRequest) bool { return slices.Contains(w.Configs, "other") })
		if i >= 0 {
			w = ws[i]
		}
		return i >= 0
	})
	if w.From != 3 || !slices.Equal(w.Configs, []string{"feed/job", "other"}) {
		t.Errorf("the watch of other = %+v, want feed/job,other from 3", w)
	}
	repo.Publish(other(4), job(4))
	a.waitServes(t, "other", "{\"other\": 4}\n")
	a.waitServes(t, "feed/job", "{\"rev\": 4}\n")
}

func TestLocalWatch(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	repo.Publish(other(2))
	d := agenttest.NewDaemon(t, repo)
	a := startAgent(t, t.TempDir(), d)

	// A watch subscribes to what it names, including configs that do not
	// exist yet, and starts with a snapshot of those that do.
	events := localWatch(t, a.URL+"/v1/watch?configs=feed/job,later")
	ev := <-events
	if ev.Type != wire.Snapshot || len(ev.Configs) != 1 || ev.Configs[0].Name != "feed/job" || string(ev.Configs[0].Data) != "{\"rev\": 1}\n" {
		t.Fatalf("first event = %+v", ev)
	}
	repo.Publish(job(3))
	repo.Publish(agenttest.Change{Name: "later", Data: []byte("now")})
	// Events are ordered per config: "later" may come first, fetched
	// ahead of the stream when the watch added it.
	got := map[string]wire.Config{}
	for len(got) < 2 {
		ev = <-events
		if ev.Type != wire.Update || len(ev.Configs) != 1 || ev.Revision != ev.Configs[0].Revision {
			t.Fatalf("event = %+v", ev)
		}
		got[ev.Configs[0].Name] = ev.Configs[0]
	}
	if c := got["feed/job"]; c.Revision != 3 || c.Commit != repo.Commit(3) || c.Type != "Job" {
		t.Errorf("feed/job event = %+v", c)
	}
	if c := got["later"]; c.Revision != 4 || string(c.Data) != "now" {
		t.Errorf("later event = %+v", c)
	}
	repo.Publish(agenttest.Change{Name: "later", Deleted: true})
	ev = <-events
	if ev.Revision != 5 || !ev.Configs[0].Deleted {
		t.Errorf("fourth event = %+v", ev)
	}

	// from= sends what changed after it, then live updates.
	events = localWatch(t, a.URL+"/v1/watch?configs=feed/job,later&from=3")
	ev = <-events
	if ev.Type != wire.Update || len(ev.Configs) != 1 || ev.Configs[0].Name != "later" || !ev.Configs[0].Deleted {
		t.Errorf("catch-up event = %+v", ev)
	}
	repo.Publish(job(6))
	if got := collect(t, events, "feed/job", 6); !slices.Equal(got, []int64{6}) {
		t.Errorf("revisions after catch-up = %v", got)
	}

	for _, q := range []string{"", "?configs=*", "?configs=a&from=x", "?configs=/a"} {
		if r := get(t, a.URL+"/v1/watch"+q); r.code != 400 {
			t.Errorf("watch%s = %d, want 400", q, r.code)
		}
	}
	if r := get(t, a.URL+"/healthz"); r.code != 200 || r.body != "ok\n" {
		t.Errorf("healthz = %d %q", r.code, r.body)
	}
	var st Status
	if err := json.Unmarshal([]byte(get(t, a.URL+"/v1/status").body), &st); err != nil || st.Applied != 6 || len(st.Configs) != 2 {
		t.Errorf("status = %+v, %v", st, err)
	}
}

func TestNoDaemonAtStart(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d := agenttest.NewDaemon(t, repo)
	d.Stop()
	a := startAgent(t, t.TempDir(), d)
	if r := get(t, a.URL+"/v1/configs/feed/job"); r.code != 503 {
		t.Fatalf("GET with no daemon = %d %s", r.code, r.body)
	}
	// A watch subscribes anyway; the config arrives when a daemon does.
	events := localWatch(t, a.URL+"/v1/watch?configs=feed/job")
	if ev := <-events; ev.Type != wire.Snapshot || len(ev.Configs) != 0 {
		t.Fatalf("first event = %+v", ev)
	}
	d.Start(t)
	if got := collect(t, events, "feed/job", 1); !slices.Equal(got, []int64{1}) {
		t.Errorf("revisions = %v", got)
	}
	repo.Publish(job(2))
	if got := collect(t, events, "feed/job", 2); !slices.Equal(got, []int64{2}) {
		t.Errorf("revisions = %v", got)
	}
}

func TestHeartbeatsAdvanceApplied(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d := agenttest.NewDaemon(t, repo)
	dir := t.TempDir()
	a := startAgent(t, dir, d)
	get(t, a.URL+"/v1/configs/feed/job")
	repo.Publish(other(2))
	repo.Publish(other(3))
	waitFor(t, "applied 3", func() bool { return a.applied() == 3 })
	waitFor(t, "a report of revision 3", func() bool {
		reps := d.Reports()
		return len(reps) > 0 && reps[len(reps)-1].Applied == 3
	})
	if st, err := cache.ReadState(dir); err != nil || st.Revision != 3 {
		t.Errorf("state = %+v, %v", st, err)
	}
}

// TestAppliedWaitsForGrownSubscription: an event of a stream that does not
// cover a config added since does not advance the applied revision, since
// the added config may have changed in between.
func TestAppliedWaitsForGrownSubscription(t *testing.T) {
	repo := agenttest.NewRepo(t, hb)
	d := agenttest.NewDaemon(t, repo)
	a, err := New(Config{Daemons: []string{d.URL}, Host: "h", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a.addSubLocked("feed/job")
	gen := a.subGen
	if err := a.applyEvent(wire.Event{Type: wire.Update, Revision: 5, Configs: []wire.Config{{Name: "feed/job", Revision: 5, Data: []byte("5")}}}, gen); err != nil {
		t.Fatal(err)
	}
	a.addSubLocked("other")
	if err := a.applyEvent(wire.Event{Type: wire.Update, Revision: 6, Configs: []wire.Config{{Name: "feed/job", Revision: 6, Data: []byte("6")}}}, gen); err != nil {
		t.Fatal(err)
	}
	if err := a.applyEvent(wire.Event{Type: wire.Heartbeat, Revision: 7}, gen); err != nil {
		t.Fatal(err)
	}
	if a.applied != 5 || string(a.configs["feed/job"].Data) != "6" || !a.configs["feed/job"].Compiled {
		t.Errorf("applied %d, held %+v; want 5 and revision 6", a.applied, a.configs["feed/job"])
	}
	if err := a.applyEvent(wire.Event{Type: wire.Update, Revision: 7}, a.subGen); err != nil {
		t.Fatal(err)
	}
	if a.applied != 7 {
		t.Errorf("applied %d, want 7", a.applied)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		wantErr string
	}{
		{Config{CacheDir: "x"}, "agent: no daemon URLs"},
		{Config{Daemons: []string{"http://a"}}, "agent: no cache directory"},
		{Config{Daemons: []string{"localhost:1"}, CacheDir: "x"}, `agent: daemon URL "localhost:1": want http://host:port`},
	} {
		_, err := New(tc.cfg)
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("New(%+v) = %v, want %s", tc.cfg, err, tc.wantErr)
		}
	}
}
