package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is a target that answers every other request with 503.
type flaky struct {
	srv            *httptest.Server
	served, failed atomic.Int64
}

func newFlaky(t *testing.T) *flaky {
	f := &flaky{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			t.Errorf("request for %s", r.URL)
		}
		if f.served.Add(1)%2 == 0 {
			f.failed.Add(1)
			http.Error(w, "every other request fails", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "hello")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// summary is one target's line of the report.
type summary struct {
	requests, failures, dropped int
	ratio                       float64
	p50, p99                    string
}

// parseReport parses the report into lines by target, in order.
func parseReport(t *testing.T, out string) ([]string, map[string]summary) {
	t.Helper()
	var order []string
	lines := map[string]summary{}
	for line := range strings.Lines(out) {
		var url string
		var s summary
		_, err := fmt.Sscanf(line, "%s requests=%d failures=%d failure_ratio=%f p50=%s p99=%s dropped=%d",
			&url, &s.requests, &s.failures, &s.ratio, &s.p50, &s.p99, &s.dropped)
		if err != nil {
			t.Fatalf("report line %q: %v", line, err)
		}
		order = append(order, url)
		lines[url] = s
	}
	return order, lines
}

// checkTarget checks a target's line against what its server saw.
func checkTarget(t *testing.T, f *flaky, s summary) {
	t.Helper()
	served, failed := int(f.served.Load()), int(f.failed.Load())
	if s.requests != served || s.failures != failed || s.failures != s.requests/2 {
		t.Errorf("%s: %+v; the server served %d requests and failed %d", f.srv.URL, s, served, failed)
	}
	if want := float64(failed) / float64(served); s.ratio < want-0.0001 || s.ratio > want+0.0001 {
		t.Errorf("%s: failure ratio %v, want %v", f.srv.URL, s.ratio, want)
	}
	if !strings.HasSuffix(s.p50, "ms") || !strings.HasSuffix(s.p99, "ms") {
		t.Errorf("%s: latencies p50=%s p99=%s", f.srv.URL, s.p50, s.p99)
	}
}

func testLogger(t *testing.T) *log.Logger { return log.New(t.Output(), "", 0) }

func TestLoadPacesAndCounts(t *testing.T) {
	a, b := newFlaky(t), newFlaky(t)
	o, err := parseArgs([]string{"-targets", a.srv.URL + "," + strings.TrimPrefix(b.srv.URL, "http://"), "-rps", "50", "-duration", "1s"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), o, &out, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	order, lines := parseReport(t, out.String())
	if len(order) != 2 || order[0] != a.srv.URL || order[1] != b.srv.URL {
		t.Fatalf("report:\n%s", out.String())
	}
	for _, f := range []*flaky{a, b} {
		s := lines[f.srv.URL]
		checkTarget(t, f, s)
		// 50 per second for a second: a ticker never sends more; on a
		// loaded machine it may send fewer.
		if s.requests < 5 || s.requests > 51 || s.requests+s.dropped > 51 {
			t.Errorf("%s: %d requests and %d dropped at 50/s in 1s", f.srv.URL, s.requests, s.dropped)
		}
	}
}

func TestLoadFollowsTargetsFile(t *testing.T) {
	a, b := newFlaky(t), newFlaky(t)
	file := filepath.Join(t.TempDir(), "targets")
	write := func(urls ...string) {
		t.Helper()
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte("# demosvc instances\n"+strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(a.srv.URL)
	o, err := parseArgs([]string{"-targets-file", file, "-rps", "50"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, &out, testLogger(t)) }()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("requests to the first target", func() bool { return a.served.Load() >= 3 })
	if n := b.served.Load(); n != 0 {
		t.Fatalf("%d requests to a target not in the file yet", n)
	}
	write(a.srv.URL, b.srv.URL)
	eventually("requests to the target added", func() bool { return b.served.Load() >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	order, lines := parseReport(t, out.String())
	if len(order) != 2 || order[0] != a.srv.URL || order[1] != b.srv.URL {
		t.Fatalf("report:\n%s", out.String())
	}
	checkTarget(t, a, lines[a.srv.URL])
	checkTarget(t, b, lines[b.srv.URL])
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"-targets", " 127.0.0.1:9101/, http://h:2 ,", "-rps", "5", "-duration", "3s"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.targets, " "); got != "http://127.0.0.1:9101 http://h:2" || o.rps != 5 || o.duration != 3*time.Second || o.concurrency != 16 {
		t.Errorf("got %+v", o)
	}
	for _, args := range [][]string{{}, {"-targets", "x", "-rps", "0"}, {"-targets", "x", "extra"}} {
		if _, err := parseArgs(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseArgs(%q) accepted", args)
		}
	}
}
