package daemon

import (
	"encoding/json"
	"sync"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// hub fans published revisions out to watch streams: one broadcast per
// revision, a buffered channel per stream. Publishing never blocks: a
// stream whose buffer is full is dropped (its channel closed), and its
// client resumes with from=.
type hub struct {
	buffer int
	store  string // the store's identity, in every event

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

// subscription is one watch stream's place in the hub.
type subscription struct {
	ch      chan *broadcast // closed when the stream is dropped or the hub closes
	dropped bool            // set, under hub.mu, when the stream fell behind
}

// published is a revision the tailer published, with its configs.
type published struct {
	store.Revision
	configs []store.ConfigVersion
}

// broadcast is a published revision, with its update event encoded once
// for every stream that watches all of its configs; a broadcast without a
// revision says that the overrides changed. Both go through one channel
// so that a stream sees them in the order they happened.
type broadcast struct {
	rev   *published
	store string
	once  sync.Once
	line  []byte
}

// fullLine returns the update event holding all of the revision's configs.
func (b *broadcast) fullLine() []byte {
	b.once.Do(func() { b.line = encodeLine(updateEvent(b.store, b.rev.Revision, b.rev.configs)) })
	return b.line
}

func newHub(buffer int, store string) *hub {
	return &hub{buffer: buffer, store: store, subs: map[*subscription]struct{}{}}
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

// unsubscribe removes s, if it is still there.
func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// publish sends r to every subscription and returns how many it dropped.
func (h *hub) publish(r *published) (dropped int) {
	return h.send(&broadcast{rev: r, store: h.store})
}

// overridesChanged tells every subscription that the overrides changed.
func (h *hub) overridesChanged() {
	h.send(&broadcast{})
}

func (h *hub) send(b *broadcast) (dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- b:
		default:
			s.dropped = true
			delete(h.subs, s)
			close(s.ch)
			dropped++
		}
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

// eventConfigs renders configs for watch events (docs/api.md).
func eventConfigs(cs []store.ConfigVersion) []wire.Config {
	out := make([]wire.Config, len(cs))
	for i, c := range cs {
		out[i] = eventConfig(c)
	}
	return out
}

// eventConfig renders a config for watch events.
func eventConfig(c store.ConfigVersion) wire.Config {
	return wire.Config{Name: c.Name, Revision: c.Revision, Commit: c.Commit, Type: c.Type, Compiled: &c.Compiled, Deleted: c.Deleted, Data: c.Data}
}

// updateEvent is the update event of revision r of the store identified
// by id, holding configs.
func updateEvent(id string, r store.Revision, configs []store.ConfigVersion) wire.Event {
	return wire.Event{Type: wire.Update, Revision: r.Number, Store: id, Commit: r.Commit, Configs: eventConfigs(configs)}
}

// encodeLine encodes v as one line of NDJSON.
func encodeLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // events hold only strings, numbers and bytes
	}
	return append(b, '\n')
}
