package canary

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cfg-dev/cfg/wire"
)

// ErrNotFound is a daemon's 404.
var ErrNotFound = wire.ErrNotFound

// Daemon is what a canary reads and writes in a distribution daemon's API
// (docs/api.md), over the API's client.
type Daemon struct {
	*wire.Client
}

// NewDaemon returns a client of the daemon at base, writing with token.
func NewDaemon(base, token string) (*Daemon, error) {
	c, err := wire.NewClient(base, token, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	return &Daemon{Client: c}, nil
}

// Current returns the revision and commit of a config's current version
// (ErrNotFound if the daemon has none).
func (d *Daemon) Current(ctx context.Context, name string) (revision int64, commit string, err error) {
	cv, err := d.Config(ctx, name)
	if err != nil {
		return 0, "", fmt.Errorf("config %q: %w", name, err)
	}
	return cv.Revision, cv.Commit, nil
}

// DeleteOverride removes an override; one already gone is not an error.
func (d *Daemon) DeleteOverride(ctx context.Context, id string) error {
	err := d.Client.DeleteOverride(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Runs returns the recorded canary runs, oldest first.
func (d *Daemon) Runs(ctx context.Context) ([]wire.Run, error) {
	return d.Client.Runs(ctx, "", "")
}

// RevertedRuns returns the recorded runs of config that landed and then
// reverted their change, oldest first.
func (d *Daemon) RevertedRuns(ctx context.Context, config string) ([]wire.Run, error) {
	return d.Client.Runs(ctx, config, wire.RunReverted)
}
