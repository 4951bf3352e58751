package daemon

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// routes returns the HTTP API: the endpoints of docs/api.md, JSON errors
// for requests none of them takes, and request metrics.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/configs/{name...}", d.handleConfig)
	mux.HandleFunc("GET /v1/watch", d.handleWatch)
	mux.HandleFunc("POST /v1/watch", d.handleWatch)
	mux.HandleFunc("GET /v1/revisions/latest", d.handleLatestRevision)
	mux.HandleFunc("GET /v1/revisions/{n}", d.handleRevision)
	mux.Handle("POST /v1/hosts/{host}", d.authorized(http.HandlerFunc(d.handleHostReport)))
	mux.HandleFunc("GET /v1/hosts", d.handleHosts)
	mux.Handle("PUT /v1/overrides/{id}", d.authorized(http.HandlerFunc(d.handlePutOverride)))
	mux.Handle("POST /v1/overrides/{id}/renew", d.authorized(http.HandlerFunc(d.handleRenewOverride)))
	mux.Handle("DELETE /v1/overrides/{id}", d.authorized(http.HandlerFunc(d.handleDeleteOverride)))
	mux.HandleFunc("GET /v1/overrides", d.handleOverrides)
	mux.HandleFunc("GET /v1/overrides/{id}", d.handleOverride)
	mux.Handle("PUT /v1/canaries/{id}", d.authorized(http.HandlerFunc(d.handlePutRun)))
	mux.HandleFunc("GET /v1/canaries", d.handleRuns)
	mux.HandleFunc("GET /healthz", d.handleHealthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	id := d.store.Identity()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every response says which store its revisions are of, and the
		// latest of them.
		h := w.Header()
		h.Set(wire.HeaderStore, id)
		h.Set(wire.HeaderLatestRevision, strconv.FormatInt(d.latest.Load(), 10))
		sw := &statusWriter{ResponseWriter: w}
		if _, pattern := mux.Handler(r); pattern == "" {
			// No route: let the mux pick 404 or 405 (and Allow), and
			// answer in JSON.
			c := &codeOnly{header: w.Header()}
			mux.ServeHTTP(c, r)
			writeError(sw, c.code, "no endpoint %s %s", r.Method, r.URL.Path)
			d.metrics.requests.WithLabelValues(strconv.Itoa(sw.status()), "other").Inc()
			return
		}
		mux.ServeHTTP(sw, r)
		d.metrics.requests.WithLabelValues(strconv.Itoa(sw.status()), r.Pattern).Inc()
	})
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// codeOnly records the status code of a response and discards its body.
type codeOnly struct {
	header http.Header
	code   int
}

func (c *codeOnly) Header() http.Header         { return c.header }
func (c *codeOnly) Write(b []byte) (int, error) { return len(b), nil }
func (c *codeOnly) WriteHeader(code int)        { c.code = code }

// writeError answers with status code and {"error": message}.
func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.Error{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// storeError answers with the status for a store error.
func (d *Daemon) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrClosed) || r.Context().Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "daemon shutting down")
		return
	}
	d.log.Error("reading the store", "err", err, "url", r.URL.String())
	writeError(w, http.StatusInternalServerError, "reading the store: %v", err)
}

// authorized lets requests with the daemon's token through to h; a
// daemon without a token refuses them all (readOnly).
func (d *Daemon) authorized(h http.Handler) http.Handler {
	if d.cfg.Token == "" {
		return http.HandlerFunc(readOnly)
	}
	want := []byte("Bearer " + d.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got == "" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, "missing token: want Authorization: Bearer TOKEN")
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, "wrong token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (d *Daemon) handleConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := repo.CheckName(name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	c, err := d.store.Get(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "unknown config %q", name)
		return
	}
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set(wire.HeaderRevision, strconv.FormatInt(c.Revision, 10))
	h.Set(wire.HeaderLatestRevision, strconv.FormatInt(max(d.latest.Load(), c.Revision), 10))
	h.Set(wire.HeaderCommit, c.Commit)
	h.Set(wire.HeaderType, c.Type)
	if c.Compiled {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Length", strconv.Itoa(len(c.Data)))
	w.Write(c.Data)
}

// revisionInfo is the body of GET /v1/revisions/{n}.
type revisionInfo struct {
	Number  int64     `json:"revision"`
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Configs []string  `json:"configs"`
}

