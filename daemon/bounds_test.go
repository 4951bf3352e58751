//go:build unix

package daemon

import (
	"bufio"
	"encoding/json"
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

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/internal/racecheck"
	"github.com/cfg-dev/cfg/wire"
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

// memoryWhy is why the tests that measure what clients cost the daemon run
// without the race detector: it makes goroutines' stacks and many
// allocations bigger, and the bounds do not hold then.
const memoryWhy = "measures the memory clients cost the daemon, which the race detector makes bigger"

// TestNonReadingClients attacks the daemon with clients that never read:
// 100 watches of every config, then 100 GETs of a 5 MB config, none of
// them reading its body, are each answered and every stream gets to
// writing the config, side by side; once they go, every stream ends.
// TestNonReadingClientsMemory measures what they hold.
func TestNonReadingClients(t *testing.T) {
	nonReadingClients(t, false)
}

// TestNonReadingClientsMemory attacks the bound on what clients that
// never read can make the daemon hold: those of TestNonReadingClients
// hold one copy of the config between them, and at most a stream's cost
// and the two buffers of an event being written each (the daemon once held
// a copy, an encoding and more per client: 1.4 GB for the watches).
func TestNonReadingClientsMemory(t *testing.T) {
	racecheck.SkipUnder(t, memoryWhy)
	nonReadingClients(t, true)
}

// nonReadingClients runs the attack of TestNonReadingClients, and if
// measure, checks what the clients make the daemon hold.
func nonReadingClients(t *testing.T, measure bool) {
	const size, n = 5 << 20, 100
	r := newTestRepo(t)
	r.commit("materialized_configs/big.json", bigConfig(size), "materialized_configs/small.json", `{"n":1}`)
	// No client is dropped for its write timeout while the test runs.
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, WriteTimeout: 10 * time.Minute})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	if code, body, _ := d.do("GET", "/v1/configs/small", "", nil); code != 200 {
		t.Fatalf("GET small: %d %s", code, body)
	}
	// What the daemon and this test hold before the clients come.
	base := memInUse()

	for _, path := range []string{"/v1/watch?configs=*", "/v1/configs/big"} {
		var conns []net.Conn
		for range n {
			conns = append(conns, d.sendRequest("127.0.0.1", path))
		}
		for _, c := range conns {
			if got := statusLine(t, c); got != "HTTP/1.1 200 OK" {
				t.Fatalf("GET %s: %s", path, got)
			}
		}
		if strings.HasPrefix(path, "/v1/watch") {
			// Every stream is writing the big config, and none can finish
			// (each encodes it until its connection is full: slow under
			// the race detector).
			for deadline := time.Now().Add(2 * time.Minute); d.metric("cfg_watch_queued_bytes") < n*size; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%v bytes of config data being written, want %d: not every stream is writing the big config", d.metric("cfg_watch_queued_bytes"), n*size)
				}
			}
		}
		if measure {
			grown := memInUse() - base
			t.Logf("GET %s from %d clients that do not read: the heap and stacks grew by %.1f MB", path, n, float64(grown)/1e6)
			if limit := int64(size + n*writingStreamBytes); grown > limit {
				t.Errorf("GET %s from %d clients that do not read: the heap and stacks grew by %.1f MB, want at most %.1f MB (a copy of the config, and %d KiB a client)",
					path, n, float64(grown)/1e6, float64(limit)/1e6, writingStreamBytes>>10)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		d.waitFor("no watch stream open", func() bool { return d.metric("cfg_watchers") == 0 })
	}
}

// TestNonReadingWatcherDropped attacks the write deadline: a watch whose
// client stops reading is closed after WriteTimeout and counted, and what
// it held is let go.
func TestNonReadingWatcherDropped(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/big.json", bigConfig(5<<20))
	// The write timeout also bounds the test's own requests (/healthz,
	// /metrics): 2 s leaves them time on a loaded machine.
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, WriteTimeout: 2 * time.Second})
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
	n, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("reading the dropped stream: %v, want its end", err)
	}
	// What the daemon queued for the client is its receive window and
	// about a piece (it was the socket's send buffer, megabytes).
	if n > 128<<10 {
		t.Errorf("a client that never read got %d KiB once dropped, want at most 128 KiB: the daemon queued that much in its socket", n>>10)
	}
}

