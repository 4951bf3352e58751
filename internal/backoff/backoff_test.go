package backoff

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// recorder replaces b's timer with one that fires at once and records the
// waits b asked for.
func recorder(b *Backoff) *[]time.Duration {
	var waits []time.Duration
	b.after = func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	return &waits
}

func sleep(t *testing.T, b *Backoff, n int) {
	t.Helper()
	for range n {
		if err := b.Sleep(context.Background()); err != nil {
			t.Fatalf("Sleep: got %v, want nil", err)
		}
	}
}

func ms(ns ...int) []time.Duration {
	var ds []time.Duration
	for _, n := range ns {
		ds = append(ds, time.Duration(n)*time.Millisecond)
	}
	return ds
}

func TestDoublesUpToMax(t *testing.T) {
	b := New(50*time.Millisecond, 5*time.Second)
	waits := recorder(b)
	sleep(t, b, 10)
	if want := ms(50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000); !slices.Equal(*waits, want) {
		t.Errorf("waits: got %v, want %v", *waits, want)
	}
}

func TestFirstIsMax(t *testing.T) {
	b := New(time.Second, time.Second)
	waits := recorder(b)
	sleep(t, b, 3)
	if want := ms(1000, 1000, 1000); !slices.Equal(*waits, want) {
		t.Errorf("waits: got %v, want %v", *waits, want)
	}
}

func TestReset(t *testing.T) {
	b := New(10*time.Millisecond, time.Second)
	waits := recorder(b)
	b.Reset() // before any wait: the first stays the first
	sleep(t, b, 3)
	b.Reset()
	sleep(t, b, 2)
	b.Reset()
	b.Reset()
	sleep(t, b, 1)
	if want := ms(10, 20, 40, 10, 20, 10); !slices.Equal(*waits, want) {
		t.Errorf("waits: got %v, want %v", *waits, want)
	}
}

func TestCanceledBefore(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(0, 0))
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(10*time.Millisecond, time.Second)
			waits := recorder(b)
			sleep(t, b, 1)
			ctx, cancel := tc.ctx()
			defer cancel()
			if err := b.Sleep(ctx); !errors.Is(err, tc.want) {
				t.Fatalf("Sleep: got %v, want %v", err, tc.want)
			}
			// No timer was started, and the wait was not doubled.
			sleep(t, b, 1)
			if want := ms(10, 20); !slices.Equal(*waits, want) {
				t.Errorf("waits: got %v, want %v", *waits, want)
			}
		})
	}
}

func TestCanceledDuring(t *testing.T) {
	b := New(10*time.Millisecond, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var waits []time.Duration
	// A timer that never fires; ctx ends once Sleep waits on it.
	b.after = func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		cancel()
		return nil
	}
	if err := b.Sleep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep: got %v, want %v", err, context.Canceled)
	}
	// The wait was not doubled.
	recorded := recorder(b)
	sleep(t, b, 1)
	if want := ms(10); !slices.Equal(waits, want) || !slices.Equal(*recorded, want) {
		t.Errorf("waits: got %v then %v, want %v then %v", waits, *recorded, want, want)
	}
}

// TestRealTimer sleeps on time.After: a wait of a microsecond ends, and
// one of an hour ends when ctx does.
func TestRealTimer(t *testing.T) {
	b := New(time.Microsecond, 2*time.Microsecond)
	sleep(t, b, 3)

	b = New(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Sleep(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep: got %v, want %v", err, context.Canceled)
	}
}

func TestNewPanics(t *testing.T) {
	for _, tc := range []struct {
		first, max time.Duration
		want       string
	}{
		{0, time.Second, "backoff: got first 0s and max 1s, want 0 < first <= max"},
		{-time.Second, time.Second, "backoff: got first -1s and max 1s, want 0 < first <= max"},
		{2 * time.Second, time.Second, "backoff: got first 2s and max 1s, want 0 < first <= max"},
	} {
		func() {
			defer func() {
				if got := recover(); got != tc.want {
					t.Errorf("New(%v, %v) panicked with %v, want %q", tc.first, tc.max, got, tc.want)
				}
			}()
			New(tc.first, tc.max)
		}()
	}
}
