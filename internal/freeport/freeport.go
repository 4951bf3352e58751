// Package freeport hands out TCP ports on 127.0.0.1 for processes that must
// be told their port before they start (etcd members, a demo service, a
// daemon started with a fixed --listen), in tests and benchmarks.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Min is the lowest port Ports returns.
const Min = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Ports returns n ports that were free on 127.0.0.1 a moment ago. They are
// below the system's ephemeral range, from which every listener on port 0
// gets its port, so that no such listener (a daemon or agent started on
// port 0, another test's server) can take one before the process told it
// binds it; and no port is returned twice by one process. They come from
// a part of that range that the process ID picks (pick) while it has free
// ports, so that processes asking at the same time rarely meet.
func Ports(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	low := ephemeralLow()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000*n {
			return nil, fmt.Errorf("no %d free ports in [%d, %d) after %d tries", n, Min, low, tries)
		}
		port := pick(low, tries < 100*n)
		if given[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		ln.Close()
		given[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// slices is the number of parts of the range below the ephemeral one that
// processes take their ports from by their process ID: processes that ask
// for ports at the same time (test binaries of several packages, each
// starting etcd members) rarely meet in one, so a port that one of them
// checked, or that its killed member left free until it restarts, is not
// taken by another meanwhile.
const slices = 64

// pick returns a random port below low: from this process's part of the
// range if own, or else from all of it.
func pick(low int, own bool) int {
	size := (low - Min) / slices
	if !own || size < 16 {
		return Min + rand.N(low-Min)
	}
	return Min + os.Getpid()%slices*size + rand.N(size)
}

// ephemeralLow returns the first port of the system's ephemeral range:
// Linux's ip_local_port_range, or IANA's 49152 where that cannot be read.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 49152
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 49152
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= Min+1000 {
		return 49152
	}
	return low
}
