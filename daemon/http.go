package daemon

import (
	"bytes"
	"context"
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
	// The endpoints that wait for the store do so while it is reachable
	// (reachable); a watch stream, for its opening reads only.
	mux.Handle("GET /v1/configs/{name...}", d.reachable(d.handleConfig))
	mux.HandleFunc("GET /v1/watch", d.handleWatch)
	mux.HandleFunc("POST /v1/watch", d.handleWatch)
	mux.Handle("GET /v1/revisions/latest", d.reachable(d.handleLatestRevision))
	mux.Handle("GET /v1/revisions/{n}", d.reachable(d.handleRevision))
	mux.Handle("POST /v1/hosts/{host}", d.authorized(http.HandlerFunc(d.handleHostReport)))
	mux.Handle("GET /v1/hosts", d.reachable(d.handleHosts))
	mux.Handle("PUT /v1/overrides/{id}", d.authorized(d.reachable(d.handlePutOverride)))
	mux.Handle("POST /v1/overrides/{id}/renew", d.authorized(d.reachable(d.handleRenewOverride)))
	mux.Handle("DELETE /v1/overrides/{id}", d.authorized(d.reachable(d.handleDeleteOverride)))
	mux.HandleFunc("GET /v1/overrides", d.handleOverrides)
	mux.HandleFunc("GET /v1/overrides/{id}", d.handleOverride)
	mux.Handle("PUT /v1/canaries/{id}", d.authorized(d.reachable(d.handlePutRun)))
	mux.Handle("GET /v1/canaries", d.reachable(d.handleRuns))
	mux.HandleFunc("GET /healthz", d.handleHealthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	id := d.store.Identity()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every response says which store its revisions are of, and the
		// latest of them.
		h := w.Header()
		h.Set(wire.HeaderStore, id)
		h.Set(wire.HeaderLatestRevision, strconv.FormatInt(d.nameLatest(0), 10))
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
		// Counted also when a watch stream is cut (http.ErrAbortHandler).
		defer func() { d.metrics.requests.WithLabelValues(strconv.Itoa(sw.status()), r.Pattern).Inc() }()
		mux.ServeHTTP(sw, r)
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

// reachable runs h with its reads of the store cut short once the daemon
// finds that it cannot reach a shared store (whileReachable), which
// storeError answers.
func (d *Daemon) reachable(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.whileReachable(r.Context(), func(ctx context.Context) error {
			h(w, r.WithContext(ctx))
			return nil
		})
	})
}

// storeError answers with the status for a store error.
func (d *Daemon) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if u, ok := errors.AsType[*unreachableError](context.Cause(r.Context())); ok {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
		writeError(w, http.StatusServiceUnavailable, "%v", u)
		return
	}
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
	h.Set(wire.HeaderLatestRevision, strconv.FormatInt(d.nameLatest(c.Revision), 10))
	h.Set(wire.HeaderCommit, c.Commit)
	h.Set(wire.HeaderType, c.Type)
	if c.Compiled {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Length", strconv.Itoa(len(c.Data)))
	// A piece at a time, from the copy that every reader of this version
	// shares (package store).
	newClientWriter(w, d.cfg.WriteTimeout).write(c.Data)
}

func (d *Daemon) handleLatestRevision(w http.ResponseWriter, r *http.Request) {
	rev, err := d.store.Latest(r.Context())
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	w.Header().Set(wire.HeaderLatestRevision, strconv.FormatInt(d.nameLatest(rev.Number), 10))
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
		writeError(w, http.StatusNotFound, "no revision %d: the latest is %d", n, d.nameLatest(0))
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
	info := wire.Revision{Number: rev.Number, Commit: rev.Commit, Time: rev.Time, Configs: make([]string, 0, rev.Configs)}
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
	list, err := d.hostList(r.Context())
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	hosts := []wire.Host{}
	for _, h := range list {
		hosts = append(hosts, wireHost(h))
	}
	writeJSON(w, hosts)
}