// slowReader reads at most n bytes from r every tick.
type slowReader struct {
	r    io.Reader
	n    int
	tick *time.Ticker
}

func (s *slowReader) Read(p []byte) (int, error) {
	<-s.tick.C
	return s.r.Read(p[:min(len(p), s.n)])
}

// TestSlowReaderKept attacks the write deadline from the other side: it
// bounds each piece the daemon writes, not the response, so a client that
// reads a 1 MB snapshot, or the config itself with GET, steadily but
// slowly (at most 400 KB/s, so 2.6 s or more) gets it whole, although the
// write timeout is 1 s (long enough that a reader descheduled on a loaded
// machine is not taken for one that stopped).
func TestSlowReaderKept(t *testing.T) {
	const size = 1 << 20
	r := newTestRepo(t)
	big := bigConfig(size)
	r.commit("materialized_configs/big.json", big)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, WriteTimeout: time.Second})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	// slowly sends a GET of path and reads its response at most 4 KiB
	// every 10 ms.
	slowly := func(path string) (*http.Response, func()) {
		c := d.sendRequest("127.0.0.1", path)
		tick := time.NewTicker(10 * time.Millisecond)
		br := bufio.NewReaderSize(&slowReader{r: c, n: 4 << 10, tick: tick}, 64<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, tick.Stop
	}

	resp, stop := slowly("/v1/watch?configs=big")
	defer stop()
	start := time.Now()
	line, err := bufio.NewReaderSize(resp.Body, 64<<10).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the snapshot slowly for %v: %v (got %d bytes)", time.Since(start).Round(time.Millisecond), err, len(line))
	}
	var ev wire.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Configs) != 1 || string(ev.Configs[0].Data) != big {
		t.Errorf("the snapshot read slowly: %d configs, want big whole", len(ev.Configs))
	}
	t.Logf("the snapshot took %v to read", time.Since(start).Round(time.Millisecond))
	if got := d.metric("cfg_watchers_dropped_total", "reason", "write_timeout"); got != 0 {
		t.Errorf("streams dropped for their write timeout: %v, want 0", got)
	}

	resp, stop = slowly("/v1/configs/big")
	defer stop()
	start = time.Now()
	data, err := io.ReadAll(resp.Body)
	if err != nil || string(data) != big {
		t.Errorf("GET big read slowly for %v: %d bytes, %v; want it whole", time.Since(start).Round(time.Millisecond), len(data), err)
	}
	t.Logf("GET big took %v to read", time.Since(start).Round(time.Millisecond))
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

// watchBodyOf returns the body of a POST /v1/watch of config a and
// made-up names of three characters, the most names a byte of body can
// bring, size bytes long.
func watchBodyOf(size int) string {
	var b strings.Builder
	b.WriteString(`{"configs":["a"`)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := 0; b.Len() < size-8; i++ {
		fmt.Fprintf(&b, `,"%c%c%c"`, alphabet[i%36], alphabet[i/36%36], alphabet[i/36/36%36])
	}
	b.WriteString("]}")
	for b.Len() < size {
		b.WriteString(" ")
	}
	return b.String()
}

// TestWatchParameterBytes attacks the bound on the watch parameters the
// daemon holds: POST /v1/watch bodies of 900 KB each are taken while those
// of the open streams fit in 2 MiB from one address and 3 MiB in all, and
// get 503 with Retry-After beyond, before their body is read; a place given
// back is taken again. TestWatchParameterBytesMemory measures what the
// streams' parameters cost.
func TestWatchParameterBytes(t *testing.T) {
	watchParameterBytes(t, false)
}

// TestWatchParameterBytesMemory attacks what the parameters of the watch
// streams of TestWatchParameterBytes cost the daemon: their parsed names
// cost at most 8 times their bytes (before, any client could make the
// daemon hold 1 MiB of body, parsed, per stream: 8 GB for 8,000).
func TestWatchParameterBytesMemory(t *testing.T) {
	racecheck.SkipUnder(t, memoryWhy)
	watchParameterBytes(t, true)
}

