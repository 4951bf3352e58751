// Package backoff is the wait between two attempts of a loop that retries
// after a failure: a first wait, doubled after each failure up to a cap,
// and the first again once an attempt got somewhere.
package backoff

import (
	"context"
	"fmt"
	"time"
)

// Backoff is the wait of one retrying loop. It is not safe for concurrent
// use: the loop that sleeps is the one that resets it.
type Backoff struct {
	first, max, wait time.Duration
	// after is time.After; the package's tests replace it.
	after func(time.Duration) <-chan time.Time
}

// New returns a Backoff whose first wait is first and whose waits are
// doubled up to max. It panics unless 0 < first <= max.
func New(first, max time.Duration) *Backoff {
	if first <= 0 || max < first {
		panic(fmt.Sprintf("backoff: got first %v and max %v, want 0 < first <= max", first, max))
	}
	return &Backoff{first: first, max: max, wait: first, after: time.After}
}

// Sleep waits the backoff's wait and doubles it, up to the cap, for the
// next Sleep; or it returns ctx's error, at once, if ctx ends first, and
// the wait stays as it was.
func (b *Backoff) Sleep(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-b.after(b.wait):
	}
	b.wait = min(2*b.wait, b.max)
	return nil
}

// Reset makes the next wait the first.
func (b *Backoff) Reset() { b.wait = b.first }
