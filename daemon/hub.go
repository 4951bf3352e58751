package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// hub fans published revisions out to watch streams. It keeps the
// broadcasts some stream has yet to read in a ring that every stream reads
// at its own position, and wakes the streams when one is added; a stream
// costs the hub its position and a channel of one, whatever it has to
// read, and a broadcast is let go once every stream has read it.
// Publishing never blocks: a stream that would have more than buffer
// broadcasts, or more than maxBytes of config data, to read is dropped,
// and its client resumes with from=. The broadcasts are shared: streams
// write the same published revision, and the streams that watch the same
// of its configs the same bytes, encoded once (published.event).
//
// The hub also wakes the streams whose heartbeat is due (beats): a stream
// waits on its one channel for whatever it has to write next, and holds no
// timer of its own.
type hub struct {
	buffer   int           // broadcasts a stream may have to read
	maxBytes int64         // config data a stream may have to read
	beat     time.Duration // the heartbeat interval; 0 for none

	beatOnce sync.Once
	done     chan struct{} // closed when the hub closes

	sendMu sync.Mutex      // serializes sends
	wake   []*subscription // the streams a send wakes, under sendMu

	mu    sync.Mutex
	ring  []*broadcast // broadcast seq is at ring[seq%len(ring)] until read by all
	seq   uint64       // the seq of the next broadcast
	total int64        // bytes of config data of every broadcast so far

	// subs are the open subscriptions, in no order (s.index is s's
	// place): a publish and a heartbeat tick go through them, at a cost
	// of the subscriptions open, not of the most there ever were (a Go map
	// keeps its size once grown). It is shrunk once a quarter full.
	subs   []*subscription
	closed bool
}

// subscription is one watch stream's place in the hub.
type subscription struct {
	wake    chan struct{} // has a value when there may be something to read or a heartbeat due
	last    atomic.Int64  // when the stream last wrote (or is taken to have), in Unix nanoseconds
	pos     uint64        // the seq of the next broadcast to read, under hub.mu
	dropped bool          // set, under hub.mu, when the stream fell behind
	ended   bool          // set, under hub.mu, when the stream must end
	index   int           // its place in hub.subs until it ends, under hub.mu
}

// published is a revision the tailer published, with its configs, or,
// for a revision whose configs' data is more than hubBytes (the first,
// which holds every config), without them: each stream reads the configs
// it watches from the store as it writes them (writeStored), so that the
// daemon never holds a revision whole.
type published struct {
	store.Revision
	configs []store.ConfigVersion
	stored  bool  // the configs are left in the store
	size    int64 // bytes of the configs' data held

	// The update events of the revision, encoded once each for every
	// stream that watches the same of its configs (sharedEvent).
	mu     sync.Mutex
	events map[string]*sharedEvent // by the configs picked: a bitset of their indices
	kept   int64                   // bytes of the events kept
}

// sharedEvent is the update event of a published revision with some of its
// configs, one line, encoded by the first stream that writes it and
// written by every stream that watches the same configs.
type sharedEvent struct {
	once sync.Once
	line []byte
}

// sharedBound returns the most bytes of update events r keeps encoded:
// twice its configs' data (base64 takes 4/3 of it), and 64 KiB for the
// rest of the events. Beyond it, each stream encodes its own.
func (r *published) sharedBound() int64 { return 2*r.size + 64<<10 }

// event returns the update event of r with the configs picked names (a
// bitset of their indices in r.configs), encoding it with encode on first
// use, or nil if r keeps no more events.
func (r *published) event(picked []byte, encode func() []byte) *sharedEvent {
	r.mu.Lock()
	ev := r.events[string(picked)]
	if ev == nil {
		if r.kept >= r.sharedBound() {
			r.mu.Unlock()
			return nil
		}
		if r.events == nil {
			r.events = map[string]*sharedEvent{}
		}
		ev = &sharedEvent{}
		r.events[string(picked)] = ev
	}
	r.mu.Unlock()
	ev.once.Do(func() {
		ev.line = encode()
		r.mu.Lock()
		r.kept += int64(len(ev.line))
		r.mu.Unlock()
	})
	return ev
}

