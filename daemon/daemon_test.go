package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

const token = "s3cret"

// testRepo is a git repository whose work tree is the config repository.
type testRepo struct {
	t    *testing.T
	dir  string
	git  *git.Repository
	when time.Time
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := t.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, git: g, when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// commit writes files given as path, content pairs (empty content deletes
// the file) and commits the whole work tree.
func (r *testRepo) commit(pairs ...string) string {
	r.t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		name := filepath.Join(r.dir, filepath.FromSlash(pairs[i]))
		if pairs[i+1] == "" {
			if err := os.Remove(name); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(pairs[i+1]), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	r.when = r.when.Add(time.Minute)
	h, err := wt.Commit(fmt.Sprintf("commit %d", len(pairs)), &git.CommitOptions{
		Author: &object.Signature{Name: "Tester", Email: "t@example.com", When: r.when}, AllowEmptyCommits: true,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// reset moves the checked-out branch to commit, as git reset --hard would
// for the branch (the work tree is left alone).
func (r *testRepo) reset(commit string) {
	r.t.Helper()
	head, err := r.git.Head()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(head.Name(), plumbing.NewHash(commit))); err != nil {
		r.t.Fatal(err)
	}
}

// gitCommand runs the git command line in dir, as user T, failing t if it
// fails; it skips t if git is not installed. For what go-git does not do
// (or refuses): worktree add, pack-refs, committing names go-git rejects.
func gitCommand(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", args, err, out)
	}
}

// testDaemon is a daemon serving on 127.0.0.1.
type testDaemon struct {
	*Daemon
	t    *testing.T
	url  string
	stop func() // cancels Serve, waits for it and closes the daemon
}

// startDaemon serves a daemon for repoDir with data in dataDir, polling
// often, and waits until it is healthy.
func startDaemon(t *testing.T, repoDir, dataDir string) *testDaemon {
	t.Helper()
	// A write timeout of a minute: under the race detector on a loaded
	// machine, the readers of a stream of megabytes may not take a piece
	// in 10 s (the tests of the write timeout set theirs).
	d := serve(t, Config{RepoPath: repoDir, DataDir: dataDir, Token: token, Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond, WriteTimeout: time.Minute})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	return d
}

// serve makes a daemon and serves it on 127.0.0.1.
func serve(t *testing.T, cfg Config) *testDaemon {
	t.Helper()
	td, cancel, done := startServing(t, cfg)
	stopped := false
	td.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := td.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(td.stop)
	return td
}

// startServing makes a daemon of cfg and serves it on a port of its own
// until the function it returns is called or the daemon is closed; the
// channel has Serve's error then. Stopping it is left to the caller.
func startServing(t *testing.T, cfg Config) (*testDaemon, context.CancelFunc, <-chan error) {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	return &testDaemon{Daemon: d, t: t, url: "http://" + ln.Addr().String()}, cancel, done
}

// do makes a request and returns the status code, body and headers.
func (d *testDaemon) do(method, path, body string, header map[string]string) (int, string, http.Header) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// waitFor waits up to a minute for cond: a first publish of megabytes
// under the race detector on a loaded machine took more than 10 s.
func (d *testDaemon) waitFor(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *testDaemon) latest() int64 {
	d.t.Helper()
	code, body, _ := d.do("GET", "/v1/revisions/latest", "", nil)
	if code == 404 {
		return 0
	}
	var info struct{ Revision int64 }
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != 200 {
		d.t.Fatalf("GET /v1/revisions/latest: %d %s", code, body)
	}
	return info.Revision
}

// watchEvent is a decoded watch event.
type watchEvent struct {
	Type     string
	Revision int64
	Store    string
	Commit   string
	Configs  []struct {
		Name     string
		Revision int64
		Commit   string
		Type     string
		Deleted  bool
		Data     []byte
	}
	Overrides []struct {
		ID      string
		Config  string
		Version int64
		Data    []byte
	}
}

// String renders an event as "type revision name=data ...", with "-" for
// a deleted config.
func (e watchEvent) String() string {
	s := fmt.Sprintf("%s %d", e.Type, e.Revision)
	for _, o := range e.Overrides {
		s += fmt.Sprintf(" %s=%s@%d:%s", o.Config, o.ID, o.Version, o.Data)
	}
	for _, c := range e.Configs {
		if c.Deleted {
			s += fmt.Sprintf(" %s@%d=-", c.Name, c.Revision)
		} else {
			s += fmt.Sprintf(" %s@%d=%s", c.Name, c.Revision, c.Data)
		}
	}
	return s
}

type watcher struct {
	t      *testing.T
	events chan watchEvent
	cancel func()
}

// watch opens a watch stream; query is the URL query.
func (d *testDaemon) watch(query string) *watcher {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", d.url+"/v1/watch?"+query, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		d.t.Fatalf("watch %s: %s %s", query, resp.Status, b)
	}
	w := &watcher{t: d.t, events: make(chan watchEvent, 100), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		defer close(w.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var e watchEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				d.t.Errorf("watch event %s: %v", sc.Bytes(), err)
				return
			}
			w.events <- e
		}
	}()
	d.t.Cleanup(cancel)
	return w
}

// next returns the next event that is not a heartbeat. It waits up to a
// minute: under the race detector on a loaded machine, a revision of
// several megabytes took more than 10 s from commit to event.
func (w *watcher) next() watchEvent {
	w.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				w.t.Fatal("watch stream ended")
			}
			if e.Type != "heartbeat" {
				return e
			}
		case <-timeout:
			w.t.Fatal("timed out waiting for a watch event")
		}
	}
}

