package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

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
	h := newHub(2, 1<<20, 0)
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
	h := newHub(100, 10, 0)
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

// TestUpdateEncodedOnce checks that a published revision's update event is
// encoded once for every stream that watches the same of its configs,
// whatever the number of streams, and that each stream gets the event its
// own selection picks.
func TestUpdateEncodedOnce(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1", "materialized_configs/c.json", "c1")
	d := startDaemon(t, r.dir, t.TempDir())
	var onlyA, all, aAndC, onlyC []*watcher
	for range 12 {
		onlyA = append(onlyA, d.watch("configs=a"))
		all = append(all, d.watch("configs=*&from=1"))
		aAndC = append(aAndC, d.watch("configs=a,c,nope"))
		onlyC = append(onlyC, d.watch("configs=c"))
	}
	for i := range onlyA {
		onlyA[i].expect("snapshot 1 a@1=a1")
		aAndC[i].expect("snapshot 1 a@1=a1 c@1=c1")
		onlyC[i].expect("snapshot 1 c@1=c1")
	}
	before := d.metric("cfg_watch_updates_encoded_total")

	r.commit("materialized_configs/a.json", "a2", "materialized_configs/b.json", "b2")
	for i := range onlyA {
		onlyA[i].expect("update 2 a@2=a2")
		all[i].expect("update 2 a@2=a2 b@2=b2")
		aAndC[i].expect("update 2 a@2=a2")
	}
	// Two selections of the revision's configs: {a} (the streams of a,
	// and of a and c) and {a, b} (every config); the streams of c get
	// nothing.
	if got := d.metric("cfg_watch_updates_encoded_total") - before; got != 2 {
		t.Errorf("update events encoded for 48 streams: %v, want 2", got)
	}
	for _, w := range onlyC {
		w.quiet(10 * time.Millisecond)
	}
}

// TestOneConfigEncodedWhileStored: the update event of a revision of one
// config, which every stream watching that config writes, is encoded while
// the store commits the revision, streams or not.
func TestOneConfigEncodedWhileStored(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
	d := startDaemon(t, r.dir, t.TempDir())
	before := d.metric("cfg_watch_updates_encoded_total")
	r.commit("materialized_configs/a.json", "a2")
	d.waitFor("the update of a encoded", func() bool { return d.metric("cfg_watch_updates_encoded_total") == before+1 })
	w := d.watch("configs=a&from=1")
	w.expect("update 2 a@2=a2")
	r.commit("materialized_configs/a.json", "a3", "materialized_configs/b.json", "b3")
	w.expect("update 3 a@3=a3")
	if got := d.metric("cfg_watch_updates_encoded_total") - before; got != 2 {
		t.Errorf("update events encoded: %v, want 2 (revision 2's once, before any stream; revision 3's for the stream of a)", got)
	}
}

// TestSharedEventsBounded checks that a published revision keeps at most
// its bound of encoded update events (and the one that crossed it), and
// that a selection already encoded is shared past the bound.
func TestSharedEventsBounded(t *testing.T) {
	r := &published{size: 1000}
	bound := r.sharedBound()
	line := bytes.Repeat([]byte("x"), 10<<10)
	kept := 0
	for i := 0; ; i++ {
		ev := r.event([]byte{byte(i), byte(i >> 8)}, func() []byte { return line })
		if ev == nil {
			break
		}
		kept++
		if i > 1000 {
			t.Fatal("no bound on the events kept")
		}
	}
	if r.kept > bound+int64(len(line)) || r.kept < bound {
		t.Errorf("kept %d bytes in %d events, want %d to %d", r.kept, kept, bound, bound+int64(len(line)))
	}
	if ev := r.event([]byte{0, 0}, func() []byte { t.Error("encoded twice"); return nil }); ev == nil || len(ev.line) != len(line) {
		t.Error("an event encoded before the bound is not shared after it")
	}
}

