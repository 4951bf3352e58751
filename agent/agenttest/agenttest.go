// Package agenttest runs the distribution daemon for tests of the agent,
// the client library and applications: a Repo is a git repository in a
// temporary directory, published by a real daemon (package daemon, over a
// bbolt store of its own) on 127.0.0.1, and each Daemon is a front to it
// on an address of its own, an HTTP reverse proxy that records the
// requests agents make and can be stopped, started again on the same
// address, and stalled. The fronts of one Repo share its daemon and its
// store, as daemons an agent fails over between should.
package agenttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// Token is the write token of a Repo's daemon: agents report with it.
const Token = "tok"

// Change is one config changed by a published revision.
type Change struct {
	Name string
	// Type is the Thrift type of a compiled config, committed as
	// materialized_configs/NAME.json; empty for a raw config, committed
	// as materialized_configs/NAME.
	Type    string
	Data    []byte
	Deleted bool
}

// Repo is a config repository and the daemon that publishes it: each
// Publish is one commit, and one revision. It is safe for concurrent use.
type Repo struct {
	tb   testing.TB // nil outside tests: errors panic
	dir  string     // the git work tree
	data string     // the daemon's data directory

	mu      sync.Mutex
	git     *git.Repository
	when    time.Time
	types   map[string]string // the compiled configs' types
	paths   map[string]string // each config's committed path
	content map[string]string // each config's data
	commits []string          // commits[i] is revision i+1's

	// The daemon.
	d         *daemon.Daemon
	api       *wire.Client // the daemon's own listener
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	stop      context.CancelFunc
	served    chan struct{}
}

// NewRepo returns an empty repository (latest revision 0) in a temporary
// directory of tb, and starts its daemon, which sends a heartbeat on
// every watch stream every heartbeat; the daemon stops when tb's test
// ends.
func NewRepo(tb testing.TB, heartbeat time.Duration) *Repo {
	tb.Helper()
	r, err := OpenRepo(tb.TempDir(), heartbeat)
	if err != nil {
		tb.Fatal(err)
	}
	r.tb = tb
	tb.Cleanup(r.Close)
	return r
}

// OpenRepo makes an empty repository, and the daemon's store, in dir, and
// starts its daemon, which sends a heartbeat on every watch stream every
// heartbeat; for use outside tests (examples): call Close when done.
func OpenRepo(dir string, heartbeat time.Duration) (*Repo, error) {
	r := &Repo{dir: filepath.Join(dir, "repo"), data: filepath.Join(dir, "data"), when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		types: map[string]string{}, paths: map[string]string{}, content: map[string]string{}}
	g, err := git.PlainInit(r.dir, false)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	r.git = g
	if err := r.serve(heartbeat); err != nil {
		return nil, err
	}
	return r, nil
}

// fail reports err: a fatal error of the test, or a panic outside tests.
func (r *Repo) fail(err error) {
	if r.tb != nil {
		r.tb.Helper()
		r.tb.Fatal(err)
	}
	panic(err)
}

// Publish commits changes and returns the revision they make, once the
// daemon has published it. Changes that change no
// config (the data a config has, the deletion of one that does not exist)
// make no commit, as the daemon makes no revision of a commit that
// changes no config: Publish then returns the latest revision.
func (r *Repo) Publish(changes ...Change) int64 {
	if r.tb != nil {
		r.tb.Helper()
	}
	rev, err := r.commit(changes)
	if err == nil {
		err = r.waitPublished(rev)
	}
	if err != nil {
		r.fail(err)
	}
	return rev
}

