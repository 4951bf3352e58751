package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
