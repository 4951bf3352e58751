package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/gitrepo"
)

// soakOptions are the inputs of the soak benchmark (-soak).
type soakOptions struct {
	cfg      string // the cfg command to run the daemon with
	watchers int    // watch streams in all
	stuck    int    // of which never read
	slow     int    // connections sending a body a byte a second
	size     int    // bytes of the big config
	commits  int
	maxRSS   int64         // the daemon's peak RSS must stay below
	maxP99   time.Duration // p99 propagation must stay below
}

// The branch the daemon tails: the benchmark commits on the work tree's
// branch, then moves this one, so that propagation runs from the moment
// the branch moves (as git update-ref or a push would move it).
const soakBranch = "live"

// soak runs the daemon (o.cfg serve, a process of its own) on a repository
// holding one big config and a small one, opens o.watchers watch streams
// (o.stuck of them never reading: every config, from a snapshot, which
// holds the big one), o.slow connections sending a body a byte a second,
// and makes o.commits commits of the small config, each followed until
// every reading stream has it. It prints the daemon's peak RSS,
// goroutines and file descriptors, the propagation's quantiles, and fails
// if a bound is broken.
func soak(o soakOptions, stdout, stderr io.Writer) error {
	need := o.watchers + o.slow + 200
	if err := raiseFDLimit(need); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cfgbench-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "repo")
	if err := soakRepo(root, o.size); err != nil {
		return err
	}
	d, err := startDaemon(o.cfg, root, filepath.Join(dir, "data"), filepath.Join(dir, "daemon.log"), time.Minute)
	if err != nil {
		return err
	}
	defer d.stop()
	fmt.Fprintf(stderr, "soak: daemon %d on %s\n", d.cmd.Process.Pid, d.url)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()

	idle, err := procStatus(d.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	// Watch the daemon: RSS, goroutines, file descriptors, every 100 ms.
	st := &soakStats{}
	bg.Go(func() { d.sample(ctx, st) })

	// Slow bodies: 200 connections, each sending a host report a byte a
	// second, opened again when the daemon closes one; slowCut is done
	// once the daemon has closed each at least once.
	var slowClosed atomic.Int64
	var slowCut sync.WaitGroup
	slowCut.Add(o.slow)
	for i := range o.slow {
		bg.Go(func() { slowBody(ctx, d.addr, fmt.Sprintf("127.0.3.%d", 1+i%250), i, &slowClosed, slowCut.Done) })
	}

	// Reading watchers: half watch the small config (from a snapshot),
	// half every config from revision 1 (the big one is in revision 1, so
	// it is not replayed); each from one of 250 loopback addresses.
	readers := o.watchers - o.stuck
	counts := make([]atomic.Int32, o.commits+2) // by revision: readers that got it
	done := make([]chan struct{}, o.commits+2)  // closed when every reader has it
	for i := range done {
		done[i] = make(chan struct{})
	}
	ws := make([]*reader, readers)
	var open sync.WaitGroup
	errc := make(chan error, readers+1)
	for i := range readers {
		path := "/v1/watch?configs=small"
		if i%2 == 1 {
			path = "/v1/watch?configs=*&from=1"
		}
		w := &reader{id: i, counts: counts, done: done, readers: int32(readers)}
		ws[i] = w
		open.Add(1)
		bg.Go(func() {
			if err := w.run(ctx, fmt.Sprintf("127.0.1.%d", 1+i%250), d.addr, path, &open); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("watcher %d: %w", i, err)
			}
		})
		if i%500 == 499 {
			fmt.Fprintf(stderr, "soak: %d watchers connecting\n", i+1)
		}
	}
	if err := waitGroup(&open, errc, 120*time.Second, "the reading watchers to open"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "soak: %d reading watchers open\n", readers)

	// Watchers that never read: o.stuck streams of every config, each
	// opened again, at its own time, once the daemon has dropped it, for
	// as long as the soak runs.
	var stuckOpens atomic.Int64
	var stuckOpen sync.WaitGroup
	for i := range o.stuck {
		stuckOpen.Add(1)
		bg.Go(func() { d.stuck(ctx, fmt.Sprintf("127.0.2.%d", 1+i%250), &stuckOpens, &stuckOpen, errc) })
	}
	if err := waitGroup(&stuckOpen, errc, 60*time.Second, "the watchers that never read to open"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "soak: %d watchers that never read open\n", o.stuck)

	// Commits of the small config; the branch moves at t0[rev].
	g, err := gitrepo.Open(root)
	if err != nil {
		return err
	}
	raw, err := git.PlainOpen(root)
	if err != nil {
		return err
	}
	t0 := make([]time.Time, o.commits+2)
	author := &gitrepo.Signature{Name: "bench", Email: "bench@example.com"}
	daemonCPU, benchCPU := cpuTime(d.cmd.Process.Pid), cpuTime(os.Getpid())
	start := time.Now()
	for i := 1; i <= o.commits; i++ {
		rev := i + 1
		if err := os.WriteFile(filepath.Join(root, "materialized_configs/small.json"), fmt.Appendf(nil, "{\"n\": %d}\n", i), 0o644); err != nil {
			return err
		}
		commit, err := g.Commit([]string{"materialized_configs/small.json"}, gitrepo.CommitOptions{Message: fmt.Sprintf("small %d", i), Author: author})
		if err != nil {
			return err
		}
		t0[rev] = time.Now()
		if err := raw.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(soakBranch), plumbing.NewHash(commit))); err != nil {
			return err
		}
		select {
		case <-done[rev]:
		case err := <-errc:
			return err
		case <-time.After(60 * time.Second):
			return fmt.Errorf("revision %d: %d of %d reading watchers got it in 60 s", rev, counts[rev].Load(), readers)
		}
		if d := time.Since(t0[rev]); i%20 == 0 || d > o.maxP99 {
			fmt.Fprintf(stderr, "soak: commit %d: every reading watcher had revision %d after %.1f ms\n", i, rev, ms(d))
		}
	}
	elapsed := time.Since(start)
	daemonCPU, benchCPU = cpuTime(d.cmd.Process.Pid)-daemonCPU, cpuTime(os.Getpid())-benchCPU
	// However quickly the commits went, the soak ends once the daemon
	// has cut every slow body (its read timeout, 30 s by default).
	if err := waitGroup(&slowCut, errc, slowCutWait, "the daemon to close every slow-body connection"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "soak: the daemon closed every slow-body connection\n")
	cancel()
	bg.Wait()

	// Every reading watcher got every revision, in order, once.
	var each []time.Duration
	for _, w := range ws {
		if len(w.got) != o.commits {
			return fmt.Errorf("watcher %d got %d revisions, want %d", w.id, len(w.got), o.commits)
		}
		for k, a := range w.got {
			if a.rev != int64(k+2) {
				return fmt.Errorf("watcher %d: revision %d as its update %d, want %d", w.id, a.rev, k+1, k+2)
			}
			each = append(each, a.at.Sub(t0[a.rev]))
		}
	}
	hwm, err := d.peakRSS()
	if err != nil {
		return err
	}
	// A daemon that does not count them (an older cfg) gets a "-".
	dropped := "-"
	if n, err := d.metric("cfg_watchers_dropped_total", `reason="write_timeout"`); err == nil {
		dropped = strconv.FormatFloat(n, 'f', 0, 64)
	}
	d.stop()
	floor, err := tcpFloor(readers, min(o.commits, 50))
	if err != nil {
		return fmt.Errorf("measuring the TCP floor: %w", err)
	}
	p50, p99, worst := quantile(each, 0.5), quantile(each, 0.99), slices.Max(each)
	fmt.Fprintf(stdout, "soak: %d watch streams (%d reading, %d never reading), %d slow-body connections, a %.1f MB config, %d commits\n",
		o.watchers, readers, o.stuck, o.slow, float64(o.size)/1e6, o.commits)
	fmt.Fprintf(stdout, "daemon: %s serve, a process of its own\n", o.cfg)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "daemon peak RSS (VmHWM)\t%.1f MB\t(bound %d MB)\n", float64(hwm)/1e6, o.maxRSS/1e6)
	fmt.Fprintf(tw, "daemon RSS, most sampled\t%.1f MB\t(%.1f MB after the first publish, before any client)\n", float64(st.rss.Load())/1e6, float64(idle)/1e6)
	fmt.Fprintf(tw, "daemon goroutines, most\t%d\t\n", st.goroutines.Load())
	fmt.Fprintf(tw, "daemon open fds, most\t%d\t\n", st.fds.Load())
	fmt.Fprintf(tw, "propagation p50 / p99 / max\t%.1f / %.1f / %.1f ms\t(bound p99 %v; %d receipts)\n", ms(p50), ms(p99), ms(worst), o.maxP99, len(each))
	fmt.Fprintf(tw, "TCP floor p50 / p99 / max\t%s\t(a line to each of %d connections from another process, no daemon; %d rounds)\n", floorQuantiles(floor), readers, min(o.commits, 50))
	fmt.Fprintf(tw, "CPU during the commits\tdaemon %.1f s, benchmark %.1f s\t(%.1f and %.1f ms a commit; %.1f s of wall time)\n",
		daemonCPU.Seconds(), benchCPU.Seconds(), ms(daemonCPU)/float64(o.commits), ms(benchCPU)/float64(o.commits), elapsed.Seconds())
	fmt.Fprintf(tw, "every reading watcher got every revision\tyes\t\n")
	fmt.Fprintf(tw, "never-reading streams dropped (write timeout)\t%s\t(%d opened)\n", dropped, stuckOpens.Load())
	fmt.Fprintf(tw, "slow-body connections closed by the daemon\t%d\t\n", slowClosed.Load())
	tw.Flush()
	var errs []error
	if hwm >= o.maxRSS {
		errs = append(errs, fmt.Errorf("the daemon's peak RSS %.1f MB is not under %d MB", float64(hwm)/1e6, o.maxRSS/1e6))
	}
	if p99 >= o.maxP99 {
		errs = append(errs, fmt.Errorf("p99 propagation %.1f ms is not under %v", ms(p99), o.maxP99))
	}
	return errors.Join(errs...)
}