func (r *Repo) commit(changes []Change) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, c := range changes {
		if err := repo.CheckName(c.Name); err != nil {
			return 0, err
		}
		old, ok := r.paths[c.Name]
		if c.Deleted && !ok || !c.Deleted && ok && r.types[c.Name] == c.Type && r.content[c.Name] == string(c.Data) {
			continue
		}
		changed = true
		if ok {
			if err := os.Remove(filepath.Join(r.dir, old)); err != nil {
				return 0, err
			}
			delete(r.paths, c.Name)
			delete(r.types, c.Name)
			delete(r.content, c.Name)
		}
		if c.Deleted {
			continue
		}
		p := repo.MaterializedDir + "/" + c.Name
		if c.Type != "" {
			p += ".json"
			r.types[c.Name] = c.Type
		}
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(full, c.Data, 0o644); err != nil {
			return 0, err
		}
		r.paths[c.Name] = p
		r.content[c.Name] = string(c.Data)
	}
	if !changed {
		return int64(len(r.commits)), nil
	}
	types := filepath.Join(r.dir, filepath.FromSlash(repo.TypesFile))
	if err := os.MkdirAll(filepath.Dir(types), 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(types, repo.EncodeTypes(r.types), 0o644); err != nil {
		return 0, err
	}
	wt, err := r.git.Worktree()
	if err != nil {
		return 0, err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return 0, fmt.Errorf("git add: %w", err)
	}
	r.when = r.when.Add(time.Minute)
	h, err := wt.Commit(fmt.Sprintf("revision %d", len(r.commits)+1), &git.CommitOptions{
		Author: &object.Signature{Name: "agenttest", Email: "agenttest@example.com", When: r.when}})
	if err != nil {
		return 0, fmt.Errorf("git commit: %w", err)
	}
	r.commits = append(r.commits, h.String())
	return int64(len(r.commits)), nil
}

// waitPublished waits until the daemon has published revision rev.
func (r *Repo) waitPublished(rev int64) error {
	r.mu.Lock()
	api := r.api
	r.mu.Unlock()
	if api == nil || rev == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		got, err := api.Revision(ctx, 0)
		if err == nil && got.Number >= rev {
			return nil
		}
		if err != nil && !errors.Is(err, wire.ErrNotFound) {
			return fmt.Errorf("waiting for the daemon to publish revision %d: %w", rev, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the daemon to publish revision %d: %w", rev, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Commit returns the git commit of revision rev.
func (r *Repo) Commit(rev int64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev < 1 || rev > int64(len(r.commits)) {
		return ""
	}
	return r.commits[rev-1]
}

// Latest returns the latest revision.
func (r *Repo) Latest() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.commits))
}

// serve starts the daemon, before the first commit: the daemon publishes
// each commit it tails as a revision, but a history it has not seen as
// one revision.
func (r *Repo) serve(heartbeat time.Duration) error {
	d, err := daemon.New(daemon.Config{RepoPath: r.dir, DataDir: r.data, Token: Token, Heartbeat: heartbeat, Poll: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.Close()
		return err
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	r.served = make(chan struct{})
	go func() {
		defer close(r.served)
		d.Serve(ctx, ln)
	}()
	r.transport = &http.Transport{MaxIdleConnsPerHost: 16}
	r.api, err = wire.NewClient(base, "", &http.Client{Transport: r.transport})
	if err != nil {
		cancel()
		d.Close()
		return err
	}
	u, _ := url.Parse(base)
	r.proxy = httputil.NewSingleHostReverseProxy(u)
	r.proxy.Transport = r.transport
	r.proxy.ErrorLog = log.New(io.Discard, "", 0)
	r.d, r.stop = d, cancel
	return nil
}

// Close stops the daemon.
func (r *Repo) Close() {
	r.mu.Lock()
	d := r.d
	r.d, r.api = nil, nil
	r.mu.Unlock()
	if d == nil {
		return
	}
	r.stop()
	<-r.served
	d.Close()
	r.transport.CloseIdleConnections()
}

// Report is one POST /v1/hosts/{host} a daemon accepted.
type Report struct {
	Host          string
	Authorization string
	wire.HostReport
}

// WatchRequest is one watch request a daemon received.
type WatchRequest struct {
	Configs []string
	From    int64     // -1 without from
	At      time.Time // when the daemon received it
}

// Daemon is a front of a Repo's daemon on an address of its own.
type Daemon struct {
	Repo *Repo
	// URL is the daemon's base URL; it stays the same across Stop and Start.
	URL string

	mu      sync.Mutex
	addr    string
	srv     *http.Server
	stalled chan struct{} // closed when the daemon speaks again; nil if it does
	watches []WatchRequest
	reports []Report
	gets    []string
}

// NewDaemon starts a front of repo's daemon on 127.0.0.1. It stops when
// tb's test ends.
func NewDaemon(tb testing.TB, repo *Repo) *Daemon {
	tb.Helper()
	d, err := Listen(repo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Stop)
	return d
}

// Listen starts a front of repo's daemon on 127.0.0.1, for use outside
// tests (examples): call Stop when done.
func Listen(repo *Repo) (*Daemon, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Repo: repo, addr: ln.Addr().String()}
	d.URL = "http://" + d.addr
	d.serve(ln)
	return d, nil
}

func (d *Daemon) serve(ln net.Listener) {
	srv := &http.Server{Handler: d, ErrorLog: log.New(io.Discard, "", 0)}
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	go srv.Serve(ln)
}

// Stop closes the front's listener and every connection: clients get
// connection errors until Start.
func (d *Daemon) Stop() {
	d.mu.Lock()
	srv := d.srv
	d.srv = nil
	d.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Start starts a stopped front again on the same address.
func (d *Daemon) Start(tb testing.TB) {
	tb.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if ln, err = net.Listen("tcp", d.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	d.serve(ln)
}

// SetStalled makes the front's watch streams fall silent (nothing of the
// daemon's updates and heartbeats reaches their clients) while their
// connections stay open, or speak again: a network that hangs. The
// daemon ends a stream stalled longer than its write timeout (10 s), as it
// ends any whose client takes in nothing.
func (d *Daemon) SetStalled(stalled bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case stalled && d.stalled == nil:
		d.stalled = make(chan struct{})
	case !stalled && d.stalled != nil:
		close(d.stalled)
		d.stalled = nil
	}
}

// waitSpeaking waits until the front is not stalled, or ctx is done.
func (d *Daemon) waitSpeaking(ctx context.Context) error {
	d.mu.Lock()
	stalled := d.stalled
	d.mu.Unlock()
	if stalled == nil {
		return nil
	}
	select {
	case <-stalled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Watches returns the watch requests received so far.
func (d *Daemon) Watches() []WatchRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.watches)
}

// Reports returns the host reports the daemon accepted so far.
func (d *Daemon) Reports() []Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reports)
}

