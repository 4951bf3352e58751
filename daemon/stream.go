package daemon

import (
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/store"
)

// chunkSize is the most bytes the daemon hands a client's connection in
// one write, and the size of the buffer a watch stream assembles its
// events in while it writes one.
const chunkSize = 32 << 10

// chunkHead is the room an event buffer keeps before its bytes for the
// header of an HTTP/1.1 chunk (its size in hex, CRLF).
const chunkHead = 8

// eventBuf is a buffer an event is assembled in: b[:chunkHead] is room for
// a chunk header, then come up to chunkSize bytes of the event, and the
// capacity leaves room for the CRLF after them.
type eventBuf struct{ b []byte }

// chunks are the buffers of the watch streams that are writing an event;
// a stream waiting for the next one holds none.
var chunks = sync.Pool{New: func() any { return &eventBuf{b: make([]byte, chunkHead, chunkHead+chunkSize+2)} }}

// clientWriter writes a response in pieces of at most chunkSize bytes,
// each with its own write deadline: a client that takes in none of a
// piece within the timeout fails the write, and with it the response.
// Watch events are assembled piece by piece, config by config, so that a
// stream holds one buffer of chunkSize and the data it is writing, never
// an event whole.
//
// A watch stream takes its connection over from net/http (start): it then
// writes the status line, the headers and the chunks of its body itself,
// one write per piece, and holds no more than its goroutine, a small one
// that notices the client leaving (watchClient) and the connection, where
// net/http holds 10 KiB of buffers and a request for as long as a
// response lasts. Where the connection cannot be
// taken over (not HTTP/1.1, a ResponseWriter that does not allow it), it
// writes through the ResponseWriter.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	conn    net.Conn // the connection once taken over, or nil
	timeout time.Duration
	buf     *eventBuf   // from chunks while an event is being written
	head    []byte      // scratch for the JSON around configs' data
	n       int         // configs in the event being written
	err     error       // the first write error: every later write fails with it
	sent    func()      // counts each event but heartbeats, once written
	aborted atomic.Bool // the stream must end: writes fail at once
}