// raiseFDLimit raises the process's soft file descriptor limit to its hard
// one, and fails if that is below need.
func raiseFDLimit(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raising the file descriptor limit: %w", err)
	}
	if rl.Cur < uint64(need) {
		return fmt.Errorf("file descriptor limit %d: want at least %d for the soak's connections; raise the hard limit (ulimit -Hn)", rl.Cur, need)
	}
	return nil
}

// soakRepo makes a git repository at root holding materialized_configs/
// big.json (size bytes) and small.json, on branch soakBranch as well as
// its work branch.
func soakRepo(root string, size int) error {
	if _, err := git.PlainInit(root, false); err != nil {
		return err
	}
	mat := filepath.Join(root, "materialized_configs")
	if err := os.MkdirAll(mat, 0o755); err != nil {
		return err
	}
	big := make([]byte, 0, size)
	big = append(big, `{"blob": "`...)
	for len(big) < size-3 {
		big = append(big, "0123456789abcdef"[len(big)%16])
	}
	big = append(big, "\"}\n"...)
	if err := os.WriteFile(filepath.Join(mat, "big.json"), big, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mat, "small.json"), []byte("{\"n\": 0}\n"), 0o644); err != nil {
		return err
	}
	g, err := gitrepo.Open(root)
	if err != nil {
		return err
	}
	commit, err := g.Commit([]string{"materialized_configs/big.json", "materialized_configs/small.json"},
		gitrepo.CommitOptions{Message: "big and small", Author: &gitrepo.Signature{Name: "bench", Email: "bench@example.com"}})
	if err != nil {
		return err
	}
	raw, err := git.PlainOpen(root)
	if err != nil {
		return err
	}
	return raw.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(soakBranch), plumbing.NewHash(commit)))
}