func (d *Daemon) handleHealthz(w http.ResponseWriter, r *http.Request) {
	status := "ok\n"
	if c := d.cluster; c != nil {
		// Reading who publishes checks that the store answers.
		if !c.following.Load() {
			writeError(w, http.StatusServiceUnavailable, "%s", c.reason.Load())
			return
		}
		leader, err := d.leader(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "%s", electionFailed(err))
			return
		}
		switch {
		case c.leading.Load():
			status = fmt.Sprintf("ok: publishing as %s\n", d.cfg.Member)
		case leader == "":
			status = "ok: following the store; no daemon publishes now\n"
		default:
			status = fmt.Sprintf("ok: following the store, published by %s\n", leader)
		}
	}
	if d.publishing() && !d.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "%s", d.reason.Load())
		return
	}
	if n := d.store.DamagedReads(); n > 0 {
		writeError(w, http.StatusServiceUnavailable, "store damaged: %d reads failed their checks; restart the daemon to check the whole store", n)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, status)
}

// handleWatch streams the events of docs/api.md: a snapshot (without
// from) or a replay of the revisions after from, then live updates and
// heartbeats, until the client goes away, the daemon shuts down or the
// stream falls more than WatchBuffer revisions behind.
func (d *Daemon) handleWatch(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "watch request: body over %d bytes", MaxBody)
		return
	}
	// Over the caps, a client is told to come back later; its body is
	// read only once it holds a place.
	release, reason, msg := d.watches.acquire(r.RemoteAddr, watchSize(r))
	if release == nil {
		d.metrics.rejected.WithLabelValues(reason).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
		if r.ContentLength != 0 {
			// Its body is left unread, and so is the connection: net/http
			// would otherwise read up to 256 KiB of the body, waiting for
			// it, before answering.
			w.Header().Set("Connection", "close")
		}
		writeError(w, http.StatusServiceUnavailable, "%s", msg)
		return
	}
	// end gives back what the watch holds: when the handler returns, or,
	// for a stream that took its connection over, when the stream ends.
	end := release
	handedOff := false
	defer func() {
		if !handedOff {
			end()
		}
	}()
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
	d.metrics.watchers.Inc()
	ws := &watchStream{d: d, sub: sub, sel: sel, match: match, host: host, from: from, remote: r.RemoteAddr, url: r.URL.String()}
	end = func() {
		d.hub.unsubscribe(sub)
		release()
		d.metrics.watchers.Dec()
	}
	var latest store.Revision
	err := d.whileReachable(r.Context(), func(ctx context.Context) (err error) {
		if latest, err = d.store.Latest(ctx); err != nil {
			d.storeError(w, r.WithContext(ctx), err)
		}
		return err
	})
	if err != nil {
		return
	}
	// The latest revision this answer is about, which from is compared
	// with (the tailer may not have counted it yet).
	w.Header().Set(wire.HeaderLatestRevision, strconv.FormatInt(d.nameLatest(latest.Number), 10))
	if from > latest.Number {
		writeError(w, http.StatusBadRequest, "from: revision %d is beyond the latest revision %d", from, latest.Number)
		return
	}
	ws.latest = latest.Number

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return // the headers of a stream, and no stream
	}
	ws.cw = newClientWriter(w, d.cfg.WriteTimeout)
	ws.cw.sent = d.metrics.eventsSent.Inc
	taken, err := ws.cw.takeOver(r)
	if err != nil {
		ws.cw.close(false)
		ws.writeFailed(err)
		return
	}
	if !taken {
		// Written through the ResponseWriter, the stream ends with the
		// request. net/http reads the connection to notice the client
		// leaving, which ends the request's context: that read has no
		// deadline (ReadTimeout would end the stream).
		defer ws.cw.end()
		ws.cw.rc.SetReadDeadline(time.Time{})
		w.WriteHeader(http.StatusOK)
		if err := ws.cw.flush(); err != nil {
			ws.writeFailed(err)
			return
		}
		if err := ws.run(r.Context()); err != nil {
			// Cut in the middle of an event (a write failed, the store
			// failed a read, the daemon is shutting down): the
			// connection is closed without the end of the chunked body,
			// so that the client cannot take the stream for whole.
			panic(http.ErrAbortHandler)
		}
		return
	}
	// A stream that took its connection over runs in a goroutine of its
	// own, and the request's ends, letting go of what net/http held for
	// it: the stream ends with the daemon's serving, or when its client
	// goes away.
	d.streamsMu.Lock()
	defer d.streamsMu.Unlock()
	if d.closing {
		ws.cw.close(true)
		return
	}
	handedOff = true
	d.streams.Add(1)
	ctx, cancel := context.WithCancel(serveContext(r.Context(), d.ctx))
	go ws.cw.watchClient(cancel)
	go func() {
		defer d.streams.Done()
		defer end()
		defer cancel()
		err := ws.run(ctx)
		// Cut in the middle of an event, the stream ends without the end
		// of its chunked body.
		ws.cw.close(err == nil)
		ws.cw.end()
	}()
}

