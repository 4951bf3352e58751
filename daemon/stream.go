package daemon

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfg-dev/cfg/internal/jsontext"
	"github.com/cfg-dev/cfg/store"
)

// pieceSize is the most bytes the daemon hands a client's connection in
// one write, each write with a deadline of its own, and the size of the
// buffer a watch stream assembles an event in while it writes it.
const pieceSize = 32 << 10

// eventBufs are the buffers of a watch stream while it writes an event:
// the piece it assembles, and, on a connection it took over, the buffer
// the piece is framed in as one HTTP/1.1 chunk (httputil.NewChunkedWriter:
// its size, the piece, CRLF) and written with one write.
type eventBufs struct {
	piece []byte
	frame *bufio.Writer
}

// events are the buffers of the watch streams that are writing an event;
// a stream waiting for the next one holds none.
var events = sync.Pool{New: func() any {
	return &eventBufs{piece: make([]byte, 0, pieceSize), frame: bufio.NewWriterSize(nil, pieceSize+16)}
}}

// clientWriter writes a response in pieces of at most pieceSize bytes,
// setting the write deadline of the connection before each: a client that
// takes in none of a piece within the timeout fails the write, and with it
// the response. A watch stream assembles its events config by config in a
// buffer of pieceSize, base64-encoding a config's data a piece at a time,
// and hands each piece to the connection as the buffer fills, the rest at
// the end of the event: it holds the buffers of eventBufs while it writes
// an event, never an event whole, and none while it waits for the next.
//
// A watch stream takes its connection over from net/http (takeOver) and
// runs in a goroutine of its own once its request has ended: net/http's
// buffers of the connection and its request (about 20 KiB) are let go,
// and the stream frames its chunks with httputil.NewChunkedWriter and its
// headers with http.Header.Write. Where the connection cannot be taken
// over (not HTTP/1.1, a ResponseWriter that does not allow it), the
// stream writes through the ResponseWriter and http.ResponseController.
type clientWriter struct {
	w       http.ResponseWriter // nil once the connection is taken over
	rc      *http.ResponseController
	conn    net.Conn // the connection once taken over, or nil
	timeout time.Duration
	bufs    *eventBufs // from events while an event is being written
	head    []byte     // scratch for the JSON around configs' data
	n       int        // configs in the event being written
	until   time.Time  // the deadline of the last write
	err     error      // the first write error: every later write fails with it
	sent    func()     // counts each event but heartbeats, once written

	// abortMu is held to abort the response and to end it: once ended,
	// its ResponseWriter is not used again.
	abortMu sync.Mutex
	ended   bool
	aborted atomic.Bool // the response must end: writes fail at once
}