// soakDaemon is cfg serve running in a process of its own.
type soakDaemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has ended
	addr   string        // host:port
	url    string
	http   *http.Client
}

const soakToken = "bench"

// startDaemon starts cfg serve on branch soakBranch of the repository at
// repoDir with its store in dataDir (startServe).
func startDaemon(cfg, repoDir, dataDir, logFile string, timeout time.Duration) (*soakDaemon, error) {
	return startServe(cfg, logFile, dataDir+".addr", timeout, "--repo", repoDir, "--branch", soakBranch, "--data-dir", dataDir)
}

// startServe starts cfg serve with args (the repository's and the
// store's flags) on a port of its own, whose address it writes to
// addrFile, logging to logFile, and waits until it serves a revision, for
// at most timeout.
func startServe(cfg, logFile, addrFile string, timeout time.Duration, args ...string) (*soakDaemon, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg, append(append([]string{"serve"}, args...), "--listen", "127.0.0.1:0", "--addr-file", addrFile)...)
	cmd.Env = append(os.Environ(), "CFG_TOKEN="+soakToken)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s serve: %w", cfg, err)
	}
	d := &soakDaemon{cmd: cmd, exited: make(chan struct{}), http: &http.Client{Timeout: 10 * time.Second}}
	var waitErr error
	go func() { waitErr = cmd.Wait(); log.Close(); close(d.exited) }()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-d.exited:
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s serve exited: %v\n%s", cfg, waitErr, b)
		default:
		}
		if d.addr == "" {
			if b, err := os.ReadFile(addrFile); err == nil {
				d.addr = strings.TrimSpace(string(b))
				d.url = "http://" + d.addr
			}
		} else if resp, err := d.http.Get(d.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("the daemon did not publish the first revision in %v", timeout)
		}
	}
}

