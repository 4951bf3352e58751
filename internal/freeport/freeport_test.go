package freeport

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestPortsFreeAndDistinct: every port is bindable, below the ephemeral
// range, and never handed out twice.
func TestPortsFreeAndDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		ports, err := Ports(5)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < Min || p >= ephemeralLow() {
				t.Errorf("port %d: want it in [%d, %d)", p, Min, ephemeralLow())
			}
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Errorf("port %d: %v", p, err)
				continue
			}
			ln.Close()
		}
	}
}

// TestPortsFromOwnPart: a process takes its ports from the part of the
// range its process ID picks, which other processes rarely share.
func TestPortsFromOwnPart(t *testing.T) {
	// The part holds a few hundred ports: start from none given, so that
	// runs of the test in one process do not use the part up; the ports
	// given before are never given again.
	mu.Lock()
	before := given
	given = map[int]bool{}
	mu.Unlock()
	defer func() {
		mu.Lock()
		for p := range given {
			before[p] = true
		}
		given = before
		mu.Unlock()
	}()
	ports, err := Ports(8)
	if err != nil {
		t.Fatal(err)
	}
	size := (ephemeralLow() - Min) / slices
	first := Min + os.Getpid()%slices*size
	for _, p := range ports {
		if p < first || p >= first+size {
			t.Errorf("port %d outside this process's part [%d, %d)", p, first, first+size)
		}
	}
}