// TestHubWakesForHeartbeats checks that the hub wakes a stream that has
// written nothing for the heartbeat interval, again and again, and never
// one that wrote within it.
func TestHubWakesForHeartbeats(t *testing.T) {
	h := newHub(2, 1<<20, 20*time.Millisecond)
	defer h.close()
	idle, busy := h.subscribe(), h.subscribe()
	busy.wrote(time.Now().Add(time.Hour)) // writing all along
	for range 3 {
		select {
		case <-idle.wake:
		case <-time.After(time.Minute):
			t.Fatal("an idle stream was not woken for its heartbeat")
		}
		if !h.beatDue(idle, time.Now()) {
			t.Error("woken with no heartbeat due")
		}
		idle.wrote(time.Now()) // its heartbeat
	}
	select {
	case <-busy.wake:
		t.Error("a stream that wrote within the interval was woken for a heartbeat")
	default:
	}
	if h.beatDue(busy, time.Now()) {
		t.Error("a heartbeat is due for a stream that wrote within the interval")
	}
}

// TestIdleStreamBeats attacks the promise that a client hears from a live
// stream at least every heartbeat interval (and an eighth): a stream that
// has nothing else to send gets heartbeat after heartbeat, each with the
// latest revision.
func TestIdleStreamBeats(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	d.waitFor("revision 1", func() bool { return d.latest() == 1 })
	w := d.watch("configs=a")
	for beats := 0; beats < 4; {
		select {
		case e, ok := <-w.events:
			if !ok {
				t.Fatalf("the stream ended after %d heartbeats", beats)
			}
			if e.Type == "heartbeat" {
				if e.Revision != 1 {
					t.Errorf("heartbeat of revision %d, want 1", e.Revision)
				}
				beats++
			}
		case <-time.After(time.Minute):
			t.Fatalf("%d heartbeats in a minute from an idle stream, want 4 (one each 200 ms)", beats)
		}
	}
}

// TestHubForgetsEndedSubscriptions checks that a hub holds, and goes
// through at each broadcast, the subscriptions open, not the most there
// ever were: after 10,000 subscriptions of which all but three ended (in
// any order, by unsubscribing or by falling behind), it holds room for
// few, and the three still get every broadcast.
func TestHubForgetsEndedSubscriptions(t *testing.T) {
	h := newHub(4, 1<<20, 0)
	subs := make([]*subscription, 10000)
	for i := range subs {
		subs[i] = h.subscribe()
	}
	open := map[*subscription]bool{subs[0]: true, subs[5000]: true, subs[9999]: true}
	behind := subs[1] // never reads: dropped at the fifth broadcast
	for _, i := range rand.Perm(len(subs)) {
		if s := subs[i]; !open[s] && s != behind {
			h.unsubscribe(s)
		}
	}
	for n := int64(1); n <= 5; n++ {
		h.publish(rev(n, 1))
		for s := range open {
			if got, ok := takeAll(t, h, s); !ok || len(got) != 1 || got[0] != n {
				t.Fatalf("an open subscription took %v, %v; want revision %d", got, ok, n)
			}
		}
	}
	if _, _, ok := h.take(behind); ok || !h.wasDropped(behind) {
		t.Error("the subscription that fell behind is not dropped")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) != len(open) || cap(h.subs) > minSubsCap {
		t.Errorf("the hub holds %d subscriptions with room for %d; want %d, room for at most %d", len(h.subs), cap(h.subs), len(open), minSubsCap)
	}
	for i, s := range h.subs {
		if !open[s] || s.index != i {
			t.Errorf("hub.subs[%d] is a subscription that ended or says it is at %d", i, s.index)
		}
	}
}

// BenchmarkHubPublish times a broadcast to one open subscription after
// peak subscriptions opened and all but it ended.
func BenchmarkHubPublish(b *testing.B) {
	for _, peak := range []int{1, 5000, 100000} {
		b.Run(fmt.Sprintf("peak=%d", peak), func(b *testing.B) {
			h := newHub(4, 1<<20, 0)
			s := h.subscribe()
			var others []*subscription
			for range peak - 1 {
				others = append(others, h.subscribe())
			}
			for _, o := range others {
				h.unsubscribe(o)
			}
			r := rev(1, 1)
			for b.Loop() {
				h.publish(r)
				h.take(s)
			}
		})
	}
}