// expect reads len(want) events (heartbeats aside) and compares them with
// want.
func (w *watcher) expect(want ...string) {
	w.t.Helper()
	var got []string
	for range want {
		got = append(got, w.next().String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		w.t.Errorf("watch events (-want +got):\n%s", diff)
	}
}

// quiet checks that no event but heartbeats comes for a while.
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-w.events:
			if ok && e.Type != "heartbeat" {
				w.t.Errorf("unexpected event %s", e)
			}
		case <-timeout:
			return
		}
	}
}

func TestPublishOnStart(t *testing.T) {
	r := newTestRepo(t)
	c1 := r.commit(
		"materialized_configs/feed/job.json", `{"a":1}`,
		"materialized_configs/service/banner.txt", "hello",
		"materialized_configs/feed/job.thrift-binary", "\x00\x01",
		"source/feed/job.cconf", "export(1)",
	)
	d := startDaemon(t, r.dir, t.TempDir())

	code, body, h := d.do("GET", "/v1/configs/feed/job", "", nil)
	if code != 200 || body != `{"a":1}` {
		t.Errorf("GET feed/job: %d %s", code, body)
	}
	want := map[string]string{"Cfg-Revision": "1", "Cfg-Latest-Revision": "1", "Cfg-Commit": c1, "Cfg-Type": "", "Content-Type": "application/json"}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("GET feed/job: %s: %q, want %q", k, h.Get(k), v)
		}
	}
	code, body, h = d.do("GET", "/v1/configs/service/banner.txt", "", nil)
	if code != 200 || body != "hello" || h.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("GET service/banner.txt: %d %s %s", code, body, h.Get("Content-Type"))
	}
	for _, name := range []string{"feed/job.thrift-binary", "feed/job.json", "source/feed/job.cconf"} {
		want, _ := json.Marshal(map[string]string{"error": fmt.Sprintf("unknown config %q", name)})
		if code, body, _ := d.do("GET", "/v1/configs/"+name, "", nil); code != 404 || body != string(want)+"\n" {
			t.Errorf("GET %s: %d %s", name, code, body)
		}
	}
	code, body, _ = d.do("GET", "/v1/revisions/latest", "", nil)
	var info struct {
		Revision int64
		Commit   string
		Time     time.Time
		Configs  []string
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != 200 {
		t.Fatalf("GET latest: %d %s", code, body)
	}
	if info.Revision != 1 || info.Commit != c1 || info.Time.IsZero() || !cmp.Equal(info.Configs, []string{"feed/job", "service/banner.txt"}) {
		t.Errorf("latest revision = %+v", info)
	}
	if code, body, _ := d.do("GET", "/v1/revisions/1", "", nil); code != 200 || !strings.Contains(body, c1) {
		t.Errorf("GET /v1/revisions/1: %d %s", code, body)
	}
}

