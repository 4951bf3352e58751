// Package agenttest is an in-memory distribution daemon for tests of the
// agent, the client library and applications: a real HTTP server on
// 127.0.0.1 implementing the endpoints of docs/api.md that agents use
// (GET /v1/configs/{name}, the NDJSON watch, GET or POST, with snapshot,
// update and heartbeat events, POST /v1/hosts/{host}, GET /healthz), over a Repo of
// revisions that several daemons may share, with knobs to stop, restart
// and stall a daemon.
package agenttest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/wire"
)

// Change is one config changed by a published revision.
type Change struct {
	Name    string
	Type    string // Thrift type; empty for a raw config
	Data    []byte
	Deleted bool
}

// Repo is a sequence of published revisions, safe for concurrent use.
type Repo struct {
	mu      sync.Mutex
	revs    []revision // revs[i] is revision i+1
	changed chan struct{}
}

type revision struct {
	commit  string
	configs []wire.Config
}

// NewRepo returns an empty Repo (latest revision 0).
func NewRepo() *Repo { return &Repo{changed: make(chan struct{})} }

// Commit returns the commit the Repo gives revision rev.
func Commit(rev int64) string { return fmt.Sprintf("%040x", rev*0x9e3779b1) }

// Publish adds a revision holding changes and returns its number.
func (r *Repo) Publish(changes ...Change) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev := int64(len(r.revs) + 1)
	var cs []wire.Config
	for _, c := range changes {
		wc := wire.Config{Name: c.Name, Revision: rev, Commit: Commit(rev), Type: c.Type, Deleted: c.Deleted}
		if !c.Deleted {
			wc.Data = slices.Clone(c.Data)
			if wc.Data == nil {
				wc.Data = []byte{}
			}
			wc.Type = c.Type
		}
		cs = append(cs, wc)
	}
	r.revs = append(r.revs, revision{commit: Commit(rev), configs: cs})
	close(r.changed)
	r.changed = make(chan struct{})
	return rev
}

// Latest returns the latest revision.
func (r *Repo) Latest() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.revs))
}

// current returns the config as of the latest revision.
func (r *Repo) current(name string) (wire.Config, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.currentLocked(name)
}

func (r *Repo) currentLocked(name string) (wire.Config, bool) {
	for i := len(r.revs) - 1; i >= 0; i-- {
		for _, c := range r.revs[i].configs {
			if c.Name == name {
				return c, !c.Deleted
			}
		}
	}
	return wire.Config{}, false
}

// Report is one POST /v1/hosts/{host} a daemon received.
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

// Daemon is one test daemon serving a Repo.
type Daemon struct {
	Repo *Repo
	// URL is the daemon's base URL; it stays the same across Stop and Start.
	URL string
	// Token is the token POST requests must bear; empty accepts any.
	Token string

	mu        sync.Mutex
	addr      string
	srv       *http.Server
	heartbeat time.Duration
	stalled   bool
	watches   []WatchRequest
	reports   []Report
	gets      []string
}

// NewDaemon starts a daemon for repo on 127.0.0.1 that sends a heartbeat
// every heartbeat. It stops when tb's test ends.
func NewDaemon(tb testing.TB, repo *Repo, heartbeat time.Duration) *Daemon {
	tb.Helper()
	d, err := Listen(repo, heartbeat)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Stop)
	return d
}

// Listen starts a daemon for repo on 127.0.0.1 that sends a heartbeat
// every heartbeat, for use outside tests (examples); call Stop when done.
func Listen(repo *Repo, heartbeat time.Duration) (*Daemon, error) {
	d := &Daemon{Repo: repo, heartbeat: heartbeat}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.addr = ln.Addr().String()
	d.URL = "http://" + d.addr
	d.serve(ln)
	return d, nil
}

func (d *Daemon) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/configs/{name...}", d.getConfig)
	mux.HandleFunc("GET /v1/watch", d.watch)
	mux.HandleFunc("POST /v1/watch", d.watch)
	mux.HandleFunc("POST /v1/hosts/{host}", d.postHost)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux}
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	go srv.Serve(ln)
}

// Stop closes the daemon's listener and every connection: clients get
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

// Start starts a stopped daemon again on the same address.
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

// SetStalled makes the daemon's watch streams fall silent (no updates, no
// heartbeats) while their connections stay open, or speak again.
func (d *Daemon) SetStalled(stalled bool) {
	d.mu.Lock()
	d.stalled = stalled
	d.mu.Unlock()
}

func (d *Daemon) isStalled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stalled
}

// Watches returns the watch requests received so far.
func (d *Daemon) Watches() []WatchRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.watches)
}

