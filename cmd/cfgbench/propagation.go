package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/gitrepo"
)

// propagation measures, for each number of subscribers, the time from the
// start of a commit (compile included, as cfg commit does it) to the moment
// every subscriber holds the new revision. Subscribers are watch streams on
// one daemon in this process, each a real HTTP connection on 127.0.0.1.
func propagation(counts []int, rounds int, examples string, stdout, stderr io.Writer) error {
	type result struct {
		n         int
		all, each []time.Duration // per round: until every subscriber; per subscriber and round
	}
	var results []result
	for _, n := range counts {
		all, each, err := propagate(n, rounds, examples, stderr)
		if err != nil {
			return fmt.Errorf("%d subscribers: %w", n, err)
		}
		results = append(results, result{n, all, each})
	}
	fmt.Fprintf(stdout, "propagation: commit (compile + git commit) to every subscriber holding the revision, %d rounds\n", rounds)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "subscribers\tall p50 ms\tall p99 ms\tall max ms\teach p50 ms\teach p99 ms\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.n,
			ms(quantile(r.all, 0.5)), ms(quantile(r.all, 0.99)), ms(slices.Max(r.all)),
			ms(quantile(r.each, 0.5)), ms(quantile(r.each, 0.99)))
	}
	return tw.Flush()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func propagate(n, rounds int, examples string, stderr io.Writer) (all, each []time.Duration, err error) {
	dir, err := os.MkdirTemp("", "cfgbench-prop-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "repo")
	if err := os.CopyFS(filepath.Join(root, "source"), os.DirFS(filepath.Join(examples, "source"))); err != nil {
		return nil, nil, err
	}
	if _, err := git.PlainInit(root, false); err != nil {
		return nil, nil, err
	}
	g, err := gitrepo.Open(root)
	if err != nil {
		return nil, nil, err
	}
	author := &gitrepo.Signature{Name: "bench", Email: "bench@example.com"}
	commit := func(msg string, extra ...string) error {
		res, err := compiler.Build(context.Background(), root, compiler.Options{})
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			return fmt.Errorf("compile: %s", res.Diags().Error())
		}
		_, err = g.Commit(append(res.Written, extra...), gitrepo.CommitOptions{Message: msg, Author: author})
		return err
	}
	initial := []string{}
	filepath.WalkDir(filepath.Join(root, "source"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			initial = append(initial, filepath.ToSlash(rel))
		}
		return err
	})
	if err := commit("initial", initial...); err != nil {
		return nil, nil, err
	}

	d, err := daemon.New(daemon.Config{RepoPath: root, DataDir: filepath.Join(dir, "data"), Token: "bench",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Serve(ctx, ln)
	url := "http://" + ln.Addr().String()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("the daemon did not publish the first revision")
		}
	}

	// arrivals[i] receives the revisions subscriber i is told about.
	arrivals := make([]chan int64, n)
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	var ready sync.WaitGroup
	for i := range n {
		arrivals[i] = make(chan int64, rounds+2)
		ready.Add(1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/watch?configs=feed/cache_job", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				ready.Done()
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			first := true
			for sc.Scan() {
				var ev struct {
					Type     string `json:"type"`
					Revision int64  `json:"revision"`
				}
				if json.Unmarshal(sc.Bytes(), &ev) == nil && (ev.Type == "update" || ev.Type == "snapshot") {
					arrivals[i] <- ev.Revision
					if first {
						first = false
						ready.Done()
					}
				}
			}
		}()
	}
	ready.Wait()
	for i := range n {
		<-arrivals[i] // the snapshot
	}
	src := filepath.Join(root, "source/feed/cache_job.cconf")
	orig, err := os.ReadFile(src)
	if err != nil {
		return nil, nil, err
	}
	for r := range rounds {
		edited := strings.Replace(string(orig), "memory_mb = 32768", fmt.Sprintf("memory_mb = %d", 30000+r), 1)
		if err := os.WriteFile(src, []byte(edited), 0o644); err != nil {
			return nil, nil, err
		}
		start := time.Now()
		if err := commit(fmt.Sprintf("round %d", r), "source/feed/cache_job.cconf"); err != nil {
			return nil, nil, err
		}
		want := int64(r + 2)
		var last time.Duration
		for i := range n {
			select {
			case rev := <-arrivals[i]:
				if rev != want {
					return nil, nil, fmt.Errorf("subscriber %d got revision %d, want %d", i, rev, want)
				}
			case <-time.After(30 * time.Second):
				return nil, nil, fmt.Errorf("subscriber %d did not get revision %d", i, want)
			}
			// Arrival order is measured by receipt here, an upper bound.
			d := time.Since(start)
			each = append(each, d)
			last = max(last, d)
		}
		all = append(all, last)
		fmt.Fprintf(stderr, "propagation %d subscribers round %d/%d: %.1f ms\n", n, r+1, rounds, ms(last))
	}
	return all, each, nil
}
