package daemon

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/store"
)

// BenchmarkWatchOpen opens a watch of one config, over HTTP on
// 127.0.0.1, in a store of 20,000 configs, and reads its snapshot and
// first heartbeat.
func BenchmarkWatchOpen(b *testing.B) {
	d, err := New(Config{RepoPath: gitRepoWithACommit(b), DataDir: storeWith(b, 20000), Token: token, Heartbeat: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/watch?configs=svc07/config00007", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for range 2 { // the snapshot, the heartbeat
			if !sc.Scan() {
				b.Fatalf("watch stream: %v", sc.Err())
			}
		}
		cancel()
		resp.Body.Close()
	}
}

// gitRepoWithACommit returns a git work tree with one commit.
func gitRepoWithACommit(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		tb.Fatal(err)
	}
	wt, _ := g.Worktree()
	if _, err := wt.Commit("empty", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}, AllowEmptyCommits: true}); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// BenchmarkWatchBody reads and parses the body of a POST /v1/watch of 1
// MiB of the shortest names (three characters each: about 175,000), the
// most a client without the token can make the daemon parse at once per
// MiB of the watch parameter bound (docs/api.md, Limits).
func BenchmarkWatchBody(b *testing.B) {
	body := watchBodyOf(MaxBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/watch", strings.NewReader(body))
		q, ok := watchParams(httptest.NewRecorder(), r)
		if !ok {
			b.Fatal("watchParams refused the body")
		}
		store.Select(strings.Split(q.Get("configs"), ",")...).Match()
	}
}

// BenchmarkWhileReachable measures what bounding a request's reads of
// the store adds to it (whileReachable), on a daemon over a shared store
// that reaches it (its last read of the election fresh and good), and on
// a daemon with a store of its own, for which it adds nothing.
func BenchmarkWhileReachable(b *testing.B) {
	read := func(context.Context) error { return nil }
	b.Run("shared", func(b *testing.B) {
		d := &Daemon{cluster: &cluster{election: electionRead{fresh: time.Hour, at: time.Now()}}}
		b.ReportAllocs()
		for b.Loop() {
			if err := d.whileReachable(b.Context(), read); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("own", func(b *testing.B) {
		d := &Daemon{}
		b.ReportAllocs()
		for b.Loop() {
			if err := d.whileReachable(b.Context(), read); err != nil {
				b.Fatal(err)
			}
		}
	})
}
