package daemon

import (
	"fmt"
	"net"
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
// address.
type watchLimits struct {
	max, perAddr int

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

func newWatchLimits(max, perAddr int) *watchLimits {
	return &watchLimits{max: max, perAddr: perAddr, byAddr: map[string]int{}}
}

// Reasons a watch is refused, as cfg_watchers_rejected_total labels them.
const (
	rejectedStreams = "streams"
	rejectedAddress = "address"
)

// acquire takes a place for a stream from remote (a host:port); it returns
// the function that gives it back, or why there is none.
func (l *watchLimits) acquire(remote string) (release func(), reason, msg string) {
	addr := remoteHost(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max {
		return nil, rejectedStreams, fmt.Sprintf("too many watch streams: %d open, the most the daemon serves; retry later", l.open)
	}
	if n := l.byAddr[addr]; n >= l.perAddr {
		return nil, rejectedAddress, fmt.Sprintf("too many watch streams from %s: %d open, the most one address may hold; retry later", addr, n)
	}
	l.open++
	l.byAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.open--
			if l.byAddr[addr]--; l.byAddr[addr] == 0 {
				delete(l.byAddr, addr)
			}
		})
	}, "", ""
}

// remoteHost returns the address of a remote host:port without the port.
func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
