package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/store"
)

// takeAll takes what s has to read, as revision numbers (0 for an
// overrides broadcast).
func takeAll(t *testing.T, h *hub, s *subscription) (revs []int64, ok bool) {
	t.Helper()
	for {
		b, _, ok := h.take(s)
		if !ok || b == nil {
			return revs, ok
		}
		if b.rev == nil {
			revs = append(revs, 0)
		} else {
			revs = append(revs, b.rev.Number)
		}
	}
}

func rev(n, size int64) *published {
	return &published{Revision: store.Revision{Number: n}, size: size}
}

func TestHubDropsSlowSubscribers(t *testing.T) {
	h := newHub(2, 1<<20)
	fast, slow := h.subscribe(), h.subscribe()
	for n := int64(1); n <= 3; n++ {
		want := 0
		if n == 3 {
			want = 1 // slow has 1 and 2 to read
		}
		if dropped := h.publish(rev(n, 1)); dropped != want {
			t.Errorf("publish(%d) dropped %d, want %d", n, dropped, want)
		}
		<-fast.wake
		if got, ok := takeAll(t, h, fast); !ok || len(got) != 1 || got[0] != n {
			t.Errorf("fast took %v, %v; want [%d]", got, ok, n)
		}
	}
	if !h.wasDropped(slow) || h.wasDropped(fast) {
		t.Errorf("dropped: slow %v, fast %v; want true, false", h.wasDropped(slow), h.wasDropped(fast))
	}
	<-slow.wake
	if got, ok := takeAll(t, h, slow); ok || got != nil {
		t.Errorf("the dropped subscriber took %v, %v; want nothing and its end", got, ok)
	}
	// Everything read: the ring holds nothing.
	for i, b := range h.ring {
		if b != nil {
			t.Errorf("ring[%d] holds revision %d, read by all", i, b.rev.Number)
		}
	}
	h.unsubscribe(slow) // a no-op now
	h.close()
	if _, _, ok := h.take(fast); ok {
		t.Error("fast subscriber still open after close")
	}
	if h.subscribe() != nil {
		t.Error("subscribe after close")
	}
}

// TestHubDropsByBytes checks that a stream is dropped when the config
// data it has to read would go above the bound, that one revision above
// the bound still goes to a stream with nothing to read, and that what is
// queued is counted until it is taken.
func TestHubDropsByBytes(t *testing.T) {
	h := newHub(100, 10)
	s, other := h.subscribe(), h.subscribe()
	if dropped := h.publish(rev(1, 25)); dropped != 0 {
		t.Fatalf("a revision above the bound, with nothing to read: dropped %d", dropped)
	}
	if got := h.queued(); got != 50 {
		t.Errorf("queued %d bytes, want 50", got)
	}
	takeAll(t, h, s)
	takeAll(t, h, other)
	if h.ring[0] != nil {
		t.Error("the ring holds a revision both read")
	}
	h.publish(rev(2, 6))
	h.overridesChanged() // no data: never drops
	h.publish(rev(3, 4))
	takeAll(t, h, other)
	if dropped := h.publish(rev(4, 1)); dropped != 1 || !h.wasDropped(s) || h.wasDropped(other) {
		t.Fatalf("6+4+1 bytes: dropped %d (s %v, other %v), want s", dropped, h.wasDropped(s), h.wasDropped(other))
	}
	if got := h.queued(); got != 1 {
		t.Errorf("queued %d bytes, want 1", got)
	}
	if got, ok := takeAll(t, h, other); !ok || len(got) != 1 || got[0] != 4 {
		t.Errorf("other took %v, %v; want [4]", got, ok)
	}
	h.unsubscribe(other)
	if got := h.queued(); got != 0 {
		t.Errorf("queued %d bytes after every stream ended, want 0", got)
	}
	for i, b := range h.ring {
		if b != nil {
			t.Errorf("ring[%d] holds a broadcast nobody will read", i)
		}
	}
}

func FuzzDecodeHostReport(f *testing.F) {
	for _, seed := range []string{
		`{"labels":{"cluster":"c1","region":"eu","role":"web"},"configs":["feed/cache_job"],"applied":9}`,
		`{}`,
		`{"applied":-1}`,
		`{"configs":["a/../b"]}`,
		`{"labels":{"":"x"}}`,
		`{} {}`,
		`[1,2]`,
		`{"applied":1e400}`,
		`{"metrics":"http://web-1:9100/metrics","overrides":[{"id":"run-1","config":"feed/cache_job","version":2}]}`,
		`{"metrics":"ftp://x"}`,
		`{"overrides":[{"id":"a b","config":"x"}]}`,
		``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rep, err := decodeHostReport(strings.NewReader(body))
		if err != nil {
			if !strings.Contains(err.Error(), "host report") {
				t.Errorf("error without context: %v", err)
			}
			return
		}
		// What was accepted survives a round trip.
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeHostReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-decoding %s: %v", b, err)
		}
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b, b2) {
			t.Errorf("round trip: %s then %s", b, b2)
		}
	})
}
