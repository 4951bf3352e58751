package daemon

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/cfg-dev/cfg/store"
)

// hub fans published revisions out to watch streams: one broadcast per
// revision, a buffered channel per stream. Publishing never blocks: a
// stream whose buffer is full, or whose queued config data would go above
// the hub's bound, is dropped (its channel closed), and its client resumes
// with from=. The broadcasts are shared: streams write the same published
// revision, each encoding the configs it watches as it writes them.
type hub struct {
	buffer   int   // revisions a stream may have waiting
	maxBytes int64 // config data a stream may have waiting
	queued   *atomic.Int64

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

// subscription is one watch stream's place in the hub.
type subscription struct {
	ch      chan *broadcast // closed when the stream is dropped or the hub closes
	queued  atomic.Int64    // bytes of the configs of the revisions in ch, and of the one being written
	dropped bool            // set, under hub.mu, when the stream fell behind
}

// published is a revision the tailer published, with its configs.
type published struct {
	store.Revision
	configs []store.ConfigVersion
	size    int64 // bytes of the configs' data
}

// broadcast is a published revision; a broadcast without a revision says
// that the overrides changed. Both go through one channel so that a stream
// sees them in the order they happened.
type broadcast struct {
	rev *published
}

// size returns the bytes of config data b brings.
func (b *broadcast) size() int64 {
	if b.rev == nil {
		return 0
	}
	return b.rev.size
}

// newHub returns a hub whose streams may have buffer revisions and
// maxBytes of config data waiting; queued counts the data waiting on all
// of them.
func newHub(buffer int, maxBytes int64, queued *atomic.Int64) *hub {
	return &hub{buffer: buffer, maxBytes: maxBytes, queued: queued, subs: map[*subscription]struct{}{}}
}

// subscribe returns a new subscription, or nil once the hub is closed.
func (h *hub) subscribe() *subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	s := &subscription{ch: make(chan *broadcast, h.buffer)}
	h.subs[s] = struct{}{}
	return s
}

// unsubscribe removes s, if it is still there, and forgets what it had
// queued.
func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
	h.queued.Add(-s.queued.Swap(0))
}

// written tells the hub that s wrote b.
func (h *hub) written(s *subscription, b *broadcast) {
	n := b.size()
	s.queued.Add(-n)
	h.queued.Add(-n)
}

// publish sends r to every subscription and returns how many it dropped.
func (h *hub) publish(r *published) (dropped int) {
	return h.send(&broadcast{rev: r})
}

// overridesChanged tells every subscription that the overrides changed.
func (h *hub) overridesChanged() {
	h.send(&broadcast{})
}

func (h *hub) send(b *broadcast) (dropped int) {
	n := b.size()
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if q := s.queued.Load(); len(s.ch) < cap(s.ch) && (q == 0 || q+n <= h.maxBytes) {
			s.queued.Add(n)
			h.queued.Add(n)
			s.ch <- b
			continue
		}
		s.dropped = true
		delete(h.subs, s)
		close(s.ch)
		dropped++
	}
	return dropped
}

// wasDropped reports whether s was dropped for falling behind.
func (h *hub) wasDropped(s *subscription) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.dropped
}

// close ends every subscription; later subscribe calls return nil.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}

// encodeLine encodes v as one line of NDJSON.
func encodeLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // events hold only strings, numbers and bytes
	}
	return append(b, '\n')
}