// Reports returns the host reports received so far.
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

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.Error{Error: fmt.Sprintf(format, args...)})
}

func (d *Daemon) getConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d.mu.Lock()
	d.gets = append(d.gets, name)
	d.mu.Unlock()
	latest := d.Repo.Latest()
	c, ok := d.Repo.current(name)
	h := w.Header()
	h.Set(wire.HeaderLatestRevision, strconv.FormatInt(latest, 10))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown config %q", name)
		return
	}
	h.Set(wire.HeaderRevision, strconv.FormatInt(c.Revision, 10))
	h.Set(wire.HeaderCommit, Commit(c.Revision))
	h.Set(wire.HeaderType, c.Type)
	if c.Type != "" || !strings.Contains(path.Base(c.Name), ".") {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	w.Write(c.Data)
}

func (d *Daemon) postHost(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if d.Token != "" && auth != "Bearer "+d.Token {
		writeError(w, http.StatusUnauthorized, "missing or wrong token")
		return
	}
	var rep wire.HostReport
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "malformed report: %v", err)
		return
	}
	d.mu.Lock()
	d.reports = append(d.reports, Report{Host: r.PathValue("host"), Authorization: auth, HostReport: rep})
	d.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// watchParams reads the parameters of a watch: the query of a GET, the
// JSON body of a POST.
func watchParams(r *http.Request) (wire.WatchRequest, error) {
	if r.Method == http.MethodPost {
		var req wire.WatchRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return req, fmt.Errorf("decoding watch request: %v", err)
		}
		return req, nil
	}
	q := r.URL.Query()
	req := wire.WatchRequest{Host: q.Get("host")}
	if s := q.Get("configs"); s != "" {
		req.Configs = strings.Split(s, ",")
	}
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return req, fmt.Errorf("bad from %q", s)
		}
		req.From = &n
	}
	return req, nil
}

func (d *Daemon) watch(w http.ResponseWriter, r *http.Request) {
	req, err := watchParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if len(req.Configs) == 0 {
		writeError(w, http.StatusBadRequest, "missing configs")
		return
	}
	names := req.Configs
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	want := func(name string) bool { return set["*"] || set[name] }
	from := int64(-1)
	if req.From != nil {
		if *req.From < 0 || *req.From > d.Repo.Latest() {
			writeError(w, http.StatusBadRequest, "bad from %d", *req.From)
			return
		}
		from = *req.From
	}
	d.mu.Lock()
	d.watches = append(d.watches, WatchRequest{Configs: names, From: from, At: time.Now()})
	heartbeat := d.heartbeat
	d.mu.Unlock()

	events := wire.NewEventWriter(w, 0)
	if events.WriteHeader("") != nil {
		return
	}
	send := events.Write

	repo := d.Repo
	pos := from
	if from < 0 {
		repo.mu.Lock()
		pos = int64(len(repo.revs))
		ev := wire.Event{Type: wire.Snapshot, Revision: pos, Configs: []wire.Config{}}
		if pos > 0 {
			ev.Commit = repo.revs[pos-1].commit
		}
		seen := map[string]bool{}
		for i := len(repo.revs) - 1; i >= 0; i-- {
			for _, c := range repo.revs[i].configs {
				if !seen[c.Name] && want(c.Name) {
					seen[c.Name] = true
					if !c.Deleted {
						ev.Configs = append(ev.Configs, c)
					}
				}
			}
		}
		repo.mu.Unlock()
		if send(ev) != nil {
			return
		}
	}
	caughtUp := false

	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		if d.isStalled() {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
				continue
			}
		}
		repo.mu.Lock()
		var pending []wire.Event
		for ; pos < int64(len(repo.revs)); pos++ {
			rv := repo.revs[pos]
			ev := wire.Event{Type: wire.Update, Revision: pos + 1, Commit: rv.commit}
			for _, c := range rv.configs {
				if want(c.Name) {
					ev.Configs = append(ev.Configs, c)
				}
			}
			if len(ev.Configs) > 0 {
				pending = append(pending, ev)
			}
		}
		changed := repo.changed
		repo.mu.Unlock()
		for _, ev := range pending {
			if send(ev) != nil {
				return
			}
		}
		if !caughtUp {
			// As the real daemon does: a heartbeat once the snapshot
			// or the replay is sent.
			caughtUp = true
			if send(wire.Event{Type: wire.Heartbeat, Revision: pos}) != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
			if d.isStalled() {
				continue
			}
			if send(wire.Event{Type: wire.Heartbeat, Revision: pos}) != nil {
				return
			}
		}
	}
}
