//go:build unix

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bigConfig is a compiled config of about size bytes.
func bigConfig(size int) string {
	return `{"blob":"` + strings.Repeat("x", size-12) + `"}` + "\n"
}

// dialFrom opens a TCP connection to the daemon from the local address ip
// (any of 127.0.0.0/8 reaches the daemon on Linux). The connection's
// receive buffer is small: a client that does not read stops the daemon's
// writes after a few kilobytes, rather than after the megabytes that the
// kernel's buffers could take on their own.
func (d *testDaemon) dialFrom(ip string) net.Conn {
	d.t.Helper()
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	c, err := dialer.Dial("tcp", strings.TrimPrefix(d.url, "http://"))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// sendRequest opens a connection from ip and sends a GET of path on it,
// without reading anything.
func (d *testDaemon) sendRequest(ip, path string) net.Conn {
	d.t.Helper()
	c := d.dialFrom(ip)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: cfg\r\n\r\n", path); err != nil {
		d.t.Fatal(err)
	}
	return c
}

// statusLine reads the status line of a response on c, and nothing more:
// once it arrives, the daemon has started writing the body.
func statusLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var line []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(line), "\r\n") {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("reading a status line: %v (got %q)", err, line)
		}
		line = append(line, b[0])
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(string(line))
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestNonReadingClientsMemory attacks the bound on what clients that
// never read can make the daemon hold: 100 watches of every config, then
// 100 GETs of a 5 MB config, none of them reading its body, hold about
// one copy of the config between them (the daemon once held a copy, an
// encoding and more per client: 1.4 GB for the watches).
func TestNonReadingClientsMemory(t *testing.T) {
	const size = 5 << 20
	r := newTestRepo(t)
	r.commit("materialized_configs/big.json", bigConfig(size), "materialized_configs/small.json", `{"n":1}`)
	d := startDaemon(t, r.dir, t.TempDir())
	if code, body, _ := d.do("GET", "/v1/configs/small", "", nil); code != 200 {
		t.Fatalf("GET small: %d %s", code, body)
	}
	// What the daemon and this test hold before the clients come.
	base := liveHeap()

	for _, path := range []string{"/v1/watch?configs=*", "/v1/configs/big"} {
		var conns []net.Conn
		for range 100 {
			conns = append(conns, d.sendRequest("127.0.0.1", path))
		}
		for _, c := range conns {
			if got := statusLine(t, c); got != "HTTP/1.1 200 OK" {
				t.Fatalf("GET %s: %s", path, got)
			}
		}
		// Every response has started, and none can finish.
		grown := liveHeap() - base
		t.Logf("GET %s from 100 clients that do not read: the heap grew by %.1f MB", path, float64(grown)/1e6)
		if grown > 4*size {
			t.Errorf("GET %s from 100 clients that do not read: the heap grew by %.1f MB, want at most %.1f MB (4 copies of the config)",
				path, float64(grown)/1e6, float64(4*size)/1e6)
		}
		for _, c := range conns {
			c.Close()
		}
	}
}

// TestNonReadingWatcherDropped attacks the write deadline: a watch whose
// client stops reading is closed after WriteTimeout and counted, and what
// it held is let go.
func TestNonReadingWatcherDropped(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/big.json", bigConfig(5<<20))
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	c := d.sendRequest("127.0.0.1", "/v1/watch?configs=*")
	if got := statusLine(t, c); got != "HTTP/1.1 200 OK" {
		t.Fatalf("watch: %s", got)
	}
	d.waitFor("the stream dropped for its write timeout", func() bool {
		return d.metric("cfg_watchers_dropped_total", "reason", "write_timeout") == 1
	})
	d.waitFor("no watch stream open", func() bool { return d.metric("cfg_watchers") == 0 })
	if got := d.metric("cfg_watch_queued_bytes"); got != 0 {
		t.Errorf("cfg_watch_queued_bytes = %v after the stream ended, want 0", got)
	}
	// The client, reading at last, gets what was sent and then the end.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("reading the dropped stream: %v, want its end", err)
	}
}

