package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// pieceSize is the most bytes the daemon hands a client's connection in
// one write, each write with a deadline of its own: the size of the
// buffer a watch stream assembles an event in (wire.EventEncoder).
const pieceSize = wire.PieceSize

// frames are the buffers in which a stream on a connection it took over
// frames a piece as one HTTP/1.1 chunk (writeChunk: its size, the piece,
// CRLF) and writes it with one write; a stream holds one
// only while it writes a piece.
var frames = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, pieceSize+16) }}

// clientWriter writes a response in pieces of at most pieceSize bytes,
// setting the write deadline of the connection before each: a client that
// takes in none of a piece within the timeout fails the write, and with it
// the response. A watch stream writes its events with a wire.EventEncoder,
// which assembles them config by config in a buffer of pieceSize and
// hands each piece to the connection as the buffer fills, the rest at the
// end of the event: it holds a piece and a frame while it writes an
// event, never an event whole, and neither while it waits for the next.
//
// A watch stream takes its connection over from net/http (takeOver) and
// runs in a goroutine of its own once its request has ended: net/http's
// buffers of the connection and its request (about 20 KiB) are let go,
// and the stream frames its chunks with writeChunk and its
// headers with http.Header.Write. Where the connection cannot be taken
// over (not HTTP/1.1, a ResponseWriter that does not allow it), the
// stream writes through the ResponseWriter and http.ResponseController.
type clientWriter struct {
	*wire.EventEncoder
	w       http.ResponseWriter // nil once the connection is taken over
	rc      *http.ResponseController
	conn    net.Conn // the connection once taken over, or nil
	timeout time.Duration
	until   time.Time // the write deadline of the connection
	at      time.Time // when the last write started
	err     error     // the first write error: every later write fails with it
	sent    func()    // counts each event but heartbeats, once written

	// abortMu is held to abort the response and to end it: once ended,
	// its ResponseWriter is not used again.
	abortMu sync.Mutex
	ended   bool
	aborted atomic.Bool // the response must end: writes fail at once
}

func newClientWriter(w http.ResponseWriter, timeout time.Duration) *clientWriter {
	cw := &clientWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	cw.EventEncoder = wire.NewEventEncoder(cw.writePiece)
	return cw
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
	f := frames.Get().(*bufio.Writer)
	defer putFrame(f)
	f.Reset(conn)
	fmt.Fprintf(f, "HTTP/1.1 %d %s\r\n", http.StatusOK, http.StatusText(http.StatusOK))
	h.Write(f)
	f.WriteString("\r\n")
	cw.deadline()
	cw.err = f.Flush()
	return true, cw.err
}

// close ends a response whose connection was taken over, whole, with the
// last chunk, or cut, without it (its client then cannot take it for
// whole), and closes the connection. A response whose write failed, or
// that was aborted (its client left, the daemon is shutting down), is cut:
// the last chunk could wait for a client that takes in nothing.
func (cw *clientWriter) close(whole bool) {
	cw.Release()
	if whole && cw.err == nil && !cw.aborted.Load() {
		f := frames.Get().(*bufio.Writer)
		f.Reset(cw.conn)
		httputil.NewChunkedWriter(f).Close() // the last chunk
		f.WriteString("\r\n")                // no trailers
		cw.deadline()
		f.Flush()
		putFrame(f)
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
// the timeout from now, or now once the response is aborted. A deadline
// less than a sixteenth of the timeout older than that is left as it is:
// a stream that writes often moves it once in many writes (moving it costs
// as much as a small write), and a write still fails once its client has
// taken in nothing for at most the timeout, at least 15/16 of it.
func (cw *clientWriter) deadline() {
	cw.at = time.Now()
	if until := cw.at.Add(cw.timeout); until.Sub(cw.until) >= cw.timeout/16 {
		cw.until = until
		cw.setDeadline(until)
	}
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
	cw.Release()
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

// writePiece hands a piece of an event to the connection, with its
// deadline: as one chunk, with one write, on a connection taken over. The
// last piece of an event is flushed to the client under the same
// deadline.
func (cw *clientWriter) writePiece(p []byte, last bool) error {
	if cw.err != nil {
		return cw.err
	}
	if len(p) > 0 {
		cw.deadline()
		if cw.conn == nil {
			_, cw.err = cw.w.Write(p)
		} else {
			f := frames.Get().(*bufio.Writer)
			f.Reset(cw.conn)
			writeChunk(f, p)
			cw.err = f.Flush()
			putFrame(f)
		}
	}
	if last && cw.err == nil && cw.conn == nil {
		if err := cw.rc.Flush(); err != nil {
			cw.err = err
		}
	}
	return cw.err
}

// writeChunk frames p as one HTTP/1.1 chunk in f, as
// httputil.NewChunkedWriter does (its size in hex, CRLF, p, CRLF), without
// allocating.
func writeChunk(f *bufio.Writer, p []byte) {
	const hex = "0123456789abcdef"
	shift := 0
	for len(p)>>shift >= 16 {
		shift += 4
	}
	for ; shift >= 0; shift -= 4 {
		f.WriteByte(hex[len(p)>>shift&15])
	}
	f.WriteString("\r\n")
	f.Write(p)
	f.WriteString("\r\n")
}

// putFrame gives a frame back, holding nothing.
func putFrame(f *bufio.Writer) {
	f.Reset(nil)
	frames.Put(f)
}

// counted counts an event written whole.
func (cw *clientWriter) counted(err error) error {
	if err == nil && cw.sent != nil {
		cw.sent()
	}
	return err
}

// endUpdate ends an update event and counts it.
func (cw *clientWriter) endUpdate() error { return cw.counted(cw.EndUpdate()) }

// endSnapshot ends a snapshot event of revision r and counts it.
func (cw *clientWriter) endSnapshot(r store.Revision) error {
	return cw.counted(cw.EndSnapshot(r.Number, r.Commit))
}

// event writes ev whole and counts it.
func (cw *clientWriter) event(ev wire.Event) error { return cw.counted(cw.Encode(ev)) }

// config adds c to the event being written.
func (cw *clientWriter) config(c *store.ConfigVersion) error {
	return cw.Config(wireConfig(c))
}

// wireConfig returns c as an event holds it.
func wireConfig(c *store.ConfigVersion) *wire.Config {
	return &wire.Config{Name: c.Name, Revision: c.Revision, Commit: c.Commit, Type: c.Type,
		Compiled: &c.Compiled, Deleted: c.Deleted, Data: c.Data}
}

// line writes an event encoded whole (one line, with its newline), in
// pieces of at most pieceSize, each with its deadline, as the encoder
// would have written it.
func (cw *clientWriter) line(b []byte) error {
	for {
		n := min(len(b), pieceSize)
		if err := cw.writePiece(b[:n], n == len(b)); err != nil || n == len(b) {
			return err
		}
		b = b[n:]
	}
}