// watchParameterBytes runs the attack of TestWatchParameterBytes, and if
// measure, checks what the streams' parameters cost.
func watchParameterBytes(t *testing.T, measure bool) {
	const size = 900 << 10
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: time.Hour,
		MaxWatchBytes: 3 << 20, MaxWatchBytesPerAddress: 2 << 20})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	body := watchBodyOf(size)
	// watch sends the headers of a watch with body, and the body only if
	// withBody: a refused watch is answered before its body is read.
	watch := func(ip string, withBody bool) (net.Conn, *http.Response) {
		t.Helper()
		c := d.dialFrom(ip)
		fmt.Fprintf(c, "POST /v1/watch HTTP/1.1\r\nHost: cfg\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		if withBody {
			go c.Write([]byte(body))
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, resp
	}
	refused := func(what string, resp *http.Response, msg string) {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || string(body) != `{"error":"`+msg+`"}`+"\n" {
			t.Errorf("%s: %s, Retry-After %q, %s; want 503, 5, %s", what, resp.Status, resp.Header.Get("Retry-After"), body, msg)
		}
	}
	base := memInUse()
	a1, resp := watch("127.0.0.1", true)
	if resp.StatusCode != 200 {
		t.Fatalf("first watch from 127.0.0.1: %s", resp.Status)
	}
	if _, resp := watch("127.0.0.1", true); resp.StatusCode != 200 {
		t.Fatalf("second watch from 127.0.0.1: %s", resp.Status)
	}
	_, resp = watch("127.0.0.1", false)
	refused("a third watch from 127.0.0.1", resp, fmt.Sprintf("watch parameters of %d bytes: the watch streams from 127.0.0.1 hold %d of the 2097152 bytes of parameters one address may; retry later", len(body), 2*len(body)))
	if _, resp := watch("127.0.0.2", true); resp.StatusCode != 200 {
		t.Fatalf("watch from 127.0.0.2: %s", resp.Status)
	}
	if measure {
		grown := memInUse() - base
		t.Logf("3 watch streams of %d KB of parameters: %.1f MB", size>>10, float64(grown)/1e6)
		if grown > 3*8*size {
			t.Errorf("3 watch streams of %d KB of parameters hold %.1f MB, want at most 8 times their parameters, %.1f MB", size>>10, float64(grown)/1e6, float64(3*8*size)/1e6)
		}
	}
	_, resp = watch("127.0.0.3", false)
	refused("a watch from 127.0.0.3", resp, fmt.Sprintf("watch parameters of %d bytes: the open watch streams hold %d of the 3145728 bytes of parameters the daemon takes; retry later", len(body), 3*len(body)))
	if got := d.metric("cfg_watchers_rejected_total", "reason", "bytes"); got != 2 {
		t.Errorf("rejected for their bytes: %v, want 2", got)
	}
	a1.Close()
	d.waitFor("a place for 127.0.0.3", func() bool {
		c, resp := watch("127.0.0.3", true)
		c.Close()
		return resp.StatusCode == 200
	})
}

// trickle writes b to c every 100 ms, in a goroutine counted by wg,
// until stop is closed or a write fails.
func trickle(wg *sync.WaitGroup, c net.Conn, b string, stop <-chan struct{}) {
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(c, b); err != nil {
					return
				}
			}
		}
	})
}

// TestSlowBodies attacks the read timeout: connections that send a body
// one byte at a time (host reports, and watches, which need no token) are
// answered and closed once ReadTimeout has passed, however long their body
// would take, while the daemon keeps serving (before, they were held for
// as long as they kept sending).
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
		if i%2 == 0 {
			fmt.Fprintf(c, "POST /v1/hosts/web-%d HTTP/1.1\r\nHost: cfg\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n", i, token)
		} else { // no token needed
			fmt.Fprintf(c, "POST /v1/watch HTTP/1.1\r\nHost: cfg\r\nContent-Length: 1000\r\n\r\n")
		}
		wg.Add(1)
		trickle(&wg, c, " ", stop) // 100 s for the body
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
	// The slow watches gave their places back.
	w := d.watchBody(`{"configs":["a"]}`)
	w.expect(`snapshot 1 a@1={"a":1}`)
	close(stop)
	wg.Wait()
}