func TestLiveUpdates(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.txt", "b1")
	d := startDaemon(t, r.dir, t.TempDir())
	both := d.watch("configs=a,b.txt")
	onlyB := d.watch("configs=b.txt")
	all := d.watch("configs=*&from=0")
	both.expect("snapshot 1 a@1=a1 b.txt@1=b1")
	onlyB.expect("snapshot 1 b.txt@1=b1")
	all.expect("update 1 a@1=a1 b.txt@1=b1")

	r.commit("materialized_configs/a.json", "a2")
	r.commit("source/x.cconf", "no materialized change")
	r.commit("materialized_configs/a.json", "a3", "materialized_configs/b.txt", "b3", "materialized_configs/c.json", "c3")
	r.commit("materialized_configs/b.txt", "")

	both.expect("update 2 a@2=a2", "update 3 a@3=a3 b.txt@3=b3", "update 4 b.txt@4=-")
	onlyB.expect("update 3 b.txt@3=b3", "update 4 b.txt@4=-")
	all.expect("update 2 a@2=a2", "update 3 a@3=a3 b.txt@3=b3 c@3=c3", "update 4 b.txt@4=-")
	if got := d.latest(); got != 4 {
		t.Errorf("latest revision = %d, want 4", got)
	}
	if code, _, _ := d.do("GET", "/v1/configs/b.txt", "", nil); code != 404 {
		t.Errorf("GET a deleted config: %d, want 404", code)
	}

	// Replay from a revision, then live.
	w := d.watch("configs=a,c&from=2")
	w.expect("update 3 a@3=a3 c@3=c3")
	w.quiet(300 * time.Millisecond)
	r.commit("materialized_configs/c.json", "c5")
	w.expect("update 5 c@5=c5")
	both.quiet(300 * time.Millisecond)

	// Heartbeats carry the revision the stream has accounted for.
	for e := range w.events {
		if e.Type == "heartbeat" {
			if e.Revision != 5 {
				t.Errorf("heartbeat revision %d, want 5", e.Revision)
			}
			break
		}
	}
}

// TestEventCommits checks that each config in an event carries the commit
// of its own revision.
func TestEventCommits(t *testing.T) {
	r := newTestRepo(t)
	c1 := r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
	d := startDaemon(t, r.dir, t.TempDir())
	c2 := r.commit("materialized_configs/b.json", "b2")
	d.waitFor("revision 2", func() bool { return d.latest() == 2 })
	e := d.watch("configs=a,b").next()
	got := []string{e.Commit, e.Configs[0].Commit, e.Configs[1].Commit}
	if diff := cmp.Diff([]string{c2, c1, c2}, got); diff != "" {
		t.Errorf("commits of the snapshot, a and b (-want +got):\n%s", diff)
	}
}

func TestRestart(t *testing.T) {
	r := newTestRepo(t)
	data := t.TempDir()
	c1 := r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, data)
	c2 := r.commit("materialized_configs/a.json", "a2")
	d.waitFor("revision 2", func() bool { return d.latest() == 2 })
	if code, body, _ := d.do("POST", "/v1/hosts/web-1", `{"labels":{"cluster":"c1"},"configs":["a"],"applied":2}`, map[string]string{"Authorization": "Bearer " + token}); code != 204 {
		t.Fatalf("POST host: %d %s", code, body)
	}
	w := d.watch("configs=a&from=0")
	w.expect("update 1 a@1=a1", "update 2 a@2=a2")
	d.stop()

	// Commits while the daemon is down, then a new daemon on the same
	// data directory.
	c3 := r.commit("materialized_configs/a.json", "a3")
	r.commit("source/unrelated", "x")
	c5 := r.commit("materialized_configs/a.json", "a4", "materialized_configs/b.json", "b4")
	d = startDaemon(t, r.dir, data)
	d.waitFor("revision 4", func() bool { return d.latest() == 4 })
	w = d.watch("configs=a,b&from=2")
	w.expect("update 3 a@3=a3", "update 4 a@4=a4 b@4=b4")
	w.quiet(300 * time.Millisecond)

	for n, commit := range []string{c1, c2, c3, c5} {
		code, body, _ := d.do("GET", fmt.Sprintf("/v1/revisions/%d", n+1), "", nil)
		if code != 200 || !strings.Contains(body, commit) {
			t.Errorf("revision %d: %d %s, want commit %s", n+1, code, body, commit)
		}
	}
	if code, _, _ := d.do("GET", "/v1/revisions/5", "", nil); code != 404 {
		t.Errorf("GET /v1/revisions/5: %d, want 404", code)
	}
	if _, body, _ := d.do("GET", "/metrics", "", nil); !strings.Contains(body, "\ncfg_revisions_published_total 2\n") {
		t.Errorf("the restarted daemon published other than 2 revisions:\n%s", grep(body, "cfg_revisions_published_total"))
	}
	_, body, _ := d.do("GET", "/v1/hosts", "", nil)
	var hosts []struct {
		Host    string
		Applied int64
	}
	if err := json.Unmarshal([]byte(body), &hosts); err != nil || len(hosts) != 1 || hosts[0].Host != "web-1" || hosts[0].Applied != 2 {
		t.Errorf("hosts after a restart: %s", body)
	}

	// A third start with nothing new publishes nothing.
	d.stop()
	d = startDaemon(t, r.dir, data)
	if got := d.latest(); got != 4 {
		t.Errorf("latest after a restart with no new commit = %d, want 4", got)
	}
}

