package canary

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

	"github.com/cfg-dev/cfg/wire"
)

// ErrNotFound is a daemon's 404.
var ErrNotFound = errors.New("not found")

// Daemon is a client of a distribution daemon's API (docs/api.md): what
// a canary reads and writes there.
type Daemon struct {
	URL   string // http://host:port
	Token string // the daemon's write token
	HTTP  *http.Client
}

// NewDaemon returns a client of the daemon at base.
func NewDaemon(base, token string) (*Daemon, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("daemon URL %q: want http://host:port", base)
	}
	return &Daemon{URL: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out, if out is not nil.
func (d *Daemon) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.URL+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet {
		req.Header.Set("Authorization", "Bearer "+d.Token)
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("daemon %s: %w", d.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("daemon %s: %s %s: %s: %s", d.URL, method, path, resp.Status, wire.ErrorMessage(resp))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("daemon %s: %s %s: decoding the answer: %w", d.URL, method, path, err)
	}
	return nil
}

// Hosts returns the hosts that report to the daemon.
func (d *Daemon) Hosts(ctx context.Context) ([]wire.Host, error) {
	var hosts []wire.Host
	return hosts, d.do(ctx, http.MethodGet, "/v1/hosts", nil, &hosts)
}

// Current returns the revision and commit of a config's current version
// (ErrNotFound if the daemon has none).
func (d *Daemon) Current(ctx context.Context, name string) (revision int64, commit string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/v1/configs/"+name, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("daemon %s: %w", d.URL, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return 0, "", fmt.Errorf("daemon %s: config %q: %w", d.URL, name, ErrNotFound)
	default:
		return 0, "", fmt.Errorf("daemon %s: config %q: %s", d.URL, name, resp.Status)
	}
	revision, err = strconv.ParseInt(resp.Header.Get(wire.HeaderRevision), 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("daemon %s: config %q: bad %s header", d.URL, name, wire.HeaderRevision)
	}
	return revision, resp.Header.Get(wire.HeaderCommit), nil
}

// PutOverride sets an override and returns it as the daemon recorded it
// (with its version and expiry, without its data).
func (d *Daemon) PutOverride(ctx context.Context, o wire.Override) (wire.Override, error) {
	var got wire.Override
	return got, d.do(ctx, http.MethodPut, "/v1/overrides/"+url.PathEscape(o.ID), o, &got)
}

// RenewOverride extends an override's lease; ErrNotFound once it ran out.
func (d *Daemon) RenewOverride(ctx context.Context, id string) error {
	return d.do(ctx, http.MethodPost, "/v1/overrides/"+url.PathEscape(id)+"/renew", nil, nil)
}

// DeleteOverride removes an override; one already gone is not an error.
func (d *Daemon) DeleteOverride(ctx context.Context, id string) error {
	err := d.do(ctx, http.MethodDelete, "/v1/overrides/"+url.PathEscape(id), nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// PutRun records a canary run.
func (d *Daemon) PutRun(ctx context.Context, r wire.Run) error {
	return d.do(ctx, http.MethodPut, "/v1/canaries/"+url.PathEscape(r.ID), r, nil)
}

// Runs returns the recorded canary runs, oldest first.
func (d *Daemon) Runs(ctx context.Context) ([]wire.Run, error) {
	var runs []wire.Run
	return runs, d.do(ctx, http.MethodGet, "/v1/canaries", nil, &runs)
}

// RevertedRuns returns the recorded runs of config that landed and then
// reverted their change, oldest first.
func (d *Daemon) RevertedRuns(ctx context.Context, config string) ([]wire.Run, error) {
	var runs []wire.Run
	q := url.Values{"config": {config}, "status": {wire.RunReverted}}
	return runs, d.do(ctx, http.MethodGet, "/v1/canaries?"+q.Encode(), nil, &runs)
}
