//go:build linux || darwin

package daemon

import (
	"net"

	"golang.org/x/sys/unix"
)

// limitUnsent bounds the bytes c's socket holds that the kernel has not
// sent yet (TCP_NOTSENT_LOWAT) to pieceSize: a write waits once that many
// are queued, and goes on as soon as the client has taken in enough for
// fewer to be. So a client that takes in nothing pins at most about
// pieceSize of kernel memory beyond what its own receive window took, and
// a write's deadline is met by a client that takes in about a piece
// within it, whatever the size of the socket's send buffer.
func limitUnsent(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		// Without support (an old kernel), writes wait on the send buffer.
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, pieceSize)
	})
}