func TestRewrittenBranch(t *testing.T) {
	r := newTestRepo(t)
	c1 := r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
	d := startDaemon(t, r.dir, t.TempDir())
	r.commit("materialized_configs/a.json", "a2", "materialized_configs/c.json", "c2")
	w := d.watch("configs=*&from=1")
	w.expect("update 2 a@2=a2 c@2=c2")
	r.reset(c1)
	w.expect("update 3 a@3=a1 c@3=-")
}

func TestBadRequests(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	auth := map[string]string{"Authorization": "Bearer " + token}
	tests := []struct {
		method, path, body string
		header             map[string]string
		wantCode           int
		wantBody           string
	}{
		{"POST", "/v1/hosts/web-1", `{}`, nil, 401, `{"error":"missing token: want Authorization: Bearer TOKEN"}`},
		{"POST", "/v1/hosts/web-1", `{}`, map[string]string{"Authorization": "Bearer nope"}, 401, `{"error":"wrong token"}`},
		{"POST", "/v1/hosts/web-1", `{"labels":`, auth, 400, `{"error":"decoding host report: unexpected EOF"}`},
		{"POST", "/v1/hosts/web-1", `{"applied":"9"}`, auth, 400, `{"error":"decoding host report: json: cannot unmarshal string into Go struct field HostReport.applied of type int64"}`},
		{"POST", "/v1/hosts/web-1", `{} {}`, auth, 400, `{"error":"decoding host report: more than one JSON value"}`},
		{"POST", "/v1/hosts/web-1", `{"applied":-1}`, auth, 400, `{"error":"host report: applied: got -1, want a revision (0 or more)"}`},
		{"POST", "/v1/hosts/web-1", `{"configs":["/etc/passwd"]}`, auth, 400, `{"error":"host report: config name \"/etc/passwd\": empty element (want slash-separated names)"}`},
		{"POST", "/v1/hosts/web-1", `{"labels":{"x":"` + strings.Repeat("y", 2<<20) + `"}}`, auth, 413, `{"error":"host report: body over 1048576 bytes"}`},
		{"GET", "/v1/configs/nope", "", nil, 404, `{"error":"unknown config \"nope\""}`},
		{"GET", "/v1/watch", "", nil, 400, `{"error":"missing configs: want configs=NAME[,NAME...] or configs=*"}`},
		{"GET", "/v1/watch?configs=a,,b", "", nil, 400, `{"error":"configs: empty config name"}`},
		{"GET", "/v1/watch?configs=a&from=x", "", nil, 400, `{"error":"from: got \"x\", want a revision number"}`},
		{"GET", "/v1/watch?configs=a&from=-1", "", nil, 400, `{"error":"from: got \"-1\", want a revision number"}`},
		{"GET", "/v1/watch?configs=a&from=2", "", nil, 400, `{"error":"from: revision 2 is beyond the latest revision 1"}`},
		{"GET", "/v1/revisions/x", "", nil, 400, `{"error":"revision: got \"x\", want a number from 1"}`},
		{"GET", "/v1/revisions/0", "", nil, 400, `{"error":"revision: got \"0\", want a number from 1"}`},
		{"GET", "/v1/revisions/2", "", nil, 404, `{"error":"no revision 2: the latest is 1"}`},
		{"DELETE", "/v1/configs/a", "", auth, 405, `{"error":"no endpoint DELETE /v1/configs/a"}`},
		{"GET", "/v2/nope", "", nil, 404, `{"error":"no endpoint GET /v2/nope"}`},
		{"POST", "/v1/hosts/web-1", `{"labels":{"cluster":"c1"},"configs":["a"],"applied":1}`, auth, 204, ``},
	}
	for _, tt := range tests {
		code, body, h := d.do(tt.method, tt.path, tt.body, tt.header)
		if code != tt.wantCode || strings.TrimSuffix(body, "\n") != tt.wantBody {
			t.Errorf("%s %s %.40s: %d %s, want %d %s", tt.method, tt.path, tt.body, code, body, tt.wantCode, tt.wantBody)
		}
		if code >= 400 && h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", tt.method, tt.path, h.Get("Content-Type"))
		}
	}
	// Still serving.
	if code, body, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 || body != "a1" {
		t.Errorf("GET a after bad requests: %d %s", code, body)
	}
	_, body, _ := d.do("GET", "/v1/hosts", "", nil)
	var hosts []map[string]any
	if err := json.Unmarshal([]byte(body), &hosts); err != nil || len(hosts) != 1 || hosts[0]["host"] != "web-1" || hosts[0]["applied"] != 1.0 {
		t.Errorf("GET /v1/hosts: %s", body)
	}
}

