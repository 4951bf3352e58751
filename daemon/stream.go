package daemon

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/store"
)

// pieceSize is the most bytes the daemon hands a response in one write,
// each write with a deadline of its own, and the size of the buffer a
// watch stream assembles an event in while it writes it.
const pieceSize = 32 << 10

// pieces are the buffers of the watch streams that are writing an event;
// a stream waiting for the next one holds none.
var pieces = sync.Pool{New: func() any { b := make([]byte, 0, pieceSize); return &b }}

// clientWriter writes a response through net/http's ResponseWriter, in
// pieces of at most pieceSize bytes, setting the connection's write
// deadline (http.ResponseController) before each: a client that takes in
// none of a piece within the timeout fails the write, and with it the
// response, whose connection net/http then closes. A watch stream
// assembles its events config by config in a buffer of pieceSize,
// base64-encoding a config's data a piece at a time, and hands the
// response each piece as the buffer fills, then the rest with a flush: it
// holds one buffer while it writes an event, never an event whole, and
// none while it waits for the next.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     *[]byte   // from pieces while an event is being written
	head    []byte    // scratch for the JSON around configs' data
	n       int       // configs in the event being written
	until   time.Time // the deadline of the last write
	err     error     // the first write error: every later write fails with it
	sent    func()    // counts each event but heartbeats, once written

	// abortMu is held to abort the response and to end it: once ended,
	// the ResponseWriter is not used again.
	abortMu sync.Mutex
	ended   bool
	aborted atomic.Bool // the response must end: writes fail at once
}

func newClientWriter(w http.ResponseWriter, timeout time.Duration) *clientWriter {
	return &clientWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// deadline sets the write deadline of the connection for the next write:
// the timeout from now, or now once the response is aborted.
func (cw *clientWriter) deadline() {
	cw.until = time.Now().Add(cw.timeout)
	cw.rc.SetWriteDeadline(cw.until) // unsupported by test writers, which do not block
	if cw.aborted.Load() {
		// abort may have set its deadline before this one.
		cw.rc.SetWriteDeadline(time.Now())
	}
}

// timedOut reports whether err is a write that failed for the client
// taking in nothing until its deadline, rather than one that abort ended.
func (cw *clientWriter) timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(cw.until)
}

// abort makes the write in progress, and every later one, fail at once
// (a stream that must end does not wait for a slow client); it may be
// called from any goroutine, also after the response ended.
func (cw *clientWriter) abort() {
	cw.abortMu.Lock()
	defer cw.abortMu.Unlock()
	cw.aborted.Store(true)
	if !cw.ended {
		cw.rc.SetWriteDeadline(time.Now())
	}
}

// end gives the buffer back and lets go of the ResponseWriter: abort no
// longer touches it. The handler then returns, and net/http ends the
// response (or closes its connection, after a failed write).
func (cw *clientWriter) end() {
	cw.release()
	cw.abortMu.Lock()
	defer cw.abortMu.Unlock()
	cw.ended = true
}

// write hands p to the response in pieces of at most pieceSize, each with
// its deadline; it is for a response that is not a watch stream.
func (cw *clientWriter) write(p []byte) error {
	for len(p) > 0 && cw.err == nil {
		n := min(len(p), pieceSize)
		cw.deadline()
		_, cw.err = cw.w.Write(p[:n])
		p = p[n:]
	}
	return cw.err
}