// writeUpdate writes the update event of rev with the configs sel (as m)
// selects, if it selects any: the event that every stream watching the
// same of rev's configs writes, encoded once (published.event), or, once
// rev keeps no more events, encoded as it is written.
func (d *Daemon) writeUpdate(ctx context.Context, cw *clientWriter, id string, rev *published, sel store.Selection, m store.Match) error {
	if rev.stored {
		return d.whileReachable(ctx, func(ctx context.Context) error { return d.writeStored(ctx, cw, id, rev, sel) })
	}
	var small [64]byte
	picked, any := small[:0], false
	for i := range rev.configs {
		if i%8 == 0 {
			picked = append(picked, 0)
		}
		if m == nil || m(rev.configs[i].Name) {
			picked[i/8] |= 1 << (i % 8)
			any = true
		}
	}
	if !any {
		return nil
	}
	ev := d.sharedUpdate(rev, id, picked)
	if ev == nil {
		d.metrics.updatesEncoded.Inc()
		return cw.counted(writeEvent(cw.EventEncoder, rev, id, picked))
	}
	return cw.counted(cw.line(ev.line))
}

// sharedUpdate returns the update event of rev with the configs picked (a
// bitset of their indices in rev.configs), of the store id, encoded once
// for every stream that writes it, or nil once rev keeps no more events
// (published.event).
func (d *Daemon) sharedUpdate(rev *published, id string, picked []byte) *sharedEvent {
	return rev.event(picked, func() []byte {
		d.metrics.updatesEncoded.Inc()
		var line []byte
		writeEvent(wire.NewEventEncoder(func(p []byte, _ bool) error {
			line = append(line, p...)
			return nil
		}), rev, id, picked)
		return line
	})
}

// writeEvent writes the update event of rev with the configs picked, of
// the store id, to enc.
func writeEvent(enc *wire.EventEncoder, rev *published, id string, picked []byte) error {
	enc.BeginUpdate(rev.Number, id, rev.Commit)
	for i := range rev.configs {
		if picked[i/8]&(1<<(i%8)) != 0 {
			if err := enc.Config(wireConfig(&rev.configs[i])); err != nil {
				return err
			}
		}
	}
	return enc.EndUpdate()
}

// errPast stops a read of the store past the revision it is for.
var errPast = errors.New("past the revision")

// writeStored writes the update event of rev, whose configs the hub does
// not hold, with the configs sel selects, read from the store a batch at a
// time as they are written.
func (d *Daemon) writeStored(ctx context.Context, cw *clientWriter, id string, rev *published, sel store.Selection) error {
	n := 0
	err := d.store.Since(ctx, rev.Number-1, sel, func(c store.ConfigVersion) error {
		if c.Revision != rev.Number {
			return errPast
		}
		if n == 0 {
			d.metrics.updatesEncoded.Inc()
			cw.BeginUpdate(rev.Number, id, rev.Commit)
		}
		n++
		size := int64(len(c.Data))
		d.writing.Add(size)
		defer d.writing.Add(-size)
		return cw.config(&c)
	})
	if err != nil && !errors.Is(err, errPast) {
		return err
	}
	if n == 0 {
		return nil
	}
	return cw.endUpdate()
}

// broadcast is a published revision; a broadcast without a revision says
// that the overrides changed. Both go through the ring so that a stream
// sees them in the order they happened.
type broadcast struct {
	rev     *published
	total   int64 // hub.total once this broadcast was added
	pending int   // subscriptions that have yet to read it, under hub.mu
}

// size returns the bytes of config data b brings.
func (b *broadcast) size() int64 {
	if b.rev == nil {
		return 0
	}
	return b.rev.size
}

// newHub returns a hub whose streams may have buffer broadcasts and
// maxBytes of config data to read, and that wakes a stream for a heartbeat
// once it has written nothing for beat (never if beat is 0).
func newHub(buffer int, maxBytes int64, beat time.Duration) *hub {
	return &hub{buffer: buffer, maxBytes: maxBytes, beat: beat, done: make(chan struct{}),
		ring: make([]*broadcast, buffer)}
}