// stop ends the daemon: SIGTERM, then SIGKILL after 10 s.
func (d *soakDaemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// soakStats are the most the daemon was seen to use.
type soakStats struct {
	rss, goroutines, fds atomic.Int64
}

func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// sample records the daemon's RSS every 100 ms, and its open file
// descriptors and goroutines every second (a scrape costs the daemon a
// walk of its descriptors), until ctx is done.
func (d *soakDaemon) sample(ctx context.Context, st *soakStats) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	pid := d.cmd.Process.Pid
	for i := 0; ; i++ {
		if rss, err := procStatus(pid, "VmRSS"); err == nil {
			storeMax(&st.rss, rss)
		}
		if i%10 == 0 {
			if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				storeMax(&st.fds, int64(len(fds)))
			}
			if n, err := d.metric("go_goroutines", ""); err == nil {
				storeMax(&st.goroutines, int64(n))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// peakRSS returns the daemon's peak resident set size.
func (d *soakDaemon) peakRSS() (int64, error) {
	return procStatus(d.cmd.Process.Pid, "VmHWM")
}

// resetPeakRSS sets the peak RSS (VmHWM) of process pid to its current
// RSS (Linux 4.0 and later), so that VmHWM is then the peak since.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// procStatus reads a size in kB from /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// metric returns the value of a metric of the daemon, with the given
// labels (as /metrics writes them, e.g. `reason="behind"`).
func (d *soakDaemon) metric(name, labels string) (float64, error) {
	resp, err := d.http.Get(d.url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no metric %s%s", name, labels)
}

// cpuTime returns the CPU time process pid has used (user and system), or
// 0 if /proc does not say.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command's name in parentheses: state, then 10 fields
	// before utime and stime, in clock ticks (100 a second on Linux).
	_, rest, ok := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// dial opens a connection to addr from the loopback address ip: the
// daemon counts watch streams per address.
func dial(ctx context.Context, ip, addr string) (net.Conn, error) {
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 30 * time.Second}
	return dialer.DialContext(ctx, "tcp", addr)
}

// arrival is a revision a watcher got, and when.
type arrival struct {
	rev int64
	at  time.Time
}

// reader is a watcher that reads its stream.
type reader struct {
	id      int
	got     []arrival
	counts  []atomic.Int32
	done    []chan struct{}
	readers int32
}

var updatePrefix = []byte(`{"type":"update","revision":`)

// run opens the watch and reads it until ctx is done; open is told once
// the first event came.
func (w *reader) run(ctx context.Context, ip, addr, path string, open *sync.WaitGroup) error {
	opened := false
	defer func() {
		if !opened {
			open.Done()
		}
	}()
	body, closeStream, err := openStream(ctx, ip, addr, path)
	if err != nil {
		return err
	}
	defer closeStream()
	for {
		line, err := body.next()
		if err != nil {
			return err
		}
		now := time.Now()
		if !opened {
			opened = true
			open.Done()
		}
		rest, ok := bytes.CutPrefix(line, updatePrefix)
		if !ok {
			if !bytes.HasPrefix(line, []byte(`{"type":`)) {
				return fmt.Errorf("not an event: %.100s", line)
			}
			continue // the snapshot, heartbeats
		}
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			return fmt.Errorf("an update without a revision: %.100s", line)
		}
		rev, err := strconv.ParseInt(string(rest[:end]), 10, 64)
		if err != nil || rev < 2 || rev >= int64(len(w.counts)) {
			return fmt.Errorf("an update of revision %q", rest[:end])
		}
		w.got = append(w.got, arrival{rev, now})
		if w.counts[rev].Add(1) == w.readers {
			close(w.done[rev])
		}
	}
}

// chunkedLines reads the lines of a chunked HTTP/1.1 body.
type chunkedLines struct {
	br   *bufio.Reader
	left int64  // bytes of the current chunk not read yet
	in   bool   // in a chunk: its CRLF comes after its data
	line []byte // the line being read
}

// next returns the next line, valid until the next call; io.EOF after the
// last chunk.
func (c *chunkedLines) next() ([]byte, error) {
	c.line = c.line[:0]
	for {
		if c.left == 0 {
			if c.in {
				if crlf, err := c.br.ReadSlice('\n'); err != nil || string(crlf) != "\r\n" {
					return nil, fmt.Errorf("a chunk's end: got %q, %v; want CRLF", crlf, err)
				}
				c.in = false
			}
			head, err := c.br.ReadSlice('\n')
			if err != nil {
				return nil, err
			}
			size, _, _ := strings.Cut(strings.TrimSpace(string(head)), ";")
			if c.left, err = strconv.ParseInt(size, 16, 64); err != nil {
				return nil, fmt.Errorf("a chunk's size: %q", head)
			}
			if c.left == 0 {
				return nil, io.EOF
			}
			c.in = true
		}
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
		b, _ := c.br.Peek(int(min(c.left, int64(c.br.Buffered()))))
		i := bytes.IndexByte(b, '\n')
		if i >= 0 {
			b = b[:i+1]
		}
		c.line = append(c.line, b...)
		c.br.Discard(len(b))
		c.left -= int64(len(b))
		if i >= 0 {
			return c.line, nil
		}
	}
}

// openStream opens the watch stream of cfg serve at path on a connection
// from ip, closed when ctx is done or by the function it returns, and
// returns the body's lines, read from the chunks as they come (as
// net/http's own reader would, at less cost: thousands of these share the
// CPU with the daemon).
func openStream(ctx context.Context, ip, addr, path string) (*chunkedLines, func(), error) {
	c, err := dial(ctx, ip, addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	closeStream := func() { stop(); c.Close() }
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: cfg\r\n\r\n", path); err != nil {
		closeStream()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 8192)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		closeStream()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		closeStream()
		return nil, nil, fmt.Errorf("%s: %s %q %s; want 200 and a chunked body", path, resp.Status, resp.TransferEncoding, b)
	}
	return &chunkedLines{br: br}, closeStream, nil
}

// slowCutWait is how long the soak waits, after its commits, for the
// daemon to have closed every slow-body connection: twice the daemon's
// read timeout.
const slowCutWait = 2 * daemon.DefaultReadTimeout

// slowBody sends a host report a byte a second on a connection from ip,
// and again on a new connection whenever the daemon closes one, until ctx
// is done. It calls cut once, the first time the daemon closes one.
func slowBody(ctx context.Context, addr, ip string, i int, closed *atomic.Int64, cut func()) {
	cutOnce := sync.OnceFunc(cut)
	for ctx.Err() == nil {
		c, err := dial(ctx, ip, addr)
		if err != nil {
			return
		}
		ended := make(chan struct{})
		go func() { // the daemon's answer, then the end of the connection
			io.Copy(io.Discard, c)
			close(ended)
		}()
		fmt.Fprintf(c, "POST /v1/hosts/slow-%d HTTP/1.1\r\nHost: cfg\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", i, soakToken)
		tick := time.NewTicker(time.Second)
	send:
		for {
			select {
			case <-ctx.Done():
				break send
			case <-ended:
				closed.Add(1)
				cutOnce()
				break send
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					break send
				}
			}
		}
		tick.Stop()
		c.Close()
		<-ended
	}
}