// flush sends what the response holds to the client.
func (cw *clientWriter) flush() error {
	if cw.err == nil {
		cw.deadline()
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	return cw.err
}

// bytes returns the event buffer, taking one from the pool if needed.
func (cw *clientWriter) bytes() []byte {
	if cw.buf == nil {
		cw.buf = pieces.Get().(*[]byte)
	}
	return *cw.buf
}

// append adds b to the event buffer, writing the buffer out whenever it
// is full.
func (cw *clientWriter) append(b []byte) error {
	for len(b) > 0 && cw.err == nil {
		buf := cw.bytes()
		if len(buf) == pieceSize {
			cw.writeBuf()
			continue
		}
		n := copy(buf[len(buf):pieceSize], b)
		*cw.buf = buf[:len(buf)+n]
		b = b[n:]
	}
	return cw.err
}

// writeBuf hands the event buffer to the response, with its deadline, and
// empties it.
func (cw *clientWriter) writeBuf() error {
	if cw.buf == nil || len(*cw.buf) == 0 || cw.err != nil {
		return cw.err
	}
	cw.deadline()
	_, cw.err = cw.w.Write(*cw.buf)
	*cw.buf = (*cw.buf)[:0]
	return cw.err
}

// endEvent writes out the rest of the event and flushes it to the client,
// under one deadline, gives the buffer back and counts the event (unless
// it is a heartbeat).
func (cw *clientWriter) endEvent(counted bool) error {
	cw.n = 0
	if cw.writeBuf() == nil {
		// The deadline writeBuf set covers the flush.
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	cw.release()
	if cw.err != nil {
		return cw.err
	}
	if counted && cw.sent != nil {
		cw.sent()
	}
	return nil
}

// line writes one whole event (encoded elsewhere), counts it and flushes
// it.
func (cw *clientWriter) line(b []byte) error {
	cw.append(b)
	return cw.endEvent(true)
}

// release gives the event buffer back, whatever it held.
func (cw *clientWriter) release() {
	if cw.buf != nil {
		*cw.buf = (*cw.buf)[:0]
		pieces.Put(cw.buf)
		cw.buf = nil
	}
}

// beginUpdate starts the update event of revision rev: its configs follow
// (config), then endUpdate.
func (cw *clientWriter) beginUpdate(rev int64, storeID, commit string) error {
	h := append(cw.head[:0], `{"type":"update","revision":`...)
	h = strconv.AppendInt(h, rev, 10)
	h = appendField(h, "store", storeID)
	h = appendField(h, "commit", commit)
	cw.head = append(h, `,"configs":[`...)
	return cw.append(cw.head)
}

// beginSnapshot starts a snapshot event; its configs follow (config), then
// endSnapshot, which adds the revision: a snapshot's revision is known once
// its configs are read.
func (cw *clientWriter) beginSnapshot(storeID string) error {
	h := append(cw.head[:0], `{"type":"snapshot"`...)
	h = appendField(h, "store", storeID)
	cw.head = append(h, `,"configs":[`...)
	return cw.append(cw.head)
}

// endSnapshot ends a snapshot event of revision r.
func (cw *clientWriter) endSnapshot(r store.Revision) error {
	h := append(cw.head[:0], `],"revision":`...)
	h = strconv.AppendInt(h, r.Number, 10)
	h = appendField(h, "commit", r.Commit)
	cw.head = append(h, "}\n"...)
	cw.append(cw.head)
	return cw.endEvent(true)
}

// endUpdate ends an update event.
func (cw *clientWriter) endUpdate() error {
	cw.append([]byte("]}\n"))
	return cw.endEvent(true)
}

// heartbeat writes a heartbeat event.
func (cw *clientWriter) heartbeat(rev int64, storeID string) error {
	h := append(cw.head[:0], `{"type":"heartbeat","revision":`...)
	h = strconv.AppendInt(h, rev, 10)
	h = appendField(h, "store", storeID)
	cw.head = append(h, "}\n"...)
	cw.append(cw.head)
	return cw.endEvent(false)
}

// config adds c to the event being written, as docs/api.md renders a
// config in a watch event, its data base64-encoded piece by piece.
func (cw *clientWriter) config(c *store.ConfigVersion) error {
	h := cw.head[:0]
	if cw.n > 0 {
		h = append(h, ',')
	}
	cw.n++
	h = append(h, `{"name":`...)
	h = appendString(h, c.Name)
	h = append(h, `,"revision":`...)
	h = strconv.AppendInt(h, c.Revision, 10)
	h = appendField(h, "commit", c.Commit)
	h = appendField(h, "type", c.Type)
	h = append(h, `,"compiled":`...)
	h = strconv.AppendBool(h, c.Compiled)
	if c.Deleted {
		h = append(h, `,"deleted":true`...)
	}
	if len(c.Data) > 0 {
		h = append(h, `,"data":"`...)
	}
	cw.head = h
	if err := cw.append(h); err != nil {
		return err
	}
	if len(c.Data) > 0 {
		if err := cw.base64(c.Data); err != nil {
			return err
		}
		if err := cw.append([]byte{'"'}); err != nil {
			return err
		}
	}
	return cw.append([]byte{'}'})
}

// base64 adds the standard base64 encoding of p (as encoding/json encodes
// bytes) to the event, a piece at a time.
func (cw *clientWriter) base64(p []byte) error {
	for len(p) > 0 && cw.err == nil {
		buf := cw.bytes()
		free := pieceSize - len(buf)
		if free < 4 {
			cw.writeBuf()
			continue
		}
		n := min(len(p), free/4*3) // whole groups of 3, but for the last piece
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode(buf[len(buf):len(buf)+m], p[:n])
		*cw.buf = buf[:len(buf)+m]
		p = p[n:]
	}
	return cw.err
}

// appendField appends ,"key":"value" unless value is empty (omitempty).
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, as encoding/json writes it:
// control characters, quotes and backslashes escaped, invalid UTF-8 as
// U+FFFD; '<', '>', '&', U+2028 and U+2029 are escaped too.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
