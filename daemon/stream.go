package daemon

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/store"
)

// chunkSize is the most bytes the daemon hands a client's connection in
// one write, and the size of the buffer a watch stream assembles its
// events in while it writes one.
const chunkSize = 32 << 10

// chunks are the buffers of the watch streams that are writing an event;
// a stream waiting for the next one holds none.
var chunks = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

// clientWriter writes a response in pieces of at most chunkSize bytes,
// each with its own write deadline: a client that takes in none of a
// piece within the timeout fails the write, and with it the response.
// Watch events are assembled piece by piece, config by config, so that a
// stream holds one buffer of chunkSize and the data it is writing, never
// an event whole.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     *[]byte // from chunks while an event is being written
	head    []byte  // scratch for the JSON around configs' data
	n       int     // configs in the event being written
	err     error   // the first write error: every later write fails with it
	sent    func()  // counts each event but heartbeats, once written
}

func newClientWriter(w http.ResponseWriter, timeout time.Duration) *clientWriter {
	return &clientWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// write hands p to the connection in pieces of at most chunkSize.
func (cw *clientWriter) write(p []byte) error {
	for len(p) > 0 && cw.err == nil {
		n := min(len(p), chunkSize)
		cw.rc.SetWriteDeadline(time.Now().Add(cw.timeout)) // unsupported by test writers, which do not block
		_, cw.err = cw.w.Write(p[:n])
		p = p[n:]
	}
	return cw.err
}

// flush sends what the response buffers hold.
func (cw *clientWriter) flush() error {
	if cw.err == nil {
		cw.rc.SetWriteDeadline(time.Now().Add(cw.timeout))
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	return cw.err
}

// bytes returns the event buffer, taking one from the pool if needed.
func (cw *clientWriter) bytes() []byte {
	if cw.buf == nil {
		cw.buf = chunks.Get().(*[]byte)
	}
	return *cw.buf
}

// append adds b to the event buffer, writing the buffer out when it
// would overflow.
func (cw *clientWriter) append(b []byte) error {
	for len(b) > 0 {
		buf := cw.bytes()
		if len(buf) == cap(buf) {
			if err := cw.writeBuf(); err != nil {
				return err
			}
			continue
		}
		n := copy(buf[len(buf):cap(buf)], b)
		*cw.buf = buf[:len(buf)+n]
		b = b[n:]
	}
	return cw.err
}

// writeBuf writes the event buffer out and empties it.
func (cw *clientWriter) writeBuf() error {
	if cw.buf != nil && len(*cw.buf) > 0 {
		cw.write(*cw.buf)
		*cw.buf = (*cw.buf)[:0]
	}
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
	return cw.flush()
}

// line writes one whole event (encoded elsewhere), counts it and flushes
// it.
func (cw *clientWriter) line(b []byte) error {
	cw.write(b)
	return cw.endEvent(true)
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
	for len(p) > 0 {
		buf := cw.bytes()
		free := cap(buf) - len(buf)
		if free < 4 {
			if err := cw.writeBuf(); err != nil {
				return err
			}
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

// release gives the event buffer back, whatever was left unwritten.
func (cw *clientWriter) release() {
	if cw.buf != nil {
		*cw.buf = (*cw.buf)[:0]
		chunks.Put(cw.buf)
		cw.buf = nil
	}
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
