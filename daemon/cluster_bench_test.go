package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/store"
)

// BenchmarkPropagation measures, from a commit on the tailed branch
// (the ref moved) until a watch stream on every daemon has the update,
// over HTTP on 127.0.0.1: one daemon with its bbolt store, and three
// daemons sharing a store in a 3-member etcd cluster (in this process).
// It reports the median and the 99th percentile (ms).
func BenchmarkPropagation(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		benchPropagation(b, func(repo string) []*Daemon {
			d, err := New(Config{RepoPath: repo, DataDir: b.TempDir(), Poll: time.Hour, Heartbeat: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			return []*Daemon{d}
		})
	})
	b.Run("etcd-3", func(b *testing.B) {
		c, prefix := testEtcd(b)
		benchPropagation(b, func(repo string) []*Daemon {
			var ds []*Daemon
			for i := range 3 {
				cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints[i : i+1], DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { cli.Close() })
				st, err := store.OpenEtcd(context.Background(), cli, prefix)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				d, err := New(Config{RepoPath: repo, Store: st, Member: fmt.Sprint(i), Poll: time.Hour, Heartbeat: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, d)
			}
			return ds
		})
	})
}

func benchPropagation(b *testing.B, start func(repo string) []*Daemon) {
	dir := b.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		b.Fatal(err)
	}
	wt, _ := g.Worktree()
	n := 0
	commit := func() {
		n++
		p := filepath.Join(dir, "materialized_configs", "a.json")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, fmt.Appendf(nil, `{"n":%d}`, n), 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := wt.Add("materialized_configs/a.json"); err != nil {
			b.Fatal(err)
		}
		if _, err := wt.Commit("c", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}}); err != nil {
			b.Fatal(err)
		}
	}
	commit()
	ds := start(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lines []*bufio.Scanner
	for _, d := range ds {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go d.Serve(ctx, ln)
		defer d.Close()
		url := "http://" + ln.Addr().String()
		// Wait for revision 1, then watch from it.
		for {
			resp, err := http.Get(url + "/v1/revisions/latest")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/watch?configs=a&from=1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("watch: %v %v", resp, err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		if !sc.Scan() { // the first heartbeat
			b.Fatal(sc.Err())
		}
		lines = append(lines, sc)
	}
	var took []time.Duration
	for b.Loop() {
		commit()
		t0 := time.Now()
		for _, sc := range lines {
			for {
				if !sc.Scan() {
					b.Fatal(sc.Err())
				}
				var ev struct{ Type string }
				json.Unmarshal(sc.Bytes(), &ev)
				if ev.Type == "update" {
					break
				}
			}
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