func newClientWriter(w http.ResponseWriter, timeout time.Duration) *clientWriter {
	return &clientWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// takeOver takes r's connection over from net/http, if it is HTTP/1.1 and
// the ResponseWriter allows it, and answers with status 200 and the
// headers set on the ResponseWriter; the body is chunked and ends with the
// connection. It reports whether it took the connection over; if it did
// not, the stream writes through the ResponseWriter.
func (cw *clientWriter) takeOver(r *http.Request) (bool, error) {
	if !r.ProtoAtLeast(1, 1) {
		return false, nil
	}
	h := cw.w.Header().Clone()
	conn, _, err := cw.rc.Hijack()
	if err != nil {
		return false, nil
	}
	// What net/http held for the response goes with the request.
	cw.conn, cw.w, cw.rc = conn, nil, nil
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	f := cw.buffers().frame
	f.Reset(conn)
	fmt.Fprintf(f, "HTTP/1.1 %d %s\r\n", http.StatusOK, http.StatusText(http.StatusOK))
	h.Write(f)
	f.WriteString("\r\n")
	cw.deadline()
	cw.err = f.Flush()
	cw.release()
	return true, cw.err
}

// close ends a response whose connection was taken over, whole, with the
// last chunk, or cut, without it (its client then cannot take it for
// whole), and closes the connection. A response whose write failed, or
// that was aborted (its client left, the daemon is shutting down), is cut:
// the last chunk could wait for a client that takes in nothing.
func (cw *clientWriter) close(whole bool) {
	cw.release()
	if whole && cw.err == nil && !cw.aborted.Load() {
		f := cw.buffers().frame
		f.Reset(cw.conn)
		httputil.NewChunkedWriter(f).Close() // the last chunk
		f.WriteString("\r\n")                // no trailers
		cw.deadline()
		f.Flush()
		cw.release()
	}
	cw.conn.Close()
}

// watchClient reads what the client of a connection taken over sends,
// dropping it (a watch client sends nothing after its request), until the
// connection fails or ends, and then calls gone: a client that goes away
// ends its stream at once, as net/http ends the requests of the others.
func (cw *clientWriter) watchClient(gone func()) {
	var b [1]byte
	for {
		if _, err := cw.conn.Read(b[:]); err != nil {
			gone()
			return
		}
	}
}

// setDeadline sets the write deadline of the connection.
func (cw *clientWriter) setDeadline(t time.Time) {
	if cw.conn != nil {
		cw.conn.SetWriteDeadline(t)
		return
	}
	cw.rc.SetWriteDeadline(t) // unsupported by test writers, which do not block
}

// deadline sets the write deadline of the connection for the next write:
// the timeout from now, or now once the response is aborted.
func (cw *clientWriter) deadline() {
	cw.until = time.Now().Add(cw.timeout)
	cw.setDeadline(cw.until)
	if cw.aborted.Load() {
		// abort may have set its deadline before this one.
		cw.setDeadline(time.Now())
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
		cw.setDeadline(time.Now())
	}
}

// end gives the buffers back and lets go of the ResponseWriter: abort no
// longer touches it.
func (cw *clientWriter) end() {
	cw.release()
	cw.abortMu.Lock()
	defer cw.abortMu.Unlock()
	cw.ended = true
}

// write hands p to the ResponseWriter in pieces of at most pieceSize, each
// with its deadline; it is for a response that is not a watch stream.
func (cw *clientWriter) write(p []byte) error {
	for len(p) > 0 && cw.err == nil {
		n := min(len(p), pieceSize)
		cw.deadline()
		_, cw.err = cw.w.Write(p[:n])
		p = p[n:]
	}
	return cw.err
}

// flush sends what the ResponseWriter holds to the client; a connection
// taken over holds nothing between pieces.
func (cw *clientWriter) flush() error {
	if cw.err == nil && cw.conn == nil {
		cw.deadline()
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	return cw.err
}

// buffers returns the event's buffers, taking them from the pool if
// needed.
func (cw *clientWriter) buffers() *eventBufs {
	if cw.bufs == nil {
		cw.bufs = events.Get().(*eventBufs)
	}
	return cw.bufs
}

// append adds b to the piece being assembled, writing the piece out
// whenever it is full.
func (cw *clientWriter) append(b []byte) error {
	for len(b) > 0 && cw.err == nil {
		bufs := cw.buffers()
		if len(bufs.piece) == pieceSize {
			cw.writePiece()
			continue
		}
		n := copy(bufs.piece[len(bufs.piece):pieceSize], b)
		bufs.piece = bufs.piece[:len(bufs.piece)+n]
		b = b[n:]
	}
	return cw.err
}

// writePiece hands the piece assembled to the connection, with its
// deadline: as one chunk, with one write, on a connection taken over.
func (cw *clientWriter) writePiece() error {
	if cw.bufs == nil || len(cw.bufs.piece) == 0 || cw.err != nil {
		return cw.err
	}
	p := cw.bufs.piece
	cw.bufs.piece = p[:0]
	cw.deadline()
	if cw.conn == nil {
		_, cw.err = cw.w.Write(p)
		return cw.err
	}
	f := cw.bufs.frame
	f.Reset(cw.conn)
	httputil.NewChunkedWriter(f).Write(p)
	cw.err = f.Flush()
	return cw.err
}

// endEvent writes out the rest of the event and flushes it to the client,
// under one deadline, gives the buffers back and counts the event (unless
// it is a heartbeat).
func (cw *clientWriter) endEvent(counted bool) error {
	cw.n = 0
	if cw.writePiece() == nil && cw.conn == nil {
		// The deadline writePiece set covers the flush.
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

// release gives the event's buffers back, whatever they held.
func (cw *clientWriter) release() {
	if cw.bufs != nil {
		cw.bufs.piece = cw.bufs.piece[:0]
		cw.bufs.frame.Reset(nil)
		events.Put(cw.bufs)
		cw.bufs = nil
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
	h = jsontext.AppendStringHTML(h, c.Name)
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
		bufs := cw.buffers()
		free := pieceSize - len(bufs.piece)
		if free < 4 {
			cw.writePiece()
			continue
		}
		n := min(len(p), free/4*3) // whole groups of 3, but for the last piece
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode(bufs.piece[len(bufs.piece):len(bufs.piece)+m], p[:n])
		bufs.piece = bufs.piece[:len(bufs.piece)+m]
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
	return jsontext.AppendStringHTML(b, value)
}
