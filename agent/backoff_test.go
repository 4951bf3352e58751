package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// TestBackoffOnCacheErrors: while the agent cannot write its cache, it
// does not reconnect in a loop (it did about 900 times a second with a
// full disk): it waits between attempts, twice as long each time up to
// retryMax, keeps serving what it holds, and applies the update once the
// cache can be written again.
func TestBackoffOnCacheErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		// break makes the cache unwritable and returns a function that
		// mends it.
		breakCache func(t *testing.T, dir string) func()
	}{
		{"full disk", fillDisk},
		{"data directory replaced by a file", replaceDataDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.name == "full disk" {
				mountTmpfs(t, dir)
			}
			repo := agenttest.NewRepo(t, hb)
			repo.Publish(job(1))
			d := agenttest.NewDaemon(t, repo)
			logs := &syncbuf.Buffer{}
			cfg := testConfig(dir, d)
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			const retryMin, retryMax = 20 * time.Millisecond, 200 * time.Millisecond
			a := serveAgent(t, cfg, func(a *Agent) { a.retryMin, a.retryMax = retryMin, retryMax })
			a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
			waitFor(t, "the watch", func() bool { return len(d.Watches()) == 1 && a.Status().Daemon != "" })

			mend := tc.breakCache(t, dir)
			repo.Publish(job(2))
			// Each watch after the first fails at once, applying the
			// update; the agent waits before the next one.
			const n = 7
			waitFor(t, "the agent to try again", func() bool { return len(d.Watches()) >= 1+n })
			ws := d.Watches()[1 : 1+n]
			wait := 2 * retryMin // the wait after the stream that had progressed was retryMin
			for i := 1; i < n; i++ {
				if gap := ws[i].At.Sub(ws[i-1].At); gap < wait/2 {
					t.Errorf("watch %d came %v after the one before, want at least %v (half of %v)", i+1, gap, wait/2, wait)
				}
				wait = min(2*wait, retryMax)
			}
			waitForLog(t, logs, `level=WARN msg="writing the cache failed; retrying" daemon=`+d.URL)
			// The waits the agent chose, as it logged them: doubled up to
			// retryMax and never more, with jitter (half to all of it).
			var waits []time.Duration
			for _, m := range regexp.MustCompile(`msg="writing the cache failed; retrying" .* wait=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
				w, err := time.ParseDuration(m[1])
				if err != nil {
					t.Fatal(err)
				}
				waits = append(waits, w)
			}
			if len(waits) < n {
				t.Fatalf("%d waits logged, want at least %d", len(waits), n)
			}
			for i, w := range waits[:n] {
				if cap := min(retryMin<<i, retryMax); w > cap || w < cap/2 {
					t.Errorf("wait %d: %v, want half to all of %v", i+1, w, cap)
				}
			}
			a.waitServes(t, "feed/job", "{\"rev\": 1}\n")

			mend()
			a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
			waitFor(t, "revision 2 applied", func() bool { return a.applied() == 2 })
		})
	}
}

// replaceDataDir makes the cache in dir unwritable for feed/job by
// replacing its data directory with a file, and returns a function that
// removes the file. It does not put the directory back: the agent,
// retrying, may make a new one as soon as the file is gone.
func replaceDataDir(t *testing.T, dir string) func() {
	p := filepath.Join(dir, "data", "feed")
	if err := os.Rename(p, p+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(p + ".moved"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCacheErrorsKeepTheDaemon: a failure to write the cache is the
// agent's own, not its daemon's: with two daemons that both answer, the
// agent retries the daemon it watches, after a wait, and never fails over
// to the other while its cache cannot be written.
func TestCacheErrorsKeepTheDaemon(t *testing.T) {
	dir := t.TempDir()
	repo := agenttest.NewRepo(t, hb)
	repo.Publish(job(1))
	d1 := agenttest.NewDaemon(t, repo)
	d2 := agenttest.NewDaemon(t, repo)
	logs := &syncbuf.Buffer{}
	cfg := testConfig(dir, d1, d2)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	const retryMin, retryMax = 20 * time.Millisecond, 200 * time.Millisecond
	a := serveAgent(t, cfg, func(a *Agent) { a.retryMin, a.retryMax = retryMin, retryMax })
	a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
	waitFor(t, "the watch", func() bool { return a.Status().Daemon != "" })
	// On a loaded machine a stream silent for the heartbeat timeout may
	// have failed over already: the agent may watch either daemon.
	watched, other := d1, d2
	if a.Status().Daemon == d2.URL {
		watched, other = d2, d1
	}
	nw, no := len(watched.Watches()), len(other.Watches())

	mend := replaceDataDir(t, dir)
	repo.Publish(job(2))
	// Each watch fails when it applies revision 2; the agent waits and
	// watches the same daemon again.
	const n = 6
	waitFor(t, "the agent to try again", func() bool { return len(watched.Watches()) >= nw+n })
	if ws := other.Watches()[no:]; len(ws) != 0 {
		t.Fatalf("the agent watched the other daemon %d times while its cache could not be written: %+v", len(ws), ws)
	}
	for _, w := range watched.Watches()[nw : nw+n] {
		if w.From != 1 {
			t.Errorf("watch while the cache could not be written: %+v, want from 1", w)
		}
	}
	waitForLog(t, logs, `level=WARN msg="writing the cache failed; retrying" daemon=`+watched.URL)
	a.waitServes(t, "feed/job", "{\"rev\": 1}\n")

	mend()
	a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
	waitFor(t, "revision 2 applied", func() bool { return a.applied() == 2 })
}

// mountTmpfs mounts a 1 MiB tmpfs on dir for the test, or skips it if
// that is not permitted.
func mountTmpfs(t *testing.T, dir string) {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mounting a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// fillDisk fills the file system of dir and returns a function that
// frees it.
func fillDisk(t *testing.T, dir string) func() {
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{64 << 10, 1} {
		chunk := make([]byte, size)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackoffWhenStreamsEndAtOnce: a daemon that accepts every watch and
// ends it before any event gets a reconnect after a wait, twice as long
// each time up to retryMax, not at once.
func TestBackoffWhenStreamsEndAtOnce(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	url := endingDaemon(t, func() {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})

	dir := t.TempDir()
	if err := cache.Write(dir, cache.ConfigVersion{Name: "feed/job", Revision: 1, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.Daemons = []string{url}
	const retryMin, retryMax = 20 * time.Millisecond, 200 * time.Millisecond
	serveAgent(t, cfg, func(a *Agent) { a.retryMin, a.retryMax = retryMin, retryMax })
	const n = 7
	waitFor(t, "the agent to try again", func() bool { mu.Lock(); defer mu.Unlock(); return len(at) >= n })
	mu.Lock()
	defer mu.Unlock()
	wait := retryMin
	for i := 1; i < n; i++ {
		if gap := at[i].Sub(at[i-1]); gap < wait/2 {
			t.Errorf("watch %d came %v after the one before, want at least %v (half of %v)", i+1, gap, wait/2, wait)
		}
		wait = min(2*wait, retryMax)
	}
}

// TestFailoverAtOnceThenWait: when a watch fails, the agent tries each
// other daemon at once, and waits only once it has tried them all: with
// two daemons that accept every watch and end it before any event, the
// watches alternate between them, the second daemon's sooner after the
// first's than the shortest wait the agent takes, the first's again no
// sooner than that.
func TestFailoverAtOnceThenWait(t *testing.T) {
	type watch struct {
		daemon int
		at     time.Time
	}
	var mu sync.Mutex
	var watches []watch
	var urls []string
	for i := range 2 {
		urls = append(urls, endingDaemon(t, func() {
			mu.Lock()
			watches = append(watches, watch{i, time.Now()})
			mu.Unlock()
		}))
	}

	dir := t.TempDir()
	if err := cache.Write(dir, cache.ConfigVersion{Name: "feed/job", Revision: 1, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.Daemons = urls
	// Every wait is between retry/2 and retry: a watch sooner than
	// retry/2 after the one before came without a wait (retry/2 is long
	// enough that a loaded machine does not take it to fail over).
	const retry = 4 * time.Second
	a := serveAgent(t, cfg, func(a *Agent) { a.retryMin, a.retryMax = retry, retry })
	const n = 4
	waitFor(t, "the agent to try again", func() bool { mu.Lock(); defer mu.Unlock(); return len(watches) >= n })
	mu.Lock()
	defer mu.Unlock()
	for i, w := range watches[:n] {
		if w.daemon != i%2 {
			t.Errorf("watch %d went to daemon %d, want %d", i+1, w.daemon, i%2)
		}
		if i == 0 {
			continue
		}
		gap := w.at.Sub(watches[i-1].at)
		if i%2 == 1 && gap >= retry/2 {
			t.Errorf("watch %d, on the second daemon, came %v after the one on the first, want at once (under %v)", i+1, gap, retry/2)
		}
		if i%2 == 0 && gap < retry/2 {
			t.Errorf("watch %d, on the first daemon again, came %v after the one before, want a wait of at least %v", i+1, gap, retry/2)
		}
	}
	if got := get(t, a.URL+"/v1/configs/feed/job"); got.code != 200 || got.body != "{}" {
		t.Errorf("GET while no daemon streams = %d %q, want the cached config", got.code, got.body)
	}
}

// endingDaemon starts a daemon that accepts every watch and ends it before
// any event, calling watched for each, and returns its URL.
func endingDaemon(t *testing.T, watched func()) string {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/watch" {
			watched()
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			return
		}
		http.NotFound(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
