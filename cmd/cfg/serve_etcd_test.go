package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/cfg-dev/cfg/internal/etcdtest"
)

// TestServeEtcd runs two cfg serve processes with --etcd over a 3-member
// etcd cluster: both publish every commit (one of them publishing, the
// other following), /healthz names the publisher on both, and when the
// publisher is killed the other publishes the next commit.
func TestServeEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	c, err := etcdtest.Start(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	repo := configRepo(t)
	work := t.TempDir()
	var procs []*proc
	var urls []string
	for i := range 2 {
		addrFile := filepath.Join(work, fmt.Sprintf("addr%d", i))
		procs = append(procs, start(t, work, "serve", "--repo", repo, "--etcd", strings.Join(c.Endpoints, ","), "--etcd-prefix", "/test/",
			"--etcd-election-ttl", "2s", "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--poll", "100ms"))
		urls = append(urls, addr(t, addrFile))
	}
	healthz := func(url string) string {
		body, code, _ := httpGet(url + "/healthz")
		if code != http.StatusOK {
			return ""
		}
		return body
	}
	publisher := func() int {
		for i, u := range urls {
			if strings.HasPrefix(healthz(u), "ok: publishing as ") {
				return i
			}
		}
		return -1
	}
	eventually(t, time.Minute, "a daemon to publish", func() bool { return publisher() >= 0 })
	pub := publisher()
	other := urls[1-pub]
	eventually(t, time.Minute, "the other daemon to name the publisher", func() bool {
		return strings.HasPrefix(healthz(other), "ok: following the store, published by ")
	})
	for _, u := range urls {
		eventually(t, time.Minute, "revision 1 on "+u, func() bool {
			body, _, _ := httpGet(u + "/v1/revisions/latest")
			return strings.Contains(body, `"revision":1,`)
		})
	}
	procs[pub].kill()
	eventually(t, time.Minute, "the other daemon to publish", func() bool { return strings.HasPrefix(healthz(other), "ok: publishing as ") })
	setMemory(t, repo, 40000)
	eventually(t, time.Minute, "revision 2 on "+other, func() bool {
		body, _, _ := httpGet(other + "/v1/revisions/latest")
		return strings.Contains(body, `"revision":2,`)
	})
	body, _, _ := httpGet(other + "/v1/configs/feed/cache_job")
	if !strings.Contains(body, "40000") {
		t.Errorf("feed/cache_job after the takeover: %s", body)
	}
}

// TestServeEtcdGRPCLog runs cfg serve --etcd against a server that
// answers the etcd client's connections as an HTTP/2 server starts to
// (SETTINGS), then sends a frame of a type HTTP/2 does not define, then
// tells the client it pings too often (GOAWAY, ENHANCE_YOUR_CALM,
// "too_many_pings"). gRPC logs the GOAWAY as an error, on the client side,
// and the unknown frame only at verbosity 2. The daemon's stderr has the
// error as a line of the daemon's log with logger=grpc, and every line of
// it is in the daemon's format (none in gRPC's, none in JSON), with no
// info or warning of gRPC's and not the verbose line; with
// ETCD_CLIENT_DEBUG set too.
func TestServeEtcdGRPCLog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.WriteSettings()
	fr.WriteRawFrame(0xff, 0, 0, nil) // a type HTTP/2 does not define
	fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("too_many_pings"))
	frames := buf.Bytes()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := c.Write(frames); err == nil {
					io.Copy(io.Discard, c) // until the client closes
				}
			}()
		}
	}()

	const goAwayMsg = "Client received GoAway with error code ENHANCE_YOUR_CALM"
	want := regexp.MustCompile(`(?m)^time=\S+ level=ERROR msg="\[transport\] ` + goAwayMsg + ` and debug data equal to ASCII \\"too_many_pings\\"\." logger=grpc$`)
	ownFormat := regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|FATAL): `)
	// gRPC's variables as gRPC's default reads them unset; and with
	// ETCD_CLIENT_DEBUG, with which etcd's client installs a JSON logger
	// of its own for gRPC when the process starts.
	for _, debug := range []string{"", "info"} {
		t.Run("ETCD_CLIENT_DEBUG="+debug, func(t *testing.T) {
			cmd := exec.Command("cfg", "serve", "--repo", t.TempDir(), "--etcd", "http://"+ln.Addr().String(),
				"--etcd-dial-timeout", "10m", "--listen", "127.0.0.1:0")
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "CFG_TOKEN=e2e-token", "GRPC_GO_LOG_SEVERITY_LEVEL=", "GRPC_GO_LOG_VERBOSITY_LEVEL=", "ETCD_CLIENT_DEBUG="+debug)
			p := startCmd(t, cmd)
			eventually(t, time.Minute, "gRPC's error about the GOAWAY", func() bool { return strings.Contains(p.output(), goAwayMsg) })
			p.kill()
			out := p.output()
			if !want.MatchString(out) {
				t.Errorf("the daemon's log has no line of gRPC's error in its format, want one matching %s:\n%s", want, out)
			}
			for line := range strings.Lines(out) {
				switch {
				case ownFormat.MatchString(line):
					t.Errorf("a line in gRPC's own format: %s", line)
				case !strings.HasPrefix(line, "time="):
					t.Errorf("a line not in the daemon's format: %s", line)
				case strings.Contains(line, "logger=grpc") && !strings.Contains(line, " level=ERROR "):
					t.Errorf("a line of gRPC's below its errors: %s", line)
				case strings.Contains(line, "unhandled frame type"):
					t.Errorf("gRPC's line of verbosity 2: %s", line)
				}
			}
		})
	}
}