// Gets returns the names of the configs read with GET so far.
func (d *Daemon) Gets() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.gets)
}

// ServeHTTP records the request and hands it to the daemon.
func (d *Daemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proxy := d.Repo.proxy
	switch {
	case r.URL.Path == "/v1/watch":
		wr, err := d.readWatch(r)
		if err == nil {
			d.mu.Lock()
			d.watches = append(d.watches, wr)
			d.mu.Unlock()
		}
		proxy.ServeHTTP(&stallWriter{ResponseWriter: w, d: d, ctx: r.Context()}, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/configs/"):
		d.mu.Lock()
		d.gets = append(d.gets, strings.TrimPrefix(r.URL.Path, "/v1/configs/"))
		d.mu.Unlock()
		proxy.ServeHTTP(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/hosts/"):
		body := readBody(r)
		sw := &statusWriter{ResponseWriter: w}
		proxy.ServeHTTP(sw, r)
		var rep wire.HostReport
		if sw.code/100 == 2 && json.Unmarshal(body, &rep) == nil {
			d.mu.Lock()
			d.reports = append(d.reports, Report{Host: strings.TrimPrefix(r.URL.Path, "/v1/hosts/"), Authorization: r.Header.Get("Authorization"), HostReport: rep})
			d.mu.Unlock()
		}
	default:
		proxy.ServeHTTP(w, r)
	}
}

// readBody reads r's body (up to the daemon's bound and one byte more)
// and puts it back for the daemon to read.
func readBody(r *http.Request) []byte {
	body, _ := io.ReadAll(io.LimitReader(r.Body, daemon.MaxBody+1))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body
}

// readWatch reads the parameters of a watch: the query of a GET, the JSON
// body of a POST.
func (d *Daemon) readWatch(r *http.Request) (WatchRequest, error) {
	wr := WatchRequest{From: -1, At: time.Now()}
	if r.Method == http.MethodPost {
		var req wire.WatchRequest
		if err := json.Unmarshal(readBody(r), &req); err != nil {
			return wr, err
		}
		wr.Configs = req.Configs
		if req.From != nil {
			wr.From = *req.From
		}
		return wr, nil
	}
	q := r.URL.Query()
	if s := q.Get("configs"); s != "" {
		wr.Configs = strings.Split(s, ",")
	}
	if q.Has("from") {
		n, err := strconv.ParseInt(q.Get("from"), 10, 64)
		if err != nil {
			return wr, err
		}
		wr.From = n
	}
	return wr, nil
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// stallWriter holds a watch stream's writes while its front is stalled.
type stallWriter struct {
	http.ResponseWriter
	d   *Daemon
	ctx context.Context
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if err := w.d.waitSpeaking(w.ctx); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(p)
}

func (w *stallWriter) FlushError() error {
	if err := w.d.waitSpeaking(w.ctx); err != nil {
		return err
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}