// watchStream is a watch stream once the request is checked and the
// stream subscribed.
type watchStream struct {
	d      *Daemon
	cw     *clientWriter
	sub    *subscription
	sel    store.Selection
	match  store.Match
	host   string
	from   int64 // -1 for a snapshot
	latest int64 // the latest revision when the stream was opened
	remote string
	url    string
}

// run writes the snapshot or the replay, then live updates and
// heartbeats, until ctx is done, the stream is dropped or a write or a
// read of the store fails. It returns nil if the stream ended between
// events (ctx done, the stream dropped or the hub closed), or else the
// error that cut it.
func (ws *watchStream) run(ctx context.Context) error {
	d, cw, sub, id := ws.d, ws.cw, ws.sub, ws.d.store.Identity()
	// The stream ends with ctx, even in the middle of a write.
	stop := context.AfterFunc(ctx, func() {
		d.hub.unsubscribe(sub)
		cw.abort()
	})
	defer stop()

	// last is the revision up to which the stream has told the client
	// everything it watches.
	last := ws.latest
	// readConfig writes a config read from the store, its data counted
	// as being written while it is.
	readConfig := func(c *store.ConfigVersion) error {
		n := int64(len(c.Data))
		d.writing.Add(n)
		err := cw.config(c)
		d.writing.Add(-n)
		return err
	}
	// ended reports why a stream ends on an error, the client's or the
	// store's, and returns it.
	ended := func(err error) error {
		if cw.err != nil {
			ws.writeFailed(cw.err)
			return cw.err
		}
		if _, ok := errors.AsType[*unreachableError](err); ok {
			d.metrics.dropped.WithLabelValues(dropUnreachable).Inc()
			return err
		}
		if ctx.Err() == nil && !errors.Is(err, store.ErrClosed) {
			d.log.Error("reading the store for a watch stream", "err", err, "url", ws.url, "remote", ws.remote)
		}
		return err
	}
	// The snapshot or the replay, cut short if the daemon finds that it
	// cannot reach its store meanwhile.
	if err := d.whileReachable(ctx, func(ctx context.Context) error { return ws.open(ctx, readConfig, &last) }); err != nil {
		return ended(err)
	}
	if err := cw.Heartbeat(last, id, d.unreachable()); err != nil {
		return ended(err)
	}
	// The overrides in effect for the host, sent at the start and again
	// whenever they change.
	var sentOverrides []byte
	sendOverrides := func() error {
		list := d.overrides.forHost(ws.host, ws.match)
		key := encodeLine(list)
		if sentOverrides != nil && bytes.Equal(key, sentOverrides) {
			return nil
		}
		sentOverrides = key
		return cw.event(wire.Event{Type: wire.Overrides, Revision: last, Store: id, Overrides: list})
	}
	if ws.host != "" {
		if err := sendOverrides(); err != nil {
			return ended(err)
		}
	}

	// Heartbeats: the hub wakes the stream once it has written nothing
	// for the heartbeat interval.
	d.hub.firstBeat(sub)
	told := cw.at // the last write the hub was told of
	for {
		<-sub.wake
		for more := true; more; {
			var b *broadcast
			var ok bool
			b, more, ok = d.hub.take(sub)
			if !ok {
				if d.hub.wasDropped(sub) {
					d.log.Info("closing a watch stream that fell behind", "remote", ws.remote, "revision", last)
				}
				return nil
			}
			var err error
			switch {
			case b == nil:
			case b.rev == nil:
				if ws.host != "" {
					err = sendOverrides()
				}
			case b.rev.Number <= last:
				// Already in the snapshot or the replay.
			case b.rev.Number != last+1:
				d.log.Error("watch stream out of order", "got", b.rev.Number, "want", last+1)
				return nil // the client resumes from last
			default:
				last = b.rev.Number
				d.writing.Add(b.size())
				err = d.writeUpdate(ctx, cw, id, b.rev, ws.sel, ws.match)
				d.writing.Add(-b.size())
			}
			if err != nil {
				return ended(err)
			}
		}
		if cw.at == told && d.hub.beatDue(sub, time.Now()) {
			if err := cw.Heartbeat(last, id, d.unreachable()); err != nil {
				return ended(err)
			}
		}
		if cw.at != told {
			told = cw.at
			sub.wrote(told)
		}
	}
}