func newClientWriter(w http.ResponseWriter, timeout time.Duration) *clientWriter {
	return &clientWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// start answers r with status 200 and the headers set on the
// ResponseWriter, taking the connection over if it can (HTTP/1.1). The
// body is chunked: it ends with close.
func (cw *clientWriter) start(r *http.Request) error {
	if !r.ProtoAtLeast(1, 1) {
		cw.w.WriteHeader(http.StatusOK)
		return nil
	}
	h := cw.w.Header().Clone()
	conn, _, err := cw.rc.Hijack()
	if err != nil {
		cw.w.WriteHeader(http.StatusOK)
		return nil
	}
	// What net/http held for the response goes with the request.
	cw.conn, cw.w, cw.rc = conn, nil, nil
	conn.SetReadDeadline(time.Time{})
	b := append(cw.bytes(), "HTTP/1.1 200 OK\r\n"...)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	for k, vs := range h {
		for _, v := range vs {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	cw.deadline()
	_, cw.err = conn.Write(b[chunkHead:])
	cw.buf.b = b[:chunkHead]
	cw.release()
	return cw.err
}

// close ends the response: a connection taken over gets the last chunk,
// unless a write failed or the stream was aborted, and is closed.
func (cw *clientWriter) close() {
	cw.release()
	if cw.conn == nil {
		return
	}
	if cw.err == nil && !cw.aborted.Load() {
		cw.deadline()
		cw.conn.Write([]byte("0\r\n\r\n"))
	}
	cw.conn.Close()
}

// abort makes the write in progress on a connection taken over, and every
// later one, fail at once; it may be called from any goroutine.
func (cw *clientWriter) abort() {
	cw.aborted.Store(true)
	if cw.conn != nil {
		cw.conn.SetWriteDeadline(time.Now())
	}
}

// watchClient reads what the client of a connection taken over sends,
// dropping it (a watch client sends nothing after its request), until
// the connection fails or ends, and then calls gone: a client that goes
// away ends its stream at once, as net/http ends the others' requests.
func (cw *clientWriter) watchClient(gone func()) {
	var b [1]byte
	for {
		if _, err := cw.conn.Read(b[:]); err != nil {
			gone()
			return
		}
	}
}

// deadline sets the deadline of the next write.
func (cw *clientWriter) deadline() {
	t := time.Now().Add(cw.timeout)
	if cw.aborted.Load() {
		t = time.Now()
	}
	if cw.conn != nil {
		cw.conn.SetWriteDeadline(t)
		return
	}
	cw.rc.SetWriteDeadline(t) // unsupported by test writers, which do not block
}

// write writes p through the ResponseWriter in pieces of at most
// chunkSize; it is for responses whose connection was not taken over.
func (cw *clientWriter) write(p []byte) error {
	for len(p) > 0 && cw.err == nil {
		n := min(len(p), chunkSize)
		cw.deadline()
		_, cw.err = cw.w.Write(p[:n])
		p = p[n:]
	}
	return cw.err
}

// bytes returns the event buffer, from its chunk header's room on,
// taking one from the pool if needed.
func (cw *clientWriter) bytes() []byte {
	if cw.buf == nil {
		cw.buf = chunks.Get().(*eventBuf)
	}
	return cw.buf.b
}

// append adds b to the event buffer, writing the buffer out when it is
// full.
func (cw *clientWriter) append(b []byte) error {
	for len(b) > 0 && cw.err == nil {
		buf := cw.bytes()
		if len(buf) == chunkHead+chunkSize {
			cw.writeBuf()
			continue
		}
		n := copy(buf[len(buf):chunkHead+chunkSize], b)
		cw.buf.b = buf[:len(buf)+n]
		b = b[n:]
	}
	return cw.err
}

// writeBuf writes the event buffer out, as one chunk on a connection
// taken over, and empties it.
func (cw *clientWriter) writeBuf() error {
	if cw.buf == nil || len(cw.buf.b) == chunkHead || cw.err != nil {
		return cw.err
	}
	b := cw.buf.b
	cw.buf.b = b[:chunkHead]
	cw.deadline()
	if cw.conn == nil {
		_, cw.err = cw.w.Write(b[chunkHead:])
		return cw.err
	}
	var size [chunkHead]byte
	h := append(strconv.AppendInt(size[:0], int64(len(b)-chunkHead), 16), '\r', '\n')
	start := chunkHead - len(h)
	copy(b[start:], h)
	_, cw.err = cw.conn.Write(append(b, '\r', '\n')[start:])
	return cw.err
}

// endEvent writes out the rest of the event, counts it (unless it is a
// heartbeat), flushes it to the client and gives the buffer back.
func (cw *clientWriter) endEvent(counted bool) error {
	cw.writeBuf()
	cw.release()
	cw.n = 0
	if counted && cw.err == nil && cw.sent != nil {
		cw.sent()
	}
	if cw.conn == nil && cw.err == nil {
		cw.deadline()
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	return cw.err
}

// line writes one whole event (encoded elsewhere), counts it and flushes
// it.
func (cw *clientWriter) line(b []byte) error {
	cw.append(b)
	return cw.endEvent(true)
}

// release gives the event buffer back, whatever was left unwritten.
func (cw *clientWriter) release() {
	if cw.buf != nil {
		cw.buf.b = cw.buf.b[:chunkHead]
		chunks.Put(cw.buf)
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
		free := chunkHead + chunkSize - len(buf)
		if free < 4 {
			cw.writeBuf()
			continue
		}
		n := min(len(p), free/4*3) // whole groups of 3, but for the last piece
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode(buf[len(buf):len(buf)+m], p[:n])
		cw.buf.b = buf[:len(buf)+m]
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
