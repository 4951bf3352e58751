package daemon

import (
	"fmt"
	"net"
	"net/http"
	"sync"
)

// ReservedFDs is how many file descriptors the daemon keeps out of the
// reach of clients: its store, the repository's pack files and refs, file
// system notifications and logs. Connections are limited to the process's
// file descriptor limit minus these, so that a flood of connections never
// leaves the tailer unable to open packed-refs.
const ReservedFDs = 128

// connLimits returns the connection limit for cfg.MaxConnections and the
// process's file descriptor limit, if it is known.
func connLimits(want, fds int, fdsKnown bool) (int, error) {
	room := fds - ReservedFDs
	if want <= 0 {
		want = DefaultMaxConnections
		if fdsKnown {
			want = min(want, room)
		}
	}
	if fdsKnown && want > room {
		return 0, fmt.Errorf("max connections %d: above the %d that the file descriptor limit %d leaves after the %d the daemon keeps for its store and repository; raise the limit (ulimit -n) or lower max connections", want, max(room, 0), fds, ReservedFDs)
	}
	if want < 1 {
		return 0, fmt.Errorf("the file descriptor limit %d leaves no connections after the %d the daemon keeps for its store and repository; raise it (ulimit -n)", fds, ReservedFDs)
	}
	return want, nil
}

// limitListener accepts a connection only while fewer than cap(sem) are
// open; the others wait in the kernel's backlog, using no descriptor. The
// semaphore is the daemon's, shared by every listener it serves.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, sem chan struct{}) *limitListener {
	return &limitListener{Listener: ln, sem: sem, done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	limitUnsent(c)
	return &limitConn{Conn: c, sem: l.sem}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its place back when it is closed.
type limitConn struct {
	net.Conn
	sem       chan struct{}
	closeOnce sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { <-c.sem })
	return err
}

// watchLimits caps the watch streams open at once, in all and per remote
// address, and the bytes of their parameters (query or body), which a
// stream holds parsed for as long as it lasts.
type watchLimits struct {
	max, perAddr           int
	maxBytes, perAddrBytes int64

	mu     sync.Mutex
	open   int
	bytes  int64
	byAddr map[string]*addrWatches
}

// addrWatches is what the watch streams of one remote address hold.
type addrWatches struct {
	open  int
	bytes int64
}

func newWatchLimits(max, perAddr int, maxBytes, perAddrBytes int64) *watchLimits {
	return &watchLimits{max: max, perAddr: perAddr, maxBytes: maxBytes, perAddrBytes: perAddrBytes, byAddr: map[string]*addrWatches{}}
}

// Reasons a watch is refused, as cfg_watchers_rejected_total labels them.
const (
	rejectedStreams = "streams"
	rejectedAddress = "address"
	rejectedBytes   = "bytes"
)

// acquire takes a place for a stream from remote (a host:port) whose
// parameters take size bytes; it returns the function that gives it back,
// or why there is none.
func (l *watchLimits) acquire(remote string, size int64) (release func(), reason, msg string) {
	addr := remoteHost(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.byAddr[addr]
	if a == nil {
		a = &addrWatches{}
	}
	switch {
	case l.open >= l.max:
		return nil, rejectedStreams, fmt.Sprintf("too many watch streams: %d open, the most the daemon serves; retry later", l.open)
	case a.open >= l.perAddr:
		return nil, rejectedAddress, fmt.Sprintf("too many watch streams from %s: %d open, the most one address may hold; retry later", addr, a.open)
	case l.bytes+size > l.maxBytes:
		return nil, rejectedBytes, fmt.Sprintf("watch parameters of %d bytes: the open watch streams hold %d of the %d bytes of parameters the daemon takes; retry later", size, l.bytes, l.maxBytes)
	case a.bytes+size > l.perAddrBytes:
		return nil, rejectedBytes, fmt.Sprintf("watch parameters of %d bytes: the watch streams from %s hold %d of the %d bytes of parameters one address may; retry later", size, addr, a.bytes, l.perAddrBytes)
	}
	l.open++
	l.bytes += size
	a.open++
	a.bytes += size
	l.byAddr[addr] = a
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.open--
			l.bytes -= size
			a.open--
			a.bytes -= size
			if a.open == 0 {
				delete(l.byAddr, addr)
			}
		})
	}, "", ""
}

// watchSize returns the bytes of r's watch parameters, which the daemon
// holds for as long as the stream lasts: its query, and the body of a
// POST, by its Content-Length (MaxBody for one without). It is known
// before the body is read.
func watchSize(r *http.Request) int64 {
	n := int64(len(r.URL.RawQuery))
	if r.Method == http.MethodPost {
		if r.ContentLength >= 0 {
			n += r.ContentLength
		} else {
			n += MaxBody
		}
	}
	return n
}

// remoteHost returns the address of a remote host:port without the port.
func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