// open writes the snapshot (without from) or the replay of the revisions
// after from of the configs the stream watches, read with readConfig, and
// sets *last to the revision up to which they tell everything.
func (ws *watchStream) open(ctx context.Context, readConfig func(*store.ConfigVersion) error, last *int64) error {
	if ws.from < 0 {
		return ws.snapshot(ctx, readConfig, last)
	}
	// The changes come in revision order: one update per revision.
	cw, id := ws.cw, ws.d.store.Identity()
	var open int64 // the revision of the update being written
	err := ws.d.store.Since(ctx, ws.from, ws.sel, func(c store.ConfigVersion) error {
		if c.Revision != open {
			if open != 0 {
				if err := cw.endUpdate(); err != nil {
					return err
				}
			}
			open = c.Revision
			*last = max(*last, c.Revision)
			cw.BeginUpdate(c.Revision, id, c.Commit)
		}
		return readConfig(&c)
	})
	if err == nil && open != 0 {
		err = cw.endUpdate()
	}
	if errors.Is(err, store.ErrCompacted) && open == 0 {
		// The history after from is compacted: the client gets the
		// snapshot it would get resynchronising, the whole truth
		// (docs/api.md), rather than an error to retry forever.
		err = ws.snapshot(ctx, readConfig, last)
	}
	return err
}

// snapshot writes the snapshot event of the configs the stream watches,
// read with readConfig, and sets *last to its revision.
func (ws *watchStream) snapshot(ctx context.Context, readConfig func(*store.ConfigVersion) error, last *int64) error {
	ws.cw.BeginSnapshot(ws.d.store.Identity())
	snap, err := ws.d.store.Snapshot(ctx, ws.sel, func(c store.ConfigVersion) error { return readConfig(&c) })
	if err == nil {
		err = ws.cw.endSnapshot(snap)
	}
	if err == nil {
		*last = snap.Number
	}
	return err
}

// writeFailed counts and logs a watch stream whose client took in nothing
// for the write timeout; other write errors are the client going away.
func (ws *watchStream) writeFailed(err error) {
	if ws.cw.timedOut(err) {
		ws.d.metrics.dropped.WithLabelValues(dropWriteTimeout).Inc()
		ws.d.log.Info("closing a watch stream whose client takes in nothing", "remote", ws.remote, "timeout", ws.d.cfg.WriteTimeout)
	}
}

// serveContextKey is the key of the context Serve serves with, in the
// contexts of its requests.
type serveContextKey struct{}

// serveContext returns the context Serve serves reqCtx's request with, or
// else def.
func serveContext(reqCtx, def context.Context) context.Context {
	if ctx, ok := reqCtx.Value(serveContextKey{}).(context.Context); ok {
		return ctx
	}
	return def
}