func TestHealthzBeforeFirstCommit(t *testing.T) {
	r := newTestRepo(t)
	td := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 20 * time.Millisecond})
	td.waitFor("a 503", func() bool {
		code, body, _ := td.do("GET", "/healthz", "", nil)
		return code == 503 && body == `{"error":"branch \"master\": no commits yet"}`+"\n"
	})
	r.commit("materialized_configs/a.json", "a1")
	td.waitFor("healthz ok", func() bool { code, _, _ := td.do("GET", "/healthz", "", nil); return code == 200 })
	if got := td.latest(); got != 1 {
		t.Errorf("latest = %d, want 1", got)
	}
}

func TestNewErrors(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{RepoPath: r.dir, Token: token}, "no data directory"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || err.Error() != tt.wantErr {
			t.Errorf("New(%+v): %v, want %s", tt.cfg, err, tt.wantErr)
		}
	}
	if _, err := New(Config{RepoPath: t.TempDir(), DataDir: t.TempDir(), Token: token}); err == nil || !strings.Contains(err.Error(), "not in a git repository") {
		t.Errorf("New on a directory outside git: %v", err)
	}
	data := t.TempDir()
	d := startDaemon(t, r.dir, data)
	if _, err := New(Config{RepoPath: r.dir, DataDir: data, Token: token}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("New on a data directory in use: %v", err)
	}
	d.stop()
}

func grep(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestNotify checks that the tailer notices a commit through file system
// notifications alone (the poll interval is an hour).
func TestNotify(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	td := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: time.Hour})
	td.waitFor("revision 1", func() bool { return td.latest() == 1 })
	w := td.watch("configs=a&from=1")
	r.commit("materialized_configs/a.json", "a2")
	w.expect("update 2 a@2=a2")
}