// TestSlowHeaders attacks the header timeout: connections that never
// finish their headers, sending a byte of them every 100 ms, are closed
// once ReadHeaderTimeout has passed, long before the read timeout of the
// whole request (a minute here), while the daemon keeps serving.
func TestSlowHeaders(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond,
		ReadTimeout: time.Minute, ReadHeaderTimeout: 300 * time.Millisecond})
	// The test's own requests are held to the header timeout too: on a
	// loaded machine one may not get its headers in before it, and is
	// closed, as it should be. Such a request is tried again.
	served := func(path string) func() bool {
		return func() bool {
			resp, err := http.Get(d.url + path)
			if err != nil {
				t.Logf("GET %s: %v", path, err)
				return false
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			return resp.StatusCode == 200
		}
	}
	d.waitFor("healthz ok", served("/healthz"))
	const n = 20
	stop := make(chan struct{})
	var wg sync.WaitGroup
	closed := make(chan error, n)
	for range n {
		c := d.dialFrom("127.0.0.1")
		fmt.Fprintf(c, "GET /v1/configs/a HTTP/1.1\r\nHost: cfg\r\nX-Slow: ")
		wg.Add(1)
		trickle(&wg, c, "x", stop) // the header, never its end
		go func() {
			defer wg.Done()
			// Half the read timeout: only the header timeout closes the
			// connection before this.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.ReadAll(c)
			closed <- err
		}()
	}
	for range n {
		// Closed: an end of file, or a reset (the client's bytes unread).
		if err := <-closed; errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a connection sending its headers slowly: %v, want it closed by the daemon", err)
		}
	}
	d.waitFor("GET a to be served after the slow headers", served("/v1/configs/a"))
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

// memInUse returns the bytes of live heap objects and of goroutine
// stacks, after two collections (the second empties sync.Pools).
func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// streamBytes is the most a watch stream waiting for the next revision may
// cost the daemon (docs/api.md, Limits: about 10 KiB), and
// writingStreamBytes the most one blocked in the middle of an event may
// (its two buffers, and the stack of its goroutine).
const (
	streamBytes        = 16 << 10
	writingStreamBytes = 2*pieceSize + 48<<10
)

// TestWatchStreamMemory attacks the memory a waiting watch stream costs
// the daemon: 500 streams, each its own connection, that have their
// snapshot and wait for the next revision hold at most streamBytes each,
// heap and goroutine stacks together.
func TestWatchStreamMemory(t *testing.T) {
	racecheck.SkipUnder(t, memoryWhy)
	const n = 500
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: time.Hour,
		MaxWatchesPerAddress: n})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	// open opens a stream and reads its snapshot and first heartbeat.
	open := func() net.Conn {
		c := d.sendRequest("127.0.0.1", "/v1/watch?configs=a")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for i := 0; i < 2; i++ {
			if !sc.Scan() {
				t.Fatalf("watch: %s, %v", resp.Status, sc.Err())
			}
		}
		c.SetReadDeadline(time.Time{})
		return c
	}
	open().Close() // what the first stream sets up once for all
	d.waitFor("no watch stream open", func() bool { return d.metric("cfg_watchers") == 0 })
	base := memInUse()
	for range n {
		open()
	}
	grown := memInUse() - base
	t.Logf("%d waiting watch streams: %.1f KiB each", n, float64(grown)/n/1024)
	if grown > n*streamBytes {
		t.Errorf("%d waiting watch streams hold %.1f KiB each, want at most %d KiB", n, float64(grown)/n/1024, streamBytes>>10)
	}
}

// TestWatchHTTP10 checks the streams whose connection is not taken over
// (HTTP/1.0): they are written through net/http's ResponseWriter, with
// the same events.
func TestWatchHTTP10(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := startDaemon(t, r.dir, t.TempDir())
	c := d.dialFrom("127.0.0.1")
	fmt.Fprintf(c, "GET /v1/watch?configs=a HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMinor != 0 || len(resp.TransferEncoding) != 0 {
		t.Fatalf("an HTTP/1.0 watch: %s %s %q, want HTTP/1.0 200 without chunks", resp.Proto, resp.Status, resp.TransferEncoding)
	}
	sc := bufio.NewScanner(resp.Body)
	for _, want := range []string{`{"type":"snapshot"`, `{"type":"heartbeat"`} {
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), want) {
			t.Fatalf("an HTTP/1.0 watch: got %.100q, %v; want %s...", sc.Text(), sc.Err(), want)
		}
	}
	r.commit("materialized_configs/a.json", `{"a":2}`)
	for sc.Scan() && strings.HasPrefix(sc.Text(), `{"type":"heartbeat"`) {
	}
	if !strings.HasPrefix(sc.Text(), `{"type":"update","revision":2,`) {
		t.Errorf("an HTTP/1.0 watch after a commit: got %.100q, %v; want the update of revision 2", sc.Text(), sc.Err())
	}
}