// subscribe returns a new subscription, which gets every broadcast from
// now on, or nil once the hub is closed.
func (h *hub) subscribe() *subscription {
	if h.beat > 0 {
		h.beatOnce.Do(func() { go h.beats() })
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	s := &subscription{wake: make(chan struct{}, 1), pos: h.seq, index: len(h.subs)}
	s.wrote(time.Now())
	h.subs = append(h.subs, s)
	return s
}

// wrote tells the hub that s's stream wrote at t: its next heartbeat is
// due an interval later.
func (s *subscription) wrote(t time.Time) {
	s.last.Store(t.UnixNano())
}

// firstBeat makes the heartbeat of s that follows the one opening its
// stream due at a random point of the first interval, so that streams
// opened together do not beat together.
func (h *hub) firstBeat(s *subscription) {
	if h.beat > 0 {
		s.wrote(time.Now().Add(rand.N(h.beat) + 1 - h.beat))
	}
}

// beatDue reports whether s's stream has a heartbeat to write at now:
// whether it has written nothing for the hub's interval.
func (h *hub) beatDue(s *subscription, now time.Time) bool {
	return h.beat > 0 && now.UnixNano()-s.last.Load() >= int64(h.beat)
}

// beats wakes, every eighth of the heartbeat interval until the hub
// closes, the streams whose heartbeat is due: a stream beats an interval,
// and at most an eighth more, after it last wrote.
func (h *hub) beats() {
	tick := time.NewTicker(max(h.beat/8, time.Millisecond))
	defer tick.Stop()
	var due []*subscription
	for {
		select {
		case <-h.done:
			return
		case now := <-tick.C:
			h.mu.Lock()
			for _, s := range h.subs {
				if h.beatDue(s, now) {
					due = append(due, s)
				}
			}
			h.mu.Unlock()
			for _, s := range due {
				wakeUp(s)
			}
			clear(due)
			due = due[:0]
		}
	}
}

// wakeUp wakes s's stream, unless it is to wake already.
func wakeUp(s *subscription) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// unsubscribe removes s, and wakes its stream, which ends.
func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.end(s)
	wakeUp(s)
}

// end ends s: it reads nothing more. h.mu is held.
func (h *hub) end(s *subscription) {
	if s.ended {
		return
	}
	for ; s.pos < h.seq; s.pos++ {
		h.read(s.pos)
	}
	s.ended = true
	last := len(h.subs) - 1
	h.subs[s.index] = h.subs[last]
	h.subs[s.index].index = s.index
	h.subs[last] = nil
	h.subs = h.subs[:last]
	if c := cap(h.subs); c > minSubsCap && last < c/4 {
		h.subs = append(make([]*subscription, 0, 2*last), h.subs...)
	}
}

// minSubsCap is the capacity of hub.subs below which it is not shrunk.
const minSubsCap = 64

// read counts one more subscription that read broadcast seq, letting it go
// once all have. h.mu is held.
func (h *hub) read(seq uint64) {
	i := seq % uint64(len(h.ring))
	b := h.ring[i]
	if b.pending--; b.pending == 0 {
		h.ring[i] = nil
	}
}

// take returns the next broadcast for s, or nil if there is none yet, and
// whether more follow; ok is false once s must end: unsubscribed, dropped
// for falling behind, or the hub closed.
func (h *hub) take(s *subscription) (b *broadcast, more, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.ended {
		return nil, false, false
	}
	if s.pos == h.seq {
		return nil, false, true
	}
	b = h.ring[s.pos%uint64(len(h.ring))]
	h.read(s.pos)
	s.pos++
	return b, s.pos < h.seq, true
}

// queued returns the bytes of config data the streams have yet to read.
func (h *hub) queued() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, s := range h.subs {
		n += h.unread(s)
	}
	return n
}

// unread returns the bytes of config data s has yet to read. h.mu is
// held.
func (h *hub) unread(s *subscription) int64 {
	if s.pos == h.seq {
		return 0
	}
	b := h.ring[s.pos%uint64(len(h.ring))]
	return h.total - (b.total - b.size())
}

// publish adds r for every subscription and returns how many it dropped.
func (h *hub) publish(r *published) (dropped int) {
	return h.send(&broadcast{rev: r})
}

// overridesChanged tells every subscription that the overrides changed.
func (h *hub) overridesChanged() {
	h.send(&broadcast{})
}

func (h *hub) send(b *broadcast) (dropped int) {
	h.sendMu.Lock()
	defer h.sendMu.Unlock()
	h.mu.Lock()
	wake := h.wake[:0]
	// From the end: ending s moves the last subscription, seen already,
	// to its place.
	for i := len(h.subs) - 1; i >= 0; i-- {
		s := h.subs[i]
		// With b, s would have h.seq+1-s.pos broadcasts to read.
		if n := h.seq + 1 - s.pos; n > uint64(h.buffer) || n > 1 && h.unread(s)+b.size() > h.maxBytes {
			h.end(s)
			s.dropped = true
			dropped++
		}
		wake = append(wake, s)
	}
	h.total += b.size()
	b.total = h.total
	if b.pending = len(h.subs); b.pending > 0 {
		h.ring[h.seq%uint64(len(h.ring))] = b
	}
	h.seq++
	h.mu.Unlock()
	// Woken after the lock is let go, the streams do not queue for it.
	for _, s := range wake {
		wakeUp(s)
	}
	clear(wake)
	h.wake = wake
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
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	for len(h.subs) > 0 {
		s := h.subs[len(h.subs)-1]
		h.end(s)
		wakeUp(s)
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
