package freeport

import (
	"fmt"
	"net"
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
