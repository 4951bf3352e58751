package wire_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/wire"
)

// startDaemon commits files (path to content) to a new git repository,
// with raw configs only, and serves it with a real daemon on 127.0.0.1 with the write
// token "tok".
func startDaemon(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	g, err := git.PlainInit(root, false)
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := compiler.Build(context.Background(), root, compiler.Options{Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if diags := res.Diags(); len(diags) > 0 {
		t.Fatalf("compile: %s", diags.Error())
	}
	wt, err := g.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.com", When: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if _, err := wt.Commit("first", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Config{RepoPath: root, DataDir: t.TempDir(), Token: "tok", Heartbeat: 50 * time.Millisecond, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Serve(ctx, ln); d.Close() }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + ln.Addr().String()
	// The daemon publishes the commit once it has tailed it: wait for
	// that, watching from revision 0.
	c, err := wire.NewClient(base, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	var names []string
	for p := range files {
		names = append(names, strings.TrimPrefix(p, "source/")) // raw configs
	}
	w, err := c.Watch(wctx, wire.WatchRequest{Configs: names}, wire.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for {
		ev, err := w.Next()
		if err != nil {
			t.Fatalf("waiting for the first revision: %v", err)
		}
		if ev.Revision >= 1 {
			return base
		}
	}
}

// TestClientConfigNames reads configs whose names hold every character a
// name may hold besides letters and digits (+ @ . _ -) from a real daemon.
func TestClientConfigNames(t *testing.T) {
	base := startDaemon(t, map[string]string{
		"source/a+b/c@d":   "1",
		"source/x_y/v-1.2": "2",
		"source/a/b":       "3",
	})
	c, err := wire.NewClient(base, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, want := range map[string]string{"a+b/c@d": "1", "x_y/v-1.2": "2", "a/b": "3"} {
		cv, err := c.Config(ctx, name)
		if err != nil {
			t.Fatalf("config %q: %v", name, err)
		}
		if string(cv.Data) != want {
			t.Errorf("config %q: got data %q, want %q", name, cv.Data, want)
		}
		if cv.Name != name || cv.Revision != 1 || cv.Latest != 1 || cv.Commit == "" || cv.Store == "" {
			t.Errorf("config %q: got %+v, want revision 1 of latest 1 with a commit and a store", name, cv)
		}
	}
	// A name reaches the daemon whole: one that is not a config name is
	// refused under that name, never read as another config's.
	for _, name := range []string{"a+b/c@d?x", "a+b%2Fc@d", "a b/c", "a+b/c@d#x"} {
		_, err := c.Config(ctx, name)
		if want := fmt.Sprintf("config name %q", name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: got %v, want an error naming %s", name, err, want)
		}
	}
}

// TestClientWatchHostsOverridesRuns goes through the rest of the API with
// the client against a real daemon.
func TestClientWatchHostsOverridesRuns(t *testing.T) {
	base := startDaemon(t, map[string]string{"source/a+b/c@d": "1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := wire.NewClient(base, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}

	if err := c.ReportHost(ctx, "web-1", wire.HostReport{Labels: map[string]string{"zone": "z1"}, Configs: []string{"a+b/c@d"}, Applied: 1}); err != nil {
		t.Fatal(err)
	}
	hosts, err := c.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Name != "web-1" || hosts[0].Applied != 1 || hosts[0].Labels["zone"] != "z1" || hosts[0].LastSeen.IsZero() {
		t.Errorf("hosts: got %+v, want web-1 at revision 1 in zone z1, seen", hosts)
	}

	o, err := c.PutOverride(ctx, wire.Override{ID: "canary-1", Config: "a+b/c@d", Hosts: []string{"web-1"}, Data: []byte("7"), LeaseSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if o.Version != 1 || o.Expires.IsZero() {
		t.Errorf("override: got %+v, want version 1 with an expiry", o)
	}
	if err := c.RenewOverride(ctx, "canary-1"); err != nil {
		t.Fatal(err)
	}
	os, err := c.Overrides(ctx)
	if err != nil || len(os) != 1 || os[0].ID != "canary-1" {
		t.Errorf("overrides: got %+v, %v, want canary-1", os, err)
	}

	w, err := c.Watch(ctx, wire.WatchRequest{Configs: []string{"a+b/c@d"}, Host: "web-1"}, wire.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Store == "" {
		t.Error("watch: no store")
	}
	var snapshot, overrides bool
	for !snapshot || !overrides {
		ev, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case wire.Snapshot:
			snapshot = true
			if ev.Revision != 1 || len(ev.Configs) != 1 || ev.Configs[0].Name != "a+b/c@d" || ev.Store != w.Store {
				t.Errorf("snapshot: got %+v, want a+b/c@d at revision 1 of store %s", ev, w.Store)
			}
		case wire.Overrides:
			overrides = true
			if len(ev.Overrides) != 1 || ev.Overrides[0].ID != "canary-1" || string(ev.Overrides[0].Data) != "7" {
				t.Errorf("overrides: got %+v, want canary-1 with data 7", ev.Overrides)
			}
		}
	}

	if err := c.DeleteOverride(ctx, "canary-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RenewOverride(ctx, "canary-1"); !errors.Is(err, wire.ErrNotFound) {
		t.Errorf("renewing a deleted override: got %v, want ErrNotFound", err)
	}

	run := wire.Run{ID: "canary-1", Config: "a+b/c@d", Spec: "canary/spec", Status: wire.RunReverted, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := c.PutRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		config, status string
		want           int
	}{{"", "", 1}, {"a+b/c@d", wire.RunReverted, 1}, {"a+b/c@d", wire.RunLanded, 0}, {"other", "", 0}} {
		runs, err := c.Runs(ctx, tc.config, tc.status)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != tc.want {
			t.Errorf("runs of %q with status %q: got %d, want %d", tc.config, tc.status, len(runs), tc.want)
		}
	}

	// Writes without the token are refused.
	anon, err := wire.NewClient(base, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := anon.PutRun(ctx, run); err == nil {
		t.Error("a run put without the token: got no error")
	}
}

// TestClientWatchForms asks a real daemon for one watch in every form the
// client has: POST, resumed from a revision; GET (an agent's local API
// takes only GET); POST to a daemon that answers it 405 (an earlier
// daemon), which the client asks again with GET.
func TestClientWatchForms(t *testing.T) {
	base := startDaemon(t, map[string]string{"source/a/b": "1"})
	var posts, gets atomic.Int32
	target, _ := url.Parse(base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	earlier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/watch" {
			if r.Method == http.MethodPost {
				posts.Add(1)
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, `{"error":"no endpoint POST /v1/watch"}`, http.StatusMethodNotAllowed)
				return
			}
			gets.Add(1)
			if got := r.URL.Query().Get("configs"); got != "a/b,x/y" {
				t.Errorf("GET /v1/watch: configs %q, want %q", got, "a/b,x/y")
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(earlier.Close)
	ctx := context.Background()
	zero := int64(0)
	for _, tc := range []struct {
		name       string
		url        string
		opts       wire.WatchOptions
		from       *int64
		wantMethod string
		wantFirst  string
	}{
		{"POST", base, wire.WatchOptions{}, nil, http.MethodPost, wire.Snapshot},
		{"POST from 0", base, wire.WatchOptions{}, &zero, http.MethodPost, wire.Update},
		{"GET", base, wire.WatchOptions{GET: true}, nil, http.MethodGet, wire.Snapshot},
		{"GET from 0", base, wire.WatchOptions{GET: true}, &zero, http.MethodGet, wire.Update},
		{"POST to an earlier daemon", earlier.URL, wire.WatchOptions{}, nil, http.MethodGet, wire.Snapshot},
	} {
		c, err := wire.NewClient(tc.url, "tok", nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := c.Watch(ctx, wire.WatchRequest{Configs: []string{"a/b", "x/y"}, From: tc.from, Host: "web-1"}, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ev, err := w.Next()
		w.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if w.Method != tc.wantMethod || w.Store == "" || w.Latest != 1 {
			t.Errorf("%s: got method %s, store %q, latest %d; want %s, a store, 1", tc.name, w.Method, w.Store, w.Latest, tc.wantMethod)
		}
		if ev.Type != tc.wantFirst || ev.Revision != 1 || ev.Store != w.Store || len(ev.Configs) != 1 || string(ev.Configs[0].Data) != "1" {
			t.Errorf("%s: first event %+v, want a %s of a/b at revision 1", tc.name, ev, tc.wantFirst)
		}
	}
	if posts.Load() != 1 || gets.Load() != 1 {
		t.Errorf("the earlier daemon got %d POSTs and %d GETs, want 1 and 1", posts.Load(), gets.Load())
	}

	// A watch from beyond the daemon's latest revision is refused with
	// the daemon's store and latest revision, which tell an agent that
	// it holds revisions of another store.
	c, err := wire.NewClient(base, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	beyond := int64(5)
	_, err = c.Watch(ctx, wire.WatchRequest{Configs: []string{"a/b"}, From: &beyond}, wire.WatchOptions{})
	se, ok := errors.AsType[*wire.StatusError](err)
	if !ok || se.Code != http.StatusBadRequest || se.Latest != 1 || se.Store == "" {
		t.Errorf("watch from 5: got %v (%+v), want a 400 saying latest revision 1 and the store", err, se)
	}
	cv, err := c.Config(ctx, "a/b")
	if err != nil || se == nil || cv.Store != se.Store {
		t.Errorf("config: got %+v, %v, want store %v", cv, err, se)
	}
	rev, err := c.Revision(ctx, 0)
	if err != nil || rev.Number != 1 || rev.Commit == "" || !slices.Equal(rev.Configs, []string{"a/b"}) {
		t.Errorf("latest revision: got %+v, %v, want revision 1 changing a/b", rev, err)
	}
	if first, err := c.Revision(ctx, 1); err != nil || first.Commit != rev.Commit {
		t.Errorf("revision 1: got %+v, %v, want commit %s", first, err, rev.Commit)
	}
	if _, err := c.Revision(ctx, 2); !errors.Is(err, wire.ErrNotFound) {
		t.Errorf("revision 2: got %v, want ErrNotFound", err)
	}
	_, err = c.Config(ctx, "no/such")
	if se, ok := errors.AsType[*wire.StatusError](err); !errors.Is(err, wire.ErrNotFound) || !ok || se.Latest != 1 {
		t.Errorf("a config that does not exist: got %v, want ErrNotFound as of latest revision 1", err)
	}
}

// TestClientWatchIdle: a watch stream whose peer answers and then sends
// nothing ends after the idle timeout with ErrIdle, as does one whose
// peer does not even answer; a stream that sends a byte now and then
// lives on.
func TestClientWatchIdle(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("configs") == "mute" {
			select { // no answer at all
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		ew := wire.NewEventWriter(w, 0)
		ew.WriteHeader("s")
		if r.URL.Query().Get("configs") == "silent" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		for i := range 30 {
			if ew.Heartbeat(int64(i), "s", "") != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	c, err := wire.NewClient(srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := wire.WatchOptions{GET: true, Idle: 300 * time.Millisecond}
	_, err = c.Watch(ctx, wire.WatchRequest{Configs: []string{"mute"}}, opts)
	if !errors.Is(err, wire.ErrIdle) {
		t.Errorf("a peer that does not answer: got %v, want ErrIdle", err)
	}
	// The timeouts below leave a loaded machine time to answer.
	opts.Idle = 2 * time.Second
	w, err := c.Watch(ctx, wire.WatchRequest{Configs: []string{"silent"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Next()
	w.Close()
	if !errors.Is(err, wire.ErrIdle) || !strings.Contains(err.Error(), "watch stream silent for 2s") {
		t.Errorf("a silent stream: got %v, want ErrIdle", err)
	}
	// Heartbeats every 100 ms (or slower on a loaded machine, but far
	// below the timeout) keep a stream that lasts longer than the
	// timeout: it ends when the peer ends it.
	w, err = c.Watch(ctx, wire.WatchRequest{Configs: []string{"beating"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := 0
	for {
		_, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", n, err)
		}
		n++
	}
	if n != 30 {
		t.Errorf("got %d heartbeats, want 30", n)
	}
}