// TestChunkedWatchBodyCounted attacks the bound on watch parameters from
// the side of a body without a Content-Length (chunked): it counts as
// MaxBody, the most the daemon reads, before it is read, so that clients
// cannot hold more parameters than the bound by leaving their length out;
// and a watch refused is answered before its body is read, also a body
// net/http would otherwise read before answering (one of unknown length,
// or under 256 KiB): the 503 does not wait for a body that never comes.
func TestChunkedWatchBodyCounted(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: time.Hour,
		MaxWatchBytes: 3 * MaxBody, MaxWatchBytesPerAddress: 2 * MaxBody, ReadTimeout: time.Hour})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	const body = `{"configs":["a"]}`
	// watch sends a POST /v1/watch with a chunked body, sending the body
	// only if withBody (a refused watch is answered before it is read).
	watch := func(ip string, withBody bool) (net.Conn, *http.Response, *bufio.Reader) {
		t.Helper()
		c := d.dialFrom(ip)
		req := "POST /v1/watch HTTP/1.1\r\nHost: cfg\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
		if withBody {
			req += fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, resp, br
	}
	a1, resp, _ := watch("127.0.0.1", true)
	if resp.StatusCode != 200 {
		t.Fatalf("a chunked watch: %s", resp.Status)
	}
	// It is a stream like any other.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, `{"type":"snapshot",`) {
		t.Fatalf("a chunked watch: %.100q, %v; want its snapshot", line, err)
	}
	if _, resp, _ := watch("127.0.0.1", true); resp.StatusCode != 200 {
		t.Fatalf("a second chunked watch from 127.0.0.1: %s", resp.Status)
	}
	// Two bodies of unknown length are the 2 MiB one address may hold,
	// although each is a few bytes. The third, whose body never comes, is
	// answered and its connection closed.
	_, resp, _ = watch("127.0.0.1", false)
	got, err := io.ReadAll(resp.Body)
	if err != nil || !resp.Close {
		t.Errorf("a refused watch with its body unread: %v, close %v; want its whole answer and the connection closed", err, resp.Close)
	}
	want := fmt.Sprintf(`{"error":"watch parameters of %d bytes: the watch streams from 127.0.0.1 hold %d of the %d bytes of parameters one address may; retry later"}`+"\n", MaxBody, 2*MaxBody, 2*MaxBody)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || string(got) != want {
		t.Errorf("a third chunked watch from 127.0.0.1: %s, Retry-After %q, %s; want 503, 5, %s", resp.Status, resp.Header.Get("Retry-After"), got, want)
	}
	if got := d.metric("cfg_watchers_rejected_total", "reason", "bytes"); got != 1 {
		t.Errorf("rejected for their bytes: %v, want 1", got)
	}
	// A stream that ends gives its MiB back.
	a1.Close()
	d.waitFor("a place for a chunked watch from 127.0.0.1", func() bool {
		c, resp, _ := watch("127.0.0.1", true)
		c.Close()
		return resp.StatusCode == 200
	})
}