// TestBadNames checks that files whose config names break the rule
// (repo.CheckName), committed with git (go-git refuses such paths), are
// left out and everything else is published.
func TestBadNames(t *testing.T) {
	r := newTestRepo(t)
	gitCommit := func(pairs ...string) {
		t.Helper()
		for i := 0; i < len(pairs); i += 2 {
			name := filepath.Join(r.dir, filepath.FromSlash(pairs[i]))
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(pairs[i+1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		gitCommand(t, r.dir, "add", "-A")
		gitCommand(t, r.dir, "commit", "-q", "-m", "x")
	}
	gitCommit(
		"materialized_configs/new\nline.json", "n1",
		"materialized_configs/tab\tbed.json", "t1",
		"materialized_configs/a,b.json", "c1",
		"materialized_configs/ok.json", "ok1",
	)
	d := startDaemon(t, r.dir, t.TempDir())
	all := d.watch("configs=*&from=0")
	all.expect("update 1 ok@1=ok1")
	gitCommit("materialized_configs/new\nline.json", "n2", "materialized_configs/ok.json", "ok2")
	gitCommit("materialized_configs/tab\tbed.json", "t3")
	gitCommit("materialized_configs/ok.json", "ok4")
	all.expect("update 2 ok@2=ok2", "update 3 ok@3=ok4")
}

// TestRawJSONConfig checks that a raw config whose name ends in ".json" is
// distributed under its own name, not as a compiled config without the
// extension: the compile's record of types (repo.TypesFile) tells which
// ".json" files are compiled configs. A deletion is named as the store
// holds the config. A commit without the record keeps reading every
// ".json" file as a compiled config.
func TestRawJSONConfig(t *testing.T) {
	r := newTestRepo(t)
	r.commit(
		"materialized_configs/.types.json", `{"feed/job": "Job"}`,
		"materialized_configs/feed/job.json", `{"a":1}`,
		"materialized_configs/data/list.json", `[1]`,
	)
	d := startDaemon(t, r.dir, t.TempDir())
	all := d.watch("configs=*&from=0")
	all.expect("update 1 data/list.json@1=[1] feed/job@1={\"a\":1}")
	for name, want := range map[string]int{"data/list.json": 200, "data/list": 404, "feed/job": 200} {
		if code, body, _ := d.do("GET", "/v1/configs/"+name, "", nil); code != want {
			t.Errorf("GET %s: %d %s, want %d", name, code, body, want)
		}
	}
	if _, _, h := d.do("GET", "/v1/configs/feed/job", "", nil); h.Get("Cfg-Type") != "Job" {
		t.Errorf("GET feed/job: Cfg-Type %q, want Job", h.Get("Cfg-Type"))
	}

	r.commit("materialized_configs/data/list.json", `[2]`)
	r.commit("materialized_configs/data/list.json", "")
	r.commit("materialized_configs/.types.json", `{}`, "materialized_configs/feed/job.json", "")
	all.expect("update 2 data/list.json@2=[2]", "update 3 data/list.json@3=-", "update 4 feed/job@4=-")

	// Without the record, a ".json" file is a compiled config.
	r.commit("materialized_configs/.types.json", "", "materialized_configs/old.json", `{}`)
	all.expect("update 5 old@5={}")
}

// TestTypesFollowTheRecord checks that every revision gives a compiled
// config the type the record of its own commit holds, whether the commit
// changed the record or not: the tailer reads the record again only when
// its file changed.
func TestTypesFollowTheRecord(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/.types.json", `{"a": "A"}`, "materialized_configs/a.json", `1`)
	d := startDaemon(t, r.dir, t.TempDir())
	all := d.watch("configs=a&from=0")
	all.expect("update 1 a@1=1")
	steps := []struct {
		files    []string
		event    string
		wantType string
	}{
		{[]string{"materialized_configs/a.json", `2`}, "update 2 a@2=2", "A"},
		{[]string{"materialized_configs/.types.json", `{"a": "B"}`, "materialized_configs/a.json", `3`}, "update 3 a@3=3", "B"},
		{[]string{"materialized_configs/a.json", `4`}, "update 4 a@4=4", "B"},
	}
	for _, s := range steps {
		r.commit(s.files...)
		all.expect(s.event)
		if _, _, h := d.do("GET", "/v1/configs/a", "", nil); h.Get("Cfg-Type") != s.wantType {
			t.Errorf("after %s: Cfg-Type %q, want %q", s.event, h.Get("Cfg-Type"), s.wantType)
		}
	}
}

// TestBigRevisionFromTheStore checks the revisions whose configs the hub
// does not hold (more than hubBytes of data): every stream still gets
// exactly the configs it watches, read from the store, and the revisions
// after them as before.
func TestBigRevisionFromTheStore(t *testing.T) {
	const n, size = 5, 1 << 20
	if n*size <= hubBytes {
		t.Fatalf("%d configs of %d bytes do not make a revision the hub leaves in the store", n, size)
	}
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `"a1"`)
	d := startDaemon(t, r.dir, t.TempDir())
	all := d.watch("configs=*")
	all.expect(`snapshot 1 a@1="a1"`)
	one := d.watch("configs=big2,nope")
	one.expect("snapshot 1")
	small := d.watch("configs=a")
	small.expect(`snapshot 1 a@1="a1"`)

	var files []string
	want := map[string]string{"a": `"a2"`}
	for i := range n {
		name := fmt.Sprintf("big%d", i)
		data := `"` + strings.Repeat(string(rune('a'+i)), size) + `"`
		files = append(files, "materialized_configs/"+name+".json", data)
		want[name] = data
	}
	r.commit(append(files, "materialized_configs/a.json", `"a2"`)...)
	check := func(w *watcher, names ...string) {
		t.Helper()
		e := w.next()
		var got []string
		for _, c := range e.Configs {
			got = append(got, c.Name)
			if c.Revision != 2 || string(c.Data) != want[c.Name] {
				t.Errorf("%s: revision %d, %d bytes of data; want revision 2 and %d bytes", c.Name, c.Revision, len(c.Data), len(want[c.Name]))
			}
		}
		if e.Type != "update" || e.Revision != 2 || !slices.Equal(got, names) {
			t.Errorf("got %s %d of %q, want update 2 of %q", e.Type, e.Revision, got, names)
		}
	}
	check(all, "a", "big0", "big1", "big2", "big3", "big4")
	check(one, "big2")
	check(small, "a")

	r.commit("materialized_configs/big2.json", `"small"`)
	all.expect(`update 3 big2@3="small"`)
	one.expect(`update 3 big2@3="small"`)
	r.commit("materialized_configs/a.json", `"a3"`)
	small.expect(`update 4 a@4="a3"`)
}

// TestDamagedObject: a commit whose loose object's file holds another
// object is not published: /healthz fails naming the object, nothing of
// the commit is served, and once the file is mended the commit is
// published with the right data.
func TestDamagedObject(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"v":1}`)
	r.commit("materialized_configs/a.json", `{"v":2}`, "materialized_configs/b.json", `{"v":3}`)
	loose := func(data string) (string, string) {
		h := plumbing.ComputeHash(plumbing.BlobObject, []byte(data)).String()
		return h, filepath.Join(r.dir, ".git", "objects", h[:2], h[2:])
	}
	hash, file := loose(`{"v":2}`)
	_, other := loose(`{"v":3}`)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	if err := os.WriteFile(file, wrong, 0o644); err != nil {
		t.Fatal(err)
	}
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 20 * time.Millisecond})
	d.waitFor("a 503 naming the damaged object", func() bool {
		code, body, _ := d.do("GET", "/healthz", "", nil)
		return code == 503 && strings.Contains(body, hash)
	})
	if got := d.latest(); got != 0 {
		t.Fatalf("latest revision %d with the head's object damaged, want none", got)
	}
	if err := os.WriteFile(file, good, 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	if code, body, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 || body != `{"v":2}` {
		t.Errorf("GET a: %d %s, want 200 {\"v\":2}", code, body)
	}
}

// TestNotifyLinkedWorkTree checks that a daemon tailing a linked work tree
// (git worktree add), whose branch heads live in the main repository's git
// directory, notices a commit through file system notifications alone.
func TestNotifyLinkedWorkTree(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	linked := filepath.Join(t.TempDir(), "live")
	gitCommand(t, r.dir, "worktree", "add", "-q", "-b", "live", linked)
	td := serve(t, Config{RepoPath: linked, DataDir: t.TempDir(), Token: token, Poll: time.Hour})
	td.waitFor("revision 1", func() bool { return td.latest() == 1 })
	w := td.watch("configs=a&from=1")
	if err := os.WriteFile(filepath.Join(linked, "materialized_configs", "a.json"), []byte("a2"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCommand(t, linked, "commit", "-q", "-am", "a2")
	w.expect("update 2 a@2=a2")
}

// TestNotifyPackedRefs checks that the tailer notices a branch moved in
// packed-refs alone (as git pack-refs leaves heads, and as a rewrite of
// that file moves them) through file system notifications.
func TestNotifyPackedRefs(t *testing.T) {
	r := newTestRepo(t)
	c1 := r.commit("materialized_configs/a.json", "a1")
	c2 := r.commit("materialized_configs/a.json", "a2")
	r.reset(c1)
	gitCommand(t, r.dir, "pack-refs", "--all")
	td := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: time.Hour})
	td.waitFor("revision 1", func() bool { return td.latest() == 1 })
	w := td.watch("configs=a&from=1")
	// Moved as git moves a packed head: the file written whole to its
	// lock file, renamed over it.
	packed := filepath.Join(r.dir, ".git", "packed-refs")
	data, err := os.ReadFile(packed)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(data), c1+" refs/heads/master", c2+" refs/heads/master", 1)
	if moved == string(data) {
		t.Fatalf("packed-refs holds no master at %s:\n%s", c1, data)
	}
	if err := os.WriteFile(packed+".lock", []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(packed+".lock", packed); err != nil {
		t.Fatal(err)
	}
	w.expect("update 2 a@2=a2")
}
