package wire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cfg-dev/cfg/internal/jsontext"
)

// ContentTypeEvents is the content type of a watch stream.
const ContentTypeEvents = "application/x-ndjson"

// EventReader reads the events of a watch stream, one JSON object a line.
type EventReader struct {
	dec *json.Decoder
}

// NewEventReader returns a reader of the events in r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{dec: json.NewDecoder(r)}
}

// Next returns the next event; io.EOF once the stream ended between
// events, io.ErrUnexpectedEOF if it ended inside one.
func (er *EventReader) Next() (Event, error) {
	var ev Event
	if err := er.dec.Decode(&ev); err != nil {
		if err == io.EOF {
			return Event{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Event{}, fmt.Errorf("watch event: %w", io.ErrUnexpectedEOF)
		}
		return Event{}, fmt.Errorf("watch event: %w", err)
	}
	if ev.Type == "" {
		return Event{}, errors.New("watch event: no type")
	}
	return ev, nil
}

// PieceSize is the most bytes an EventEncoder holds, and hands its output
// at once.
const PieceSize = 32 << 10

// pieces are the buffers of the encoders that are writing an event; an
// encoder between events holds none.
var pieces = sync.Pool{New: func() any {
	b := make([]byte, 0, PieceSize)
	return &b
}}

// EventEncoder writes the events of a watch stream, one JSON object a
// line, byte for byte as encoding/json writes an Event (but for a
// snapshot's revision, which comes after its configs), without ever
// holding an event whole: it assembles an event config by config in a
// buffer of PieceSize bytes, base64-encoding a config's data a piece at a
// time, and hands the buffer to its output each time it is full, and at
// the end of the event. It holds the buffer only while it writes an
// event. An encoder is for one goroutine; once its output fails, every
// later write fails with that error.
type EventEncoder struct {
	// out takes each piece of an event; last is set on the event's last
	// piece, which the output then sends to the client.
	out   func(piece []byte, last bool) error
	piece *[]byte // from pieces while an event is being written
	head  []byte  // scratch for the JSON around configs' data
	n     int     // configs in the event being written
	err   error
}

// NewEventEncoder returns an encoder writing each piece of an event to
// out, with last set on an event's last piece (possibly empty); out must
// not keep the piece.
func NewEventEncoder(out func(piece []byte, last bool) error) *EventEncoder {
	return &EventEncoder{out: out}
}

// Err returns the error of the first write that failed, if any.
func (e *EventEncoder) Err() error { return e.err }

// Holding reports whether the encoder holds a buffer: it does only while
// it writes an event.
func (e *EventEncoder) Holding() bool { return e.piece != nil }

// Release gives back the buffer of an event cut in the middle (a write
// failed, the stream was aborted); the event is not completed.
func (e *EventEncoder) Release() {
	if e.piece != nil {
		*e.piece = (*e.piece)[:0]
		pieces.Put(e.piece)
		e.piece = nil
	}
	e.n = 0
}

// buffer returns the event's buffer, taking it from the pool if needed.
func (e *EventEncoder) buffer() *[]byte {
	if e.piece == nil {
		e.piece = pieces.Get().(*[]byte)
	}
	return e.piece
}

// write hands the piece assembled to the output.
func (e *EventEncoder) write(last bool) error {
	if e.err != nil {
		return e.err
	}
	p := e.buffer()
	e.err = e.out(*p, last)
	*p = (*p)[:0]
	return e.err
}

// append adds b to the piece being assembled, writing the piece out
// whenever it is full.
func (e *EventEncoder) append(b []byte) error {
	for len(b) > 0 && e.err == nil {
		p := e.buffer()
		if len(*p) == PieceSize {
			e.write(false)
			continue
		}
		n := copy((*p)[len(*p):PieceSize], b)
		*p = (*p)[:len(*p)+n]
		b = b[n:]
	}
	return e.err
}

// end writes out the rest of the event as its last piece and gives the
// buffer back.
func (e *EventEncoder) end() error {
	e.append([]byte("}\n"))
	e.write(true)
	e.Release()
	return e.err
}

// BeginUpdate starts the update event of revision rev of store: its
// configs follow (Config), then EndUpdate.
func (e *EventEncoder) BeginUpdate(rev int64, store, commit string) error {
	e.n = 0
	h := append(e.head[:0], `{"type":"update","revision":`...)
	h = strconv.AppendInt(h, rev, 10)
	h = appendField(h, "store", store)
	h = appendField(h, "commit", commit)
	e.head = append(h, `,"configs":[`...)
	return e.append(e.head)
}

// EndUpdate ends an update event.
func (e *EventEncoder) EndUpdate() error {
	e.append([]byte("]"))
	return e.end()
}

// BeginSnapshot starts a snapshot event of store; its configs follow
// (Config), then EndSnapshot, which adds the revision: a snapshot's
// revision is known once its configs are read.
func (e *EventEncoder) BeginSnapshot(store string) error {
	e.n = 0
	h := append(e.head[:0], `{"type":"snapshot"`...)
	h = appendField(h, "store", store)
	e.head = append(h, `,"configs":[`...)
	return e.append(e.head)
}

// EndSnapshot ends a snapshot event of revision rev, at commit.
func (e *EventEncoder) EndSnapshot(rev int64, commit string) error {
	h := append(e.head[:0], `],"revision":`...)
	h = strconv.AppendInt(h, rev, 10)
	e.head = appendField(h, "commit", commit)
	e.append(e.head)
	return e.end()
}

// Config adds c to the event being written, its data base64-encoded piece
// by piece.
func (e *EventEncoder) Config(c *Config) error {
	h := e.head[:0]
	if e.n > 0 {
		h = append(h, ',')
	}
	e.n++
	h = append(h, `{"name":`...)
	h = jsontext.AppendStringHTML(h, c.Name)
	h = append(h, `,"revision":`...)
	h = strconv.AppendInt(h, c.Revision, 10)
	h = appendField(h, "commit", c.Commit)
	h = appendField(h, "type", c.Type)
	if c.Compiled != nil {
		h = append(h, `,"compiled":`...)
		h = strconv.AppendBool(h, *c.Compiled)
	}
	if c.Deleted {
		h = append(h, `,"deleted":true`...)
	}
	if len(c.Data) > 0 {
		h = append(h, `,"data":"`...)
	}
	e.head = h
	if err := e.append(h); err != nil {
		return err
	}
	if len(c.Data) > 0 {
		if err := e.base64(c.Data); err != nil {
			return err
		}
		if err := e.append([]byte{'"'}); err != nil {
			return err
		}
	}
	h = appendField(e.head[:0], "override", c.Override)
	if c.OverrideVersion != 0 {
		h = append(h, `,"override_version":`...)
		h = strconv.AppendInt(h, c.OverrideVersion, 10)
	}
	e.head = append(h, '}')
	return e.append(e.head)
}

// base64 adds the standard base64 encoding of p (as encoding/json encodes
// bytes) to the event, a piece at a time.
func (e *EventEncoder) base64(p []byte) error {
	for len(p) > 0 && e.err == nil {
		b := e.buffer()
		free := PieceSize - len(*b)
		if free < 4 {
			e.write(false)
			continue
		}
		n := min(len(p), free/4*3) // whole groups of 3, but for the last piece
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode((*b)[len(*b):len(*b)+m], p[:n])
		*b = (*b)[:len(*b)+m]
		p = p[n:]
	}
	return e.err
}

// Heartbeat writes a heartbeat event of revision rev of store, saying
// why the daemon cannot reach the store if unreachable is not empty.
func (e *EventEncoder) Heartbeat(rev int64, store, unreachable string) error {
	return e.Encode(Event{Type: Heartbeat, Revision: rev, Store: store, Unreachable: unreachable})
}

// Encode writes ev whole, its configs' data a piece at a time.
func (e *EventEncoder) Encode(ev Event) error {
	e.n = 0
	h := append(e.head[:0], `{"type":`...)
	h = jsontext.AppendStringHTML(h, ev.Type)
	h = append(h, `,"revision":`...)
	h = strconv.AppendInt(h, ev.Revision, 10)
	h = appendField(h, "store", ev.Store)
	h = appendField(h, "commit", ev.Commit)
	e.head = appendField(h, "unreachable", ev.Unreachable)
	e.append(e.head)
	if len(ev.Configs) > 0 {
		e.append([]byte(`,"configs":[`))
		for i := range ev.Configs {
			e.Config(&ev.Configs[i])
		}
		e.append([]byte("]"))
	}
	if len(ev.Overrides) > 0 {
		b, err := json.Marshal(ev.Overrides)
		if err != nil {
			e.Release()
			return fmt.Errorf("watch event: %w", err)
		}
		e.append([]byte(`,"overrides":`))
		e.append(b)
	}
	return e.end()
}

// appendField appends ,"key":"value" unless value is empty (omitempty).
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return jsontext.AppendStringHTML(b, value)
}

