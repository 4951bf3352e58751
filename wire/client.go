package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound is the error of an answer 404: no such config, override or
// run.
var ErrNotFound = errors.New("not found")

// Client is a client of a distribution daemon's API (docs/api.md), and of
// the part of it an agent serves locally: every caller in this module
// talks to the daemon through it.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the daemon at base (http://host:port),
// sending token with the requests that need it; hc nil is
// http.DefaultClient.
func NewClient(base, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("daemon URL %q: want http://host:port", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(base, "/"), token: token, hc: hc}, nil
}

// URL returns the daemon's URL.
func (c *Client) URL() string { return c.base }

// ConfigPath returns the path of GET /v1/configs/{name}, each element of
// name escaped.
func ConfigPath(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/configs/" + strings.Join(segs, "/")
}

// ConfigVersion is a config as GET /v1/configs/{name} answers it.
type ConfigVersion struct {
	Name     string
	Revision int64
	Commit   string
	Type     string
	// Compiled is set for a compiled (JSON) config: the answer's content
	// type is application/json.
	Compiled bool
	// Store and Latest are the daemon's store and latest revision.
	Store  string
	Latest int64
	Data   []byte
	// Override and OverrideVersion name the override an agent serves
	// instead of Revision's data (HeaderOverride), if any.
	Override        string
	OverrideVersion int64
}

// Config reads the current version of a config; ErrNotFound if there is
// none.
func (c *Client) Config(ctx context.Context, name string) (ConfigVersion, error) {
	resp, err := c.send(ctx, http.MethodGet, ConfigPath(name), nil)
	if err != nil {
		return ConfigVersion{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return ConfigVersion{}, fmt.Errorf("daemon %s: config %q: %w", c.base, name, err)
	}
	cv := ConfigVersion{Name: name, Commit: resp.Header.Get(HeaderCommit), Type: resp.Header.Get(HeaderType),
		Compiled: strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"),
		Store:    resp.Header.Get(HeaderStore), Data: data}
	if o := resp.Header.Get(HeaderOverride); o != "" {
		id, version, _ := strings.Cut(o, "/")
		cv.Override = id
		if cv.OverrideVersion, err = strconv.ParseInt(version, 10, 64); err != nil || id == "" {
			return ConfigVersion{}, fmt.Errorf("daemon %s: config %q: header %s: got %q, want ID/VERSION", c.base, name, HeaderOverride, o)
		}
	}
	if cv.Revision, err = intHeader(resp, HeaderRevision); err != nil {
		return ConfigVersion{}, fmt.Errorf("daemon %s: config %q: %w", c.base, name, err)
	}
	if cv.Latest, err = intHeader(resp, HeaderLatestRevision); err != nil {
		return ConfigVersion{}, fmt.Errorf("daemon %s: config %q: %w", c.base, name, err)
	}
	return cv, nil
}

func intHeader(resp *http.Response, h string) (int64, error) {
	n, err := strconv.ParseInt(resp.Header.Get(h), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("header %s: got %q, want a revision", h, resp.Header.Get(h))
	}
	return n, nil
}

// ErrIdle is the error of a watch stream that sent nothing for longer
// than its WatchOptions.Idle.
var ErrIdle = errors.New("watch stream silent")

// WatchOptions are how Watch asks for a stream and keeps it.
type WatchOptions struct {
	// GET asks with GET and a query string, for a peer that takes only
	// GET (an agent's local API). Otherwise Watch asks with POST
	// /v1/watch, the request in the body whatever its length, and again
	// with GET if the peer answers 405 (an earlier daemon).
	GET bool
	// Idle ends the stream when nothing comes from the peer for that
	// long, from the request on (0: never): the daemon and the agent
	// send heartbeats, so silence is a peer or a network that hangs.
	// Next then fails with an error wrapping ErrIdle.
	Idle time.Duration
}

// Watch opens a watch stream; the caller reads its events and closes it.
// An answer other than 200 is a *StatusError, which carries the peer's
// store and latest revision.
func (c *Client) Watch(ctx context.Context, req WatchRequest, opts WatchOptions) (*Watch, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Watch{cancel: cancel, Method: http.MethodPost}
	if opts.Idle > 0 {
		w.idle = opts.Idle
		w.timer = time.AfterFunc(opts.Idle, func() { cancel(fmt.Errorf("daemon %s: %w for %v", c.base, ErrIdle, opts.Idle)) })
	}
	fail := func(err error) (*Watch, error) {
		w.stop()
		if cause := context.Cause(ctx); errors.Is(cause, ErrIdle) {
			return nil, cause
		}
		return nil, err
	}
	var resp *http.Response
	var err error
	if !opts.GET {
		resp, err = c.send(ctx, http.MethodPost, "/v1/watch", req)
	}
	if se, ok := errors.AsType[*StatusError](err); opts.GET || ok && se.Code == http.StatusMethodNotAllowed {
		w.Method = http.MethodGet
		resp, err = c.send(ctx, http.MethodGet, "/v1/watch?"+watchQuery(req), nil)
	}
	if err != nil {
		return fail(err)
	}
	w.Store = resp.Header.Get(HeaderStore)
	w.Latest = optionalInt(resp, HeaderLatestRevision)
	w.body = resp.Body
	w.ctx = ctx
	w.EventReader = NewEventReader(w)
	if w.timer != nil {
		w.timer.Reset(w.idle)
	}
	return w, nil
}

// watchQuery is the query string of GET /v1/watch asking for req.
func watchQuery(req WatchRequest) string {
	q := "configs=" + url.QueryEscape(strings.Join(req.Configs, ","))
	if req.Host != "" {
		q += "&host=" + url.QueryEscape(req.Host)
	}
	if req.From != nil {
		q += "&from=" + strconv.FormatInt(*req.From, 10)
	}
	return q
}

// Watch is an open watch stream.
type Watch struct {
	// Store is the identity of the peer's store (HeaderStore), Latest its
	// latest revision when it answered (HeaderLatestRevision; -1 if it
	// did not say).
	Store  string
	Latest int64
	// Method is the method the stream was asked for with: GET after a
	// peer answered 405 to POST.
	Method string
	*EventReader
	ctx    context.Context
	body   io.ReadCloser
	cancel context.CancelCauseFunc
	timer  *time.Timer // ends the stream after idle without a byte
	idle   time.Duration
}

// Read reads the stream's body, each byte read putting off the idle
// timeout; once the stream was ended by it, it fails with its cause.
func (w *Watch) Read(p []byte) (int, error) {
	n, err := w.body.Read(p)
	if n > 0 && w.timer != nil {
		w.timer.Reset(w.idle)
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(w.ctx); errors.Is(cause, ErrIdle) {
			err = cause
		}
	}
	return n, err
}

func (w *Watch) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.cancel(nil)
}

