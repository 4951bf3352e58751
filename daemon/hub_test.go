package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/store"
)

func TestHubDropsSlowSubscribers(t *testing.T) {
	h := newHub(2, "")
	fast, slow := h.subscribe(), h.subscribe()
	for n := int64(1); n <= 3; n++ {
		want := 0
		if n == 3 {
			want = 1 // slow has 1 and 2 in its buffer
		}
		if dropped := h.publish(&published{Revision: store.Revision{Number: n}}); dropped != want {
			t.Errorf("publish(%d) dropped %d, want %d", n, dropped, want)
		}
		<-fast.ch // fast keeps up
	}
	if !h.wasDropped(slow) || h.wasDropped(fast) {
		t.Errorf("dropped: slow %v, fast %v; want true, false", h.wasDropped(slow), h.wasDropped(fast))
	}
	// The slow one gets what was buffered, then the end of its stream.
	var got []int64
	for b := range slow.ch {
		got = append(got, b.rev.Number)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("slow subscriber got %v, want [1 2]", got)
	}
	h.unsubscribe(slow) // a no-op now
	h.close()
	if _, ok := <-fast.ch; ok {
		t.Error("fast subscriber still open after close")
	}
	if h.subscribe() != nil {
		t.Error("subscribe after close")
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
