package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// floorEnv, set to a number of connections, makes cfgbench the writer of
// the TCP floor (floorWriter).
const floorEnv = "CFGBENCH_FLOOR_WRITER"

// floorLine is as long as the daemon's update event of the soak's small
// config, and a line like the watchers read.
var floorLine = []byte(`{"type":"update","revision":2,"store":"00000000000000000000000000000000","commit":"0000000000000000000000000000000000000000","configs":[{"name":"small","revision":2,"commit":"0000000000000000000000000000000000000000","compiled":true,"data":"eyJuIjogMX0K"}]}` + "\n")

// tcpFloor measures what fanning a line out to n connections costs on
// this machine without the daemon: another process (cfgbench itself, as
// floorWriter) holding n connections, one goroutine each, writes a line
// of an update's size to every one, and goroutines of this process read
// them, as the soak's watchers read theirs, rounds times. It returns the
// time from the writer being told to each receipt.
func tcpFloor(n, rounds int) ([]time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), floorEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer cmd.Wait()
	defer stdin.Close()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("the floor's writer: %w", err)
	}
	addr = strings.TrimSpace(addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range n {
		c, err := dial(ctx, fmt.Sprintf("127.0.1.%d", 1+i%250), addr)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { c.Close() })
		wg.Go(func() {
			br := bufio.NewReaderSize(c, 4096)
			for {
				if _, err := br.ReadSlice('\n'); err != nil {
					return
				}
				got <- time.Now()
			}
		})
	}
	var each []time.Duration
	for r := range rounds {
		t0 := time.Now()
		if _, err := fmt.Fprintf(stdin, "%d\n", r); err != nil {
			return nil, err
		}
		for range n {
			select {
			case at := <-got:
				each = append(each, at.Sub(t0))
			case <-time.After(60 * time.Second):
				return nil, errors.New("the floor's writer stalled")
			}
		}
	}
	return each, nil
}

// floorWriter is the writer of the TCP floor: it listens on 127.0.0.1,
// prints its address, accepts n connections, and for each line on stdin
// writes floorLine to every connection, each from its own goroutine.
func floorWriter(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	wake := make([]chan struct{}, n)
	for i := range n {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		wake[i] = make(chan struct{}, 1)
		go func() {
			for range wake[i] {
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				c.Write(floorLine)
			}
		}()
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		for _, w := range wake {
			w <- struct{}{}
		}
	}
	return nil
}

// floorQuantiles formats the p50, p99 and max of ds.
func floorQuantiles(ds []time.Duration) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f ms", ms(quantile(ds, 0.5)), ms(quantile(ds, 0.99)), ms(slices.Max(ds)))
}