// EventWriter writes the events of a watch stream to an HTTP response
// with an EventEncoder: each piece under a write deadline of its own, each
// event flushed to the client once written.
type EventWriter struct {
	*EventEncoder
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// NewEventWriter returns a writer of events to w; a client that takes in
// none of a piece within timeout fails its write (0: no deadline).
func NewEventWriter(w http.ResponseWriter, timeout time.Duration) *EventWriter {
	ew := &EventWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	ew.EventEncoder = NewEventEncoder(ew.piece)
	return ew
}

// WriteHeader answers 200 with the content type of a watch stream, the
// store's identity (HeaderStore) and the headers already set on the
// response, and flushes them to the client.
func (ew *EventWriter) WriteHeader(store string) error {
	ew.w.Header().Set("Content-Type", ContentTypeEvents)
	if store != "" {
		ew.w.Header().Set(HeaderStore, store)
	}
	ew.w.WriteHeader(http.StatusOK)
	return ew.flush()
}

// Write writes ev and flushes it to the client.
func (ew *EventWriter) Write(ev Event) error { return ew.Encode(ev) }

func (ew *EventWriter) piece(p []byte, last bool) error {
	if ew.timeout > 0 {
		// Test writers do not support deadlines, and do not block.
		ew.rc.SetWriteDeadline(time.Now().Add(ew.timeout))
	}
	if _, err := ew.w.Write(p); err != nil {
		return err
	}
	if last {
		return ew.flush()
	}
	return nil
}

func (ew *EventWriter) flush() error {
	if err := ew.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