// stuck holds a watch of every config that never reads, from ip: it
// opens one, keeps it for the daemon's write timeout and up to 5 s more
// (the daemon drops it meanwhile), closes it and opens another, until ctx
// is done. opened is told once the first is open.
func (d *soakDaemon) stuck(ctx context.Context, ip string, opens *atomic.Int64, opened *sync.WaitGroup, errc chan<- error) {
	first := true
	for ctx.Err() == nil {
		c, err := dial(ctx, ip, d.addr)
		if err != nil {
			if ctx.Err() == nil {
				errc <- err
			}
			return
		}
		fmt.Fprintf(c, "GET /v1/watch?configs=* HTTP/1.1\r\nHost: cfg\r\n\r\n")
		opens.Add(1)
		if first {
			opened.Done()
			first = false
		}
		select {
		case <-ctx.Done():
		case <-time.After(stuckFor + rand.N(5*time.Second)):
		}
		c.Close()
	}
}

// stuckFor is how long the daemon takes to drop a client that takes in
// nothing: cfg serve's write timeout.
const stuckFor = 10 * time.Second

// waitGroup waits for wg, an error on errc, or the timeout.
func waitGroup(wg *sync.WaitGroup, errc <-chan error, timeout time.Duration, what string) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case err := <-errc:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("timed out waiting for %s", what)
	}
}