// TestWatchCaps attacks the caps on watch streams: past the most one
// address may hold, and past the most in all, a watch gets 503 with
// Retry-After, and a place given back is taken again.
func TestWatchCaps(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: 100 * time.Millisecond,
		MaxWatches: 3, MaxWatchesPerAddress: 2})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	watch := func(ip string) (net.Conn, *http.Response) {
		t.Helper()
		c := d.sendRequest(ip, "/v1/watch?configs=a")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, resp
	}
	// refused checks that resp is a 503 with Retry-After and message msg.
	refused := func(what string, resp *http.Response, msg string) {
		t.Helper()
		if resp.StatusCode != 503 {
			t.Errorf("%s: %s, want 503", what, resp.Status)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Retry-After") != "5" || string(body) != `{"error":"`+msg+`"}`+"\n" {
			t.Errorf("%s: Retry-After %q, %s; want 5, %s", what, resp.Header.Get("Retry-After"), body, msg)
		}
	}
	a1, resp := watch("127.0.0.1")
	if resp.StatusCode != 200 {
		t.Fatalf("first watch from 127.0.0.1: %s", resp.Status)
	}
	if _, resp := watch("127.0.0.1"); resp.StatusCode != 200 {
		t.Fatalf("second watch from 127.0.0.1: %s", resp.Status)
	}
	_, resp = watch("127.0.0.1")
	refused("a third watch from 127.0.0.1", resp, "too many watch streams from 127.0.0.1: 2 open, the most one address may hold; retry later")
	if _, resp := watch("127.0.0.2"); resp.StatusCode != 200 {
		t.Fatalf("watch from 127.0.0.2: %s", resp.Status)
	}
	_, resp = watch("127.0.0.3")
	refused("a fourth watch", resp, "too many watch streams: 3 open, the most the daemon serves; retry later")
	if got := d.metric("cfg_watchers_rejected_total", "reason", "address"); got != 1 {
		t.Errorf("rejected for the address: %v, want 1", got)
	}
	if got := d.metric("cfg_watchers_rejected_total", "reason", "streams"); got != 1 {
		t.Errorf("rejected for the streams: %v, want 1", got)
	}
	// A stream that ends gives its place back.
	a1.Close()
	d.waitFor("a place for 127.0.0.3", func() bool {
		c, resp := watch("127.0.0.3")
		c.Close()
		return resp.StatusCode == 200
	})
}

// TestSlowBodies attacks the read timeout: connections that send a body
// one byte at a time are answered and closed once ReadTimeout has passed,
// however long their body would take, while the daemon keeps serving
// (before, they were held for as long as they kept sending).
func TestSlowBodies(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, ReadTimeout: time.Second})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	const n = 50
	stop := make(chan struct{})
	var wg sync.WaitGroup
	closed := make(chan string, n)
	for i := range n {
		c := d.dialFrom("127.0.0.1")
		fmt.Fprintf(c, "POST /v1/hosts/web-%d HTTP/1.1\r\nHost: cfg\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n", i, token)
		wg.Add(2)
		go func() { // a byte every 100 ms: 100 s for the body
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				b = append(b, err.Error()...)
			}
			closed <- string(b)
		}()
	}
	for range n {
		got := <-closed
		if !strings.HasPrefix(got, "HTTP/1.1 400 Bad Request\r\n") || !strings.Contains(got, "i/o timeout") {
			t.Errorf("a slow body got %q, want a 400 for its read timeout and the end of the connection", got)
		}
	}
	if code, _, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 {
		t.Errorf("GET a after the slow bodies: %d", code)
	}
	close(stop)
	wg.Wait()
}

// TestIdleConnectionsClosed attacks the idle timeout: a keep-alive
// connection that sends no second request is closed after IdleTimeout
// (before, it was kept until the client left).
func TestIdleConnectionsClosed(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	c := d.sendRequest("127.0.0.1", "/v1/configs/a")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(body) != `{"a":1}` || resp.Close {
		t.Fatalf("GET a: %s %s (close %v), want 200 on a kept-alive connection", resp.Status, body, resp.Close)
	}
	// Nothing more is sent: the daemon closes the connection.
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("an idle connection: read %d bytes, %v; want EOF", n, err)
	}
}

// TestHeaderBytes attacks the bound on request headers: a request whose
// headers are over MaxHeaderBytes gets 431 without being read whole.
func TestHeaderBytes(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := startDaemon(t, r.dir, t.TempDir())
	c := d.dialFrom("127.0.0.1")
	go fmt.Fprintf(c, "GET /v1/configs/a HTTP/1.1\r\nHost: cfg\r\nX-Filler: %s\r\n\r\n", strings.Repeat("x", 2*MaxHeaderBytes))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if got := statusLine(t, c); got != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Errorf("a request with %d bytes of headers: %s, want 431", 2*MaxHeaderBytes, got)
	}
	if code, _, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 {
		t.Errorf("GET a: %d", code)
	}
}

// TestHeadWatch checks that a HEAD of a watch answers its headers and
// ends, rather than holding a stream that writes nothing.
func TestHeadWatch(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := startDaemon(t, r.dir, t.TempDir())
	code, body, h := d.do("HEAD", "/v1/watch?configs=a", "", nil)
	if code != 200 || body != "" || h.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("HEAD /v1/watch: %d %q %q", code, body, h.Get("Content-Type"))
	}
	d.waitFor("no watch stream open", func() bool { return d.metric("cfg_watchers") == 0 })
}