// Close ends the stream.
func (w *Watch) Close() error {
	w.stop()
	return w.body.Close()
}

// optionalInt returns the revision in header h, or -1 if there is none.
func optionalInt(resp *http.Response, h string) int64 {
	n, err := strconv.ParseInt(resp.Header.Get(h), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// Revision returns published revision n, or the latest if n is 0;
// ErrNotFound if it is not published yet (for the latest: none is).
func (c *Client) Revision(ctx context.Context, n int64) (Revision, error) {
	p := "/v1/revisions/latest"
	if n != 0 {
		p = "/v1/revisions/" + strconv.FormatInt(n, 10)
	}
	var rev Revision
	return rev, c.do(ctx, http.MethodGet, p, nil, &rev)
}

// Hosts returns the hosts that report to the daemon, sorted by name.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	var hosts []Host
	return hosts, c.do(ctx, http.MethodGet, "/v1/hosts", nil, &hosts)
}

// ReportHost reports what an agent serves (POST /v1/hosts/{host}).
func (c *Client) ReportHost(ctx context.Context, host string, rep HostReport) error {
	return c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host), rep, nil)
}

// PutOverride sets an override and returns it as the daemon recorded it
// (with its version and expiry, without its data).
func (c *Client) PutOverride(ctx context.Context, o Override) (Override, error) {
	var got Override
	return got, c.do(ctx, http.MethodPut, "/v1/overrides/"+url.PathEscape(o.ID), o, &got)
}

// RenewOverride extends an override's lease; ErrNotFound once it ran out.
func (c *Client) RenewOverride(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/overrides/"+url.PathEscape(id)+"/renew", nil, nil)
}

// DeleteOverride removes an override; ErrNotFound if there is none.
func (c *Client) DeleteOverride(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/overrides/"+url.PathEscape(id), nil, nil)
}

// Overrides returns the overrides in effect.
func (c *Client) Overrides(ctx context.Context) ([]Override, error) {
	var out []Override
	return out, c.do(ctx, http.MethodGet, "/v1/overrides", nil, &out)
}

// PutRun records a canary run.
func (c *Client) PutRun(ctx context.Context, r Run) error {
	return c.do(ctx, http.MethodPut, "/v1/canaries/"+url.PathEscape(r.ID), r, nil)
}

// Runs returns the recorded canary runs, oldest first: those of config
// with status, where these are not empty.
func (c *Client) Runs(ctx context.Context, config, status string) ([]Run, error) {
	q := url.Values{}
	if config != "" {
		q.Set("config", config)
	}
	if status != "" {
		q.Set("status", status)
	}
	p := "/v1/canaries"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var runs []Run
	return runs, c.do(ctx, http.MethodGet, p, nil, &runs)
}

// Healthz asks the daemon whether it is ready (GET /healthz): nil if it
// answers 200, a *StatusError with its reason if it answers otherwise.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out, if out is not nil.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("daemon %s: %s %s: decoding the answer: %w", c.base, method, path, err)
	}
	return nil
}

// send sends a request with an optional JSON body, with the token if it
// writes (neither a GET nor a watch), and returns a 2xx answer; any
// other is a *StatusError.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet && path != "/v1/watch" && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("daemon %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, &StatusError{URL: c.base, Method: method, Path: path, Code: resp.StatusCode, Status: resp.Status, Msg: ErrorMessage(resp),
			Store: resp.Header.Get(HeaderStore), Latest: optionalInt(resp, HeaderLatestRevision)}
	}
	return resp, nil
}

// StatusError is an answer other than 2xx; one of 404 is ErrNotFound.
type StatusError struct {
	URL, Method, Path string
	Code              int
	Status            string // "404 Not Found"
	// Msg is the message of the answer's Error body (or its text).
	Msg string
	// Store and Latest are the peer's store and latest revision, as the
	// answer says (HeaderStore, HeaderLatestRevision); Latest is -1 if it
	// does not: a 404 for a config says as of which revision there is
	// none, a watch refused says which store the peer has.
	Store  string
	Latest int64
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("daemon %s: %s %s: %s: %s", e.URL, e.Method, e.Path, e.Status, e.Msg)
}

// Is makes a 404 ErrNotFound.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Code == http.StatusNotFound
}