func (d *Daemon) handleLatestRevision(w http.ResponseWriter, r *http.Request) {
	rev, err := d.store.Latest(r.Context())
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	if rev.Number == 0 {
		writeError(w, http.StatusNotFound, "no revision published yet")
		return
	}
	d.writeRevision(w, r, rev)
}

func (d *Daemon) handleRevision(w http.ResponseWriter, r *http.Request) {
	s := r.PathValue("n")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, "revision: got %q, want a number from 1", s)
		return
	}
	rev, err := d.store.Revision(r.Context(), n)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no revision %d: the latest is %d", n, d.latest.Load())
		return
	}
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	d.writeRevision(w, r, rev)
}

// writeRevision answers with rev and the names of the configs it changed.
func (d *Daemon) writeRevision(w http.ResponseWriter, r *http.Request, rev store.Revision) {
	info := revisionInfo{Number: rev.Number, Commit: rev.Commit, Time: rev.Time, Configs: make([]string, 0, rev.Configs)}
	err := d.store.Changed(r.Context(), rev.Number, func(name string) error {
		info.Configs = append(info.Configs, name)
		return nil
	})
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	writeJSON(w, info)
}

func (d *Daemon) handleHostReport(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	if err := checkHostName(host); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var rep wire.HostReport
	if !readBody(w, r, "host report", &rep) {
		return
	}
	if err := checkHostReport(rep); err != nil {
		writeError(w, http.StatusBadRequest, "host report: %v", err)
		return
	}
	if rep.Labels == nil {
		rep.Labels = map[string]string{}
	}
	if rep.Configs == nil {
		rep.Configs = []string{}
	}
	d.hosts.report(store.Host{Name: host, Labels: rep.Labels, Configs: rep.Configs, Applied: rep.Applied, LastSeen: time.Now().UTC(),
		Metrics: rep.Metrics, Overrides: rep.Overrides})
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleHosts(w http.ResponseWriter, r *http.Request) {
	hosts := d.hosts.list()
	if hosts == nil {
		hosts = []store.Host{}
	}
	writeJSON(w, hosts)
}

func (d *Daemon) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if !d.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "%s", d.reason.Load())
		return
	}
	if n := d.store.DamagedReads(); n > 0 {
		writeError(w, http.StatusServiceUnavailable, "store damaged: %d reads failed their checks; restart the daemon to check the whole store", n)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// handleWatch streams the events of docs/api.md: a snapshot (without
// from) or a replay of the revisions after from, then live updates and
// heartbeats, until the client goes away, the daemon shuts down or the
// stream falls more than WatchBuffer revisions behind.
func (d *Daemon) handleWatch(w http.ResponseWriter, r *http.Request) {
	q, ok := watchParams(w, r)
	if !ok {
		return
	}
	list := q.Get("configs")
	if list == "" {
		writeError(w, http.StatusBadRequest, "missing configs: want configs=NAME[,NAME...] or configs=*")
		return
	}
	names := strings.Split(list, ",")
	for _, n := range names {
		if n == "*" {
			continue
		}
		if err := repo.CheckName(n); err != nil {
			writeError(w, http.StatusBadRequest, "configs: %v", err)
			return
		}
	}
	sel := store.Select(names...)
	match := sel.Match()
	host := q.Get("host")
	if host != "" {
		if err := checkHostName(host); err != nil {
			writeError(w, http.StatusBadRequest, "host: %v", err)
			return
		}
	}
	from := int64(-1)
	if q.Has("from") {
		s := q.Get("from")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "from: got %q, want a revision number", s)
			return
		}
		from = n
	}

	// Subscribe before reading the store, so that nothing published
	// from now on is missed.
	sub := d.hub.subscribe()
	if sub == nil {
		writeError(w, http.StatusServiceUnavailable, "daemon shutting down")
		return
	}
	defer d.hub.unsubscribe(sub)
	ctx := r.Context()
	latest, err := d.store.Latest(ctx)
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	// The latest revision this answer is about, which from is compared
	// with (the tailer may not have counted it yet).
	w.Header().Set(wire.HeaderLatestRevision, strconv.FormatInt(latest.Number, 10))
	if from > latest.Number {
		writeError(w, http.StatusBadRequest, "from: revision %d is beyond the latest revision %d", from, latest.Number)
		return
	}

	d.metrics.watchers.Inc()
	defer d.metrics.watchers.Dec()
	rc := http.NewResponseController(w)
	writeTimeout := max(10*time.Second, 2*d.cfg.Heartbeat)
	send := func(line []byte, counted bool) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(line); err != nil {
			return err
		}
		if counted {
			d.metrics.eventsSent.Inc()
		}
		return rc.Flush()
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)

	// last is the revision up to which the stream has told the client
	// everything it watches.
	last := latest.Number
	id := d.store.Identity()
	if from < 0 {
		configs := []wire.Config{}
		snap, err := d.store.Snapshot(ctx, sel, func(c store.ConfigVersion) error {
			configs = append(configs, eventConfig(c))
			return nil
		})
		if err != nil {
			d.streamError(r, err)
			return
		}
		last = snap.Number
		if err := send(encodeLine(wire.Event{Type: wire.Snapshot, Revision: last, Store: id, Commit: snap.Commit, Configs: configs}), true); err != nil {
			return
		}
	} else {
		// The changes come in revision order: one update per revision.
		var ev *wire.Event
		var sendErr error // the client's, not the store's
		flush := func() error {
			if ev == nil {
				return nil
			}
			line := encodeLine(ev)
			ev = nil
			sendErr = send(line, true)
			return sendErr
		}
		err := d.store.Since(ctx, from, sel, func(c store.ConfigVersion) error {
			if ev != nil && ev.Revision != c.Revision {
				if err := flush(); err != nil {
					return err
				}
			}
			if ev == nil {
				ev = &wire.Event{Type: wire.Update, Revision: c.Revision, Store: id, Commit: c.Commit}
				last = max(last, c.Revision)
			}
			ev.Configs = append(ev.Configs, eventConfig(c))
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			if sendErr == nil {
				d.streamError(r, err)
			}
			return
		}
	}
	if err := send(encodeLine(wire.Event{Type: wire.Heartbeat, Revision: last, Store: id}), false); err != nil {
		return
	}
	// The overrides in effect for the host, sent at the start and again
	// whenever they change.
	var sentOverrides []byte
	sendOverrides := func() error {
		list := d.overrides.forHost(host, match)
		key := encodeLine(list)
		if sentOverrides != nil && bytes.Equal(key, sentOverrides) {
			return nil
		}
		sentOverrides = key
		return send(encodeLine(wire.Event{Type: wire.Overrides, Revision: last, Store: id, Overrides: list}), true)
	}
	if host != "" {
		if err := sendOverrides(); err != nil {
			return
		}
	}

	beat := time.NewTicker(d.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b, ok := <-sub.ch:
			if !ok {
				if d.hub.wasDropped(sub) {
					d.log.Info("closing a watch stream that fell behind", "remote", r.RemoteAddr, "revision", last)
				}
				return
			}
			if b.rev == nil {
				if host != "" {
					if err := sendOverrides(); err != nil {
						return
					}
				}
				continue
			}
			if b.rev.Number <= last {
				continue // already in the snapshot or the replay
			}
			if b.rev.Number != last+1 {
				d.log.Error("watch stream out of order", "got", b.rev.Number, "want", last+1)
				return // the client resumes from last
			}
			last = b.rev.Number
			var line []byte
			if configs := filterConfigs(b.rev.configs, match); len(configs) == len(b.rev.configs) {
				line = b.fullLine()
			} else if configs != nil {
				line = encodeLine(updateEvent(id, b.rev.Revision, configs))
			}
			if line != nil {
				if err := send(line, true); err != nil {
					return
				}
			}
		case <-beat.C:
			if err := send(encodeLine(wire.Event{Type: wire.Heartbeat, Revision: last, Store: id}), false); err != nil {
				return
			}
		}
	}
}

// filterConfigs returns configs itself if m selects all of them, a copy
// holding those m selects, or nil if it selects none.
func filterConfigs(configs []store.ConfigVersion, m store.Match) []store.ConfigVersion {
	if m == nil {
		return configs
	}
	var out []store.ConfigVersion
	for _, c := range configs {
		if m(c.Name) {
			out = append(out, c)
		}
	}
	if len(out) == len(configs) {
		return configs
	}
	return out
}

// streamError logs why a watch stream ends on a store error, unless the
// client or the daemon ended it; the client resumes with from=.
func (d *Daemon) streamError(r *http.Request, err error) {
	if r.Context().Err() != nil || errors.Is(err, store.ErrClosed) {
		return
	}
	d.log.Error("reading the store for a watch stream", "err", err, "url", r.URL.String(), "remote", r.RemoteAddr)
}
