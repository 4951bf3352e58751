//go:build !linux && !darwin

package daemon

import "net"

// limitUnsent does nothing where TCP_NOTSENT_LOWAT is not known: writes
// wait on the socket's send buffer.
func limitUnsent(net.Conn) {}
