package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
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
		{"data directory replaced by a file", func(t *testing.T, dir string) func() {
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
				if err := os.Rename(p+".moved", p); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.name == "full disk" {
				mountTmpfs(t, dir)
			}
			repo := agenttest.NewRepo(t, hb)
			repo.Publish(job(1))
			d := agenttest.NewDaemon(t, repo)
			logs := &syncBuffer{}
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
			a.waitServes(t, "feed/job", "{\"rev\": 1}\n")

			mend()
			a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
			waitFor(t, "revision 2 applied", func() bool { return a.applied() == 2 })
		})
	}
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
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/watch" {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
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

	dir := t.TempDir()
	if err := cache.Write(dir, cache.ConfigVersion{Name: "feed/job", Revision: 1, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.Daemons = []string{"http://" + ln.Addr().String()}
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