// TestStreamsOutliveReadTimeout checks that the read timeout bounds
// reading a watch request, not the stream: streams taken over from
// net/http (HTTP/1.1) and written through its ResponseWriter (HTTP/1.0)
// still get updates once a connection opened after them has been closed
// for its read timeout.
func TestStreamsOutliveReadTimeout(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: time.Hour,
		ReadTimeout: 300 * time.Millisecond})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })

	// lines reads the events of a stream, heartbeats aside.
	lines := func(proto string) chan string {
		c := d.dialFrom("127.0.0.1")
		fmt.Fprintf(c, "GET /v1/watch?configs=a %s\r\nHost: cfg\r\n\r\n", proto)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("a %s watch: %s", proto, resp.Status)
		}
		out := make(chan string, 10)
		go func() {
			defer close(out)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var e watchEvent
				if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "heartbeat" {
					out <- e.String()
				}
			}
			if err := sc.Err(); err != nil {
				out <- err.Error()
			}
		}()
		return out
	}
	next := func(proto string, events chan string, want string) {
		t.Helper()
		select {
		case got, ok := <-events:
			if !ok {
				got = "the end of the stream"
			}
			if got != want {
				t.Errorf("a %s watch: %s, want %s", proto, got, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("a %s watch: timed out waiting for %s", proto, want)
		}
	}
	streams := map[string]chan string{"HTTP/1.1": lines("HTTP/1.1"), "HTTP/1.0": lines("HTTP/1.0")}
	for proto, events := range streams {
		next(proto, events, `snapshot 1 a@1={"a":1}`)
	}

	// A request opened after the streams, whose body never comes, is
	// closed for its read timeout: the streams' has passed too.
	c := d.dialFrom("127.0.0.1")
	fmt.Fprintf(c, "POST /v1/hosts/web-1 HTTP/1.1\r\nHost: cfg\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n", token)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if b, err := io.ReadAll(c); err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
		t.Fatalf("a request whose body never comes: %.100q, %v; want a 400 and the end of the connection", b, err)
	}

	r.commit("materialized_configs/a.json", `{"a":2}`)
	for proto, events := range streams {
		next(proto, events, `update 2 a@2={"a":2}`)
	}
}

// TestBehindStreamEndsWhole attacks the bound on a stream's backlog
// through the daemon: a stream whose client reads nothing while more
// than WatchBuffer revisions are published is closed and counted; its
// client then gets what was written, ending with the body's last chunk
// (the stream ended between events), and resumes from its last revision
// without missing one.
func TestBehindStreamEndsWhole(t *testing.T) {
	const size = 2 << 20
	r := newTestRepo(t)
	big := bigConfig(size)
	r.commit("materialized_configs/big.json", big, "materialized_configs/small.json", `{"n":1}`)
	// No stream is dropped for its write timeout while the test runs.
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Token: token, Poll: 50 * time.Millisecond, Heartbeat: time.Hour,
		WriteTimeout: 10 * time.Minute, WatchBuffer: 2})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	c := d.sendRequest("127.0.0.1", "/v1/watch?configs=*")
	// The stream is writing the snapshot's big config, which its client
	// does not read, before the next revisions come.
	d.waitFor("the stream writing the big config", func() bool { return d.metric("cfg_watch_queued_bytes") >= size })
	for n := 2; n <= 4; n++ {
		r.commit("materialized_configs/small.json", fmt.Sprintf(`{"n":%d}`, n))
		d.waitFor(fmt.Sprintf("revision %d", n), func() bool { return d.latest() == int64(n) })
	}
	d.waitFor("the stream dropped for falling behind", func() bool {
		return d.metric("cfg_watchers_dropped_total", "reason", "behind") == 1
	})

	c.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the stream that fell behind: %v after %d bytes, want its whole body", err, len(body))
	}
	var got []string
	for _, line := range strings.SplitAfter(string(body), "\n") {
		if line == "" {
			continue
		}
		var e watchEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("an event of the stream that fell behind: %.100q: %v", line, err)
		}
		if e.Type == "snapshot" && len(e.Configs) == 2 && string(e.Configs[0].Data) == big {
			e.Configs[0].Data = []byte("BIG")
		}
		got = append(got, e.String())
	}
	if want := []string{`snapshot 1 big@1=BIG small@1={"n":1}`, `heartbeat 1`}; !cmp.Equal(got, want) {
		t.Errorf("the stream that fell behind: %q, want %q", got, want)
	}
	d.waitFor("no watch stream open", func() bool { return d.metric("cfg_watchers") == 0 })

	// Resumed from its last revision, it misses nothing.
	w := d.watch("configs=*&from=1")
	w.expect(`update 2 small@2={"n":2}`, `update 3 small@3={"n":3}`, `update 4 small@4={"n":4}`)
}
