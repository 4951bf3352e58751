// Command load drives the canary demo: it sends GET / to every target (a
// demosvc instance's base URL) at a steady rate each, and when it stops
// (after -duration, or on SIGINT or SIGTERM) prints one line per target:
//
//	http://127.0.0.1:9101 requests=1200 failures=0 failure_ratio=0.0000 p50=5.1ms p99=7.4ms dropped=0
//
// A failure is a transport error (the -timeout included) or a status other
// than 2xx. Requests are paced by a ticker per target, with at most
// -concurrency in flight per target; a tick that finds them all busy sends
// nothing and counts as dropped. With -targets-file, the file (one URL a
// line, # comments) is read again every second: targets added start, and
// targets removed stop.
//
//	go run ./examples/canary/load -targets http://127.0.0.1:9101,http://127.0.0.1:9102 -rps 20
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	targets     []string
	targetsFile string
	rps         float64
	duration    time.Duration
	concurrency int
	timeout     time.Duration
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "", "comma-separated base URLs of the targets (http://HOST:PORT)")
	fs.StringVar(&o.targetsFile, "targets-file", "", "file of target base URLs, one a line, read again every second")
	fs.Float64Var(&o.rps, "rps", 20, "requests per second to each target")
	fs.DurationVar(&o.duration, "duration", 0, "how long to run; 0 runs until SIGINT or SIGTERM")
	fs.IntVar(&o.concurrency, "concurrency", 16, "at most this many requests in flight per target")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "timeout of each request")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case *targets == "" && o.targetsFile == "":
		return o, errors.New("-targets or -targets-file is required")
	case !(o.rps > 0 && o.rps <= 1e6):
		return o, fmt.Errorf("-rps must be in (0, 1e6], got %v", o.rps)
	case o.duration < 0 || o.concurrency < 1 || o.timeout <= 0:
		return o, errors.New("-duration must not be negative, -concurrency and -timeout must be positive")
	}
	for t := range strings.SplitSeq(*targets, ",") {
		if t = normalize(t); t != "" {
			o.targets = append(o.targets, t)
		}
	}
	return o, nil
}

func main() {
	o, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, log.New(os.Stderr, "load: ", log.LstdFlags)); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// normalize trims a target and adds http:// if it has no scheme.
func normalize(t string) string {
	t = strings.TrimRight(strings.TrimSpace(t), "/")
	if t != "" && !strings.Contains(t, "://") {
		t = "http://" + t
	}
	return t
}

// readTargets reads a targets file: one URL a line, blank lines and #
// comments ignored.
func readTargets(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var urls []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if t := normalize(line); t != "" {
			urls = append(urls, t)
		}
	}
	return urls, sc.Err()
}

// target is one target's load and results.
type target struct {
	url  string
	stop context.CancelFunc // nil while the target is not driven
	sem  chan struct{}      // a slot per request in flight

	mu        sync.Mutex
	requests  int
	failures  int
	dropped   int
	latencies []time.Duration
}

// driver sends the load.
type driver struct {
	o      options
	client *http.Client
	logf   func(format string, args ...any)
	wg     sync.WaitGroup // the target loops and the requests in flight

	targets []*target // in the order first seen
}

// run drives the targets until ctx is done or o.duration has passed, waits
// for the requests in flight, and writes the summary to w.
func run(ctx context.Context, o options, w io.Writer, logger *log.Logger) error {
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	d := &driver{
		o:      o,
		client: &http.Client{Timeout: o.timeout},
		logf:   logger.Printf,
	}
	if err := d.loop(ctx); err != nil {
		return err
	}
	d.wg.Wait()
	for _, t := range d.targets {
		if _, err := fmt.Fprintln(w, t.summary()); err != nil {
			return err
		}
	}
	return nil
}

// loop drives the targets until ctx is done, reading the targets file
// every second.
func (d *driver) loop(ctx context.Context) error {
	var lastErr string
	update := func() {
		urls := slices.Clone(d.o.targets)
		if d.o.targetsFile != "" {
			more, err := readTargets(d.o.targetsFile)
			if err != nil {
				if err.Error() != lastErr {
					d.logf("%v (keeping the targets of the file as they were)", err)
					lastErr = err.Error()
				}
				return
			}
			lastErr = ""
			urls = append(urls, more...)
		}
		d.setTargets(ctx, urls)
	}
	update()
	if d.o.targetsFile == "" && len(d.targets) == 0 {
		return errors.New("no targets")
	}
	reread := time.NewTicker(time.Second)
	defer reread.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, t := range d.targets {
				if t.stop != nil {
					t.stop()
				}
			}
			return nil
		case <-reread.C:
			if d.o.targetsFile != "" {
				update()
			}
		}
	}
}

// setTargets starts the targets in urls not driven yet and stops the ones
// driven that are not in urls.
func (d *driver) setTargets(ctx context.Context, urls []string) {
	for _, u := range urls {
		i := slices.IndexFunc(d.targets, func(t *target) bool { return t.url == u })
		if i < 0 {
			d.targets = append(d.targets, &target{url: u, sem: make(chan struct{}, d.o.concurrency)})
			i = len(d.targets) - 1
		}
		if t := d.targets[i]; t.stop == nil {
			tctx, stop := context.WithCancel(ctx)
			t.stop = stop
			d.wg.Add(1)
			go d.drive(tctx, t)
			d.logf("driving %s at %v requests/s", u, d.o.rps)
		}
	}
	for _, t := range d.targets {
		if t.stop != nil && !slices.Contains(urls, t.url) {
			t.stop()
			t.stop = nil
			d.logf("stopped driving %s", t.url)
		}
	}
}

// drive sends a request to t on every tick until ctx is done.
func (d *driver) drive(ctx context.Context, t *target) {
	defer d.wg.Done()
	tick := time.NewTicker(time.Duration(float64(time.Second) / d.o.rps))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case t.sem <- struct{}{}:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer func() { <-t.sem }()
				start := time.Now()
				ok := d.send(t.url + "/")
				t.record(time.Since(start), ok)
			}()
		default:
			t.mu.Lock()
			t.dropped++
			t.mu.Unlock()
		}
	}
}

// send makes one request and says whether it succeeded. It is not
// cancelled when the load stops: the client's timeout bounds it.
func (d *driver) send(url string) bool {
	resp, err := d.client.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300
}

func (t *target) record(latency time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests++
	if !ok {
		t.failures++
	}
	t.latencies = append(t.latencies, latency)
}

// summary is the target's line of the report.
func (t *target) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ratio := 0.0
	if t.requests > 0 {
		ratio = float64(t.failures) / float64(t.requests)
	}
	slices.Sort(t.latencies)
	return fmt.Sprintf("%s requests=%d failures=%d failure_ratio=%.4f p50=%s p99=%s dropped=%d",
		t.url, t.requests, t.failures, ratio, quantile(t.latencies, 0.5), quantile(t.latencies, 0.99), t.dropped)
}

// quantile returns the q-quantile of sorted (nearest rank) in
// milliseconds, or "-" if there is none.
func quantile(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	i := max(int(math.Ceil(q*float64(len(sorted))))-1, 0)
	return fmt.Sprintf("%.1fms", float64(sorted[i])/float64(time.Millisecond))
}
