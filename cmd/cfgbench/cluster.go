package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cfg-dev/cfg/internal/etcdproc"
)

// clusterOptions are the inputs of the cluster's fan-out benchmark
// (-cluster).
type clusterOptions struct {
	cfg      string // the cfg command to run the daemons with
	configs  int    // configs in the repository
	watchers []int  // watcher counts, each spread over the daemons
	rounds   int    // changes per system, watcher count and run
	runs     int
	seed     int64
	dir      string // where the repository is generated and kept; "" for a temporary one
	command  string // the command line that reproduces the tables
}

// The systems -cluster compares, in the tables' order.
const (
	sysBolt    = "cfg serve, bbolt"
	sysCluster = "3 cfg serve, etcd"
	sysEtcd    = "etcd watch"
)

var clusterSystems = []string{sysBolt, sysCluster, sysEtcd}

// The branches the single daemon and the cluster tail: each round moves
// one of them to the work branch's head.
const (
	boltBranch    = "bolt"
	clusterBranch = "cluster"
)

// clusterMembers is the number of etcd members and of cfg serve daemons
// in the cluster.
const clusterMembers = 3

// clusterKey names what one run measured of one system with a number of
// watchers.
type clusterKey struct {
	watchers int
	system   string
}

// clusterRow is what one run measured of one system with a number of
// watchers.
type clusterRow struct {
	p50, p99 time.Duration
	procs    []procCost // the system's processes
}

// procCost is what one process of a system cost while its watchers were
// open and the changes propagated.
type procCost struct {
	name     string // e.g. "daemon 1 (publisher)", "etcd member m0"
	watchers int    // watch streams open on it
	rss      int64  // settled RSS with them open
	cpu      time.Duration
	bytes    int64 // bytes of updates it wrote to its watchers; 0 if not known
}

// clusterBench measures the time from a change to every watcher having
// it, for one cfg serve over bbolt, for clusterMembers cfg serve daemons
// over a cluster of as many etcd member processes, and for etcd's own
// watches of a key on that cluster, with each of o.watchers watchers
// spread evenly over the daemons (or members), the systems' changes
// alternating, and what each process cost meanwhile. It prints the
// medians over o.runs runs.
func clusterBench(o clusterOptions, stdout, stderr io.Writer) error {
	// Every system's watchers are open at once: a connection each, and
	// each etcd watcher a client of its own.
	if err := raiseFDLimit(3*slices.Max(o.watchers) + 1000); err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cfgbench-cluster-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	bin, err := os.MkdirTemp("", "cfgbench-etcd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	fmt.Fprintf(stderr, "cluster: building the etcd member\n")
	member, err := etcdproc.Build(bin)
	if err != nil {
		return err
	}
	root := filepath.Join(dir, fmt.Sprintf("cluster-n%d-seed%d", o.configs, o.seed))
	if _, _, err := serveRepo(root, o.configs, o.seed, stderr); err != nil {
		return err
	}
	results := map[clusterKey][]clusterRow{}
	var loads []string
	for run := range o.runs {
		loads = append(loads, loadAvg())
		fmt.Fprintf(stderr, "cluster: run %d/%d, load average %s\n", run+1, o.runs, loads[len(loads)-1])
		rows, err := clusterRun(o, member, root, dir, run, stderr)
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		for k, r := range rows {
			results[k] = append(results[k], r)
		}
	}
	loads = append(loads, loadAvg())

	fmt.Fprintf(stdout, "cfgbench -cluster: %s/%s, %d CPUs, %s; medians of %d runs, %d changes per system and watcher count a run; %d configs\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.runs, o.rounds, o.configs)
	fmt.Fprintf(stdout, "systems: %q: one daemon, its store a bbolt file; %q: %d daemons over a %d-member etcd cluster (processes, fsync on); %q: etcd's own watches of one key on that cluster, each watcher a client of its own\n",
		sysBolt, sysCluster, clusterMembers, clusterMembers, sysEtcd)
	fmt.Fprintf(stdout, "load average (1 min) at the start of each run and at the end: %s\n", strings.Join(loads, ", "))
	fmt.Fprintf(stdout, "command: %s\n\n", o.command)
	median := func(k clusterKey, f func(clusterRow) int64) time.Duration {
		var v []int64
		for _, r := range results[k] {
			v = append(v, f(r))
		}
		return time.Duration(medianInt(v))
	}
	p50 := func(k clusterKey) time.Duration { return median(k, func(r clusterRow) int64 { return int64(r.p50) }) }
	p99 := func(k clusterKey) time.Duration { return median(k, func(r clusterRow) int64 { return int64(r.p99) }) }
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "watchers\tsystem\tp50 ms\tp99 ms\tp50 / bbolt\tp99 / bbolt\tp50 / etcd\tp99 / etcd\t")
	for _, w := range o.watchers {
		bolt, etcd := clusterKey{w, sysBolt}, clusterKey{w, sysEtcd}
		for _, sys := range clusterSystems {
			k := clusterKey{w, sys}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t\n", thousands(w), sys, ms(p50(k)), ms(p99(k)),
				ratio(p50(k), p50(bolt)), ratio(p99(k), p99(bolt)), ratio(p50(k), p50(etcd)), ratio(p99(k), p99(etcd)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "\nper process, while the watchers were open and the %d changes propagated (medians of the runs):\n", o.rounds)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "watchers\tsystem\tprocess\tits watchers\tRSS MB\tCPU ms a change\tMB written\tCPU ms per MB written\t")
	for _, w := range o.watchers {
		for _, sys := range clusterSystems {
			rows := results[clusterKey{w, sys}]
			if len(rows) == 0 {
				continue
			}
			for i, p := range rows[0].procs {
				field := func(f func(procCost) int64) int64 {
					var v []int64
					for _, r := range rows {
						v = append(v, f(r.procs[i]))
					}
					return medianInt(v)
				}
				rss := field(func(p procCost) int64 { return p.rss })
				cpu := time.Duration(field(func(p procCost) int64 { return int64(p.cpu) }))
				written := field(func(p procCost) int64 { return p.bytes })
				perMB := "-"
				if written > 0 {
					perMB = fmt.Sprintf("%.1f", ms(cpu)/megabytes(written))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%.1f\t%.1f\t%s\t\n", thousands(w), sys, p.name, thousands(p.watchers),
					megabytes(rss), ms(cpu)/float64(o.rounds), megabytes(written), perMB)
			}
		}
	}
	return tw.Flush()
}

// ratio writes a/b, or "-" if b is 0.
func ratio(a, b time.Duration) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func medianInt(v []int64) int64 {
	v = slices.Clone(v)
	slices.Sort(v)
	switch {
	case len(v) == 0:
		return 0
	case len(v)%2 == 1:
		return v[len(v)/2]
	default:
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
}

// clusterRun is one run: the single daemon, the etcd cluster and the
// cluster's daemons started afresh, then, for each watcher count, the
// watchers of the three systems opened, and o.rounds changes made with
// each system, the systems' order rotating change by change.
func clusterRun(o clusterOptions, member, root, dir string, run int, stderr io.Writer) (rows map[clusterKey]clusterRow, err error) {
	work, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	var logs []string
	defer func() {
		if err != nil { // the end of each process's log says why
			printLogEnds(stderr, "cluster", logs...)
		}
	}()
	// Each system tails a clone of its own, whose work branch only its
	// changes are committed on: a daemon publishes a revision for every
	// commit the branch moves over.
	boltRepo, clusterRepo := filepath.Join(work, "bolt-repo"), filepath.Join(work, "cluster-repo")
	for _, r := range []struct{ dir, branch string }{{boltRepo, boltBranch}, {clusterRepo, clusterBranch}} {
		if _, err := gitCmd(root, "clone", "-q", "--local", ".", r.dir); err != nil {
			return nil, err
		}
		if err := tailable(r.dir, r.branch); err != nil {
			return nil, err
		}
	}

	logs = append(logs, filepath.Join(work, "bolt.log"))
	bolt, err := startServe(o.cfg, filepath.Join(work, "bolt.log"), filepath.Join(work, "bolt.addr"), time.Minute,
		"--repo", boltRepo, "--branch", boltBranch, "--data-dir", filepath.Join(work, "bolt"))
	if err != nil {
		return nil, err
	}
	defer bolt.stop()

	ec, err := etcdproc.Start(etcdproc.Options{Bin: member, Dir: filepath.Join(work, "etcd"), Members: clusterMembers})
	for i := range clusterMembers {
		logs = append(logs, filepath.Join(work, "etcd", fmt.Sprintf("m%d.log", i)))
	}
	if err != nil {
		return nil, err
	}
	defer ec.Close()
	var daemons []*soakDaemon
	for i := range clusterMembers {
		log := filepath.Join(work, fmt.Sprintf("daemon%d.log", i+1))
		logs = append(logs, log)
		d, err := startServe(o.cfg, log, filepath.Join(work, fmt.Sprintf("daemon%d.addr", i+1)), time.Minute,
			"--repo", clusterRepo, "--branch", clusterBranch, "--etcd", strings.Join(ec.Endpoints, ","), "--etcd-prefix", "/cfg/")
		if err != nil {
			return nil, err
		}
		defer d.stop()
		daemons = append(daemons, d)
	}
	// The first daemon started publishes: it was alone when it campaigned.
	boltRev, _, err := latestRevision(bolt)
	if err != nil {
		return nil, err
	}
	clusterRev, _, err := latestRevision(daemons[0])
	if err != nil {
		return nil, err
	}
	for _, d := range daemons[1:] {
		if err := waitRevision(d, clusterRev); err != nil {
			return nil, err
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints, DialTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), hotKey, string(hotData(0))); err != nil {
		return nil, err
	}

	rows = map[clusterKey]clusterRow{}
	seq := run * 1e7
	for _, w := range o.watchers {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		stop := func() { cancel(); wg.Wait() }
		var cur [3]atomic.Pointer[round]
		errc := make(chan error, 3*w+10)
		arrive := func(s int) func(int64, time.Time) {
			return func(rev int64, at time.Time) { cur[s].Load().arrive(rev, at) }
		}
		hot := []string{hotName}
		// Each daemon's update lines, as a stream of its own reads them.
		probes := make([]*atomic.Int64, 1+len(daemons))
		for i, d := range append([]*soakDaemon{bolt}, daemons...) {
			probes[i] = &atomic.Int64{}
			if err := probe(ctx, &wg, d.addr, probes[i]); err != nil {
				stop()
				return nil, err
			}
		}
		if err := cfgWatchers(bolt.addr, hot)(ctx, w, &wg, errc, arrive(0)); err != nil {
			stop()
			return nil, err
		}
		for i, d := range daemons {
			if err := cfgWatchers(d.addr, hot)(ctx, share(w, i), &wg, errc, arrive(1)); err != nil {
				stop()
				return nil, err
			}
		}
		for i, ep := range ec.Endpoints {
			if err := etcdWatchers(strings.TrimPrefix(ep, "http://"), hot)(ctx, share(w, i), &wg, errc, arrive(2)); err != nil {
				stop()
				return nil, err
			}
		}

		// The processes, by system, and the watchers on each.
		procs := [3][]procCost{{{name: "daemon", watchers: w}}}
		pids := [3][]int{{bolt.cmd.Process.Pid}}
		for i, d := range daemons {
			name := fmt.Sprintf("daemon %d", i+1)
			if i == 0 {
				name += " (publisher)"
			}
			procs[1] = append(procs[1], procCost{name: name, watchers: share(w, i)})
			pids[1] = append(pids[1], d.cmd.Process.Pid)
		}
		for i := range ec.Endpoints {
			procs[1] = append(procs[1], procCost{name: fmt.Sprintf("etcd member m%d", i)})
			pids[1] = append(pids[1], ec.PID(i))
			procs[2] = append(procs[2], procCost{name: fmt.Sprintf("etcd member m%d", i), watchers: share(w, i)})
			pids[2] = append(pids[2], ec.PID(i))
		}
		// Settled RSS with the watchers open, every process at once.
		var rssWG sync.WaitGroup
		var rssErr atomic.Value
		for s := range procs {
			for i := range procs[s] {
				rssWG.Go(func() {
					r, _, err := settledRSS(pids[s][i])
					if err != nil {
						rssErr.Store(err)
					}
					procs[s][i].rss = r
				})
			}
		}
		rssWG.Wait()
		if err, _ := rssErr.Load().(error); err != nil {
			stop()
			return nil, err
		}

		var lat [3][]time.Duration
		var cpu [3][]time.Duration
		for s := range procs {
			for _, pid := range pids[s] {
				cpu[s] = append(cpu[s], cpuTime(pid))
			}
		}
		// measure times change, system s's way, and counts the CPU its
		// processes spend meanwhile.
		measure := func(s int, change func(seq int) (time.Duration, error)) func(seq int) error {
			return func(seq int) error {
				for i, pid := range pids[s] {
					cpu[s][i] = cpuTime(pid)
				}
				d, err := change(seq)
				for i, pid := range pids[s] {
					procs[s][i].cpu += cpuTime(pid) - cpu[s][i]
				}
				lat[s] = append(lat[s], d)
				return err
			}
		}
		steps := []func(seq int) error{
			measure(0, func(seq int) (time.Duration, error) {
				boltRev++
				return cfgRound(boltRepo, boltBranch, &cur[0], boltRev, w, seq, errc)
			}),
			measure(1, func(seq int) (time.Duration, error) {
				clusterRev++
				return cfgRound(clusterRepo, clusterBranch, &cur[1], clusterRev, w, seq, errc)
			}),
			measure(2, func(seq int) (time.Duration, error) {
				r := startRound(0, w) // the put's revision, whatever else the cluster keeps
				cur[2].Store(r)
				if _, err := cli.Put(context.Background(), hotKey, string(hotData(seq))); err != nil {
					return 0, err
				}
				return r.wait(errc)
			}),
		}
		for r := range o.rounds {
			for k := range steps {
				seq++ // every change writes other bytes
				if err := steps[(r+k)%len(steps)](seq); err != nil {
					stop()
					return nil, fmt.Errorf("%d watchers, change %d: %w", w, r+1, err)
				}
			}
		}
		stop()
		// Bytes written to the watchers: each update line as the probe of
		// that daemon read it, once for each of its watchers.
		procs[0][0].bytes = probes[0].Load() * int64(w)
		for i := range daemons {
			procs[1][i].bytes = probes[1+i].Load() * int64(share(w, i))
		}
		for s, sys := range clusterSystems {
			k := clusterKey{w, sys}
			rows[k] = clusterRow{p50: quantile(lat[s], 0.5), p99: quantile(lat[s], 0.99), procs: procs[s]}
			fmt.Fprintf(stderr, "cluster: %d watchers, %s: p50 %.1f ms, p99 %.1f ms (load %s)\n",
				w, sys, ms(rows[k].p50), ms(rows[k].p99), loadAvg())
		}
	}
	return rows, nil
}

// share is the number of w watchers on daemon (or member) i of
// clusterMembers: w split as evenly as it goes.
func share(w, i int) int {
	n := w / clusterMembers
	if i < w%clusterMembers {
		n++
	}
	return n
}

// probe opens a watch stream of the hot config of the daemon at addr,
// adding the bytes of every update line it reads to written, until ctx is
// done, and returns once it has read its snapshot.
func probe(ctx context.Context, wg *sync.WaitGroup, addr string, written *atomic.Int64) error {
	body, closeStream, err := openStream(ctx, "127.0.3.1", addr, "/v1/watch?configs="+hotName)
	if err != nil {
		return err
	}
	for {
		line, err := body.next()
		if err != nil {
			closeStream()
			return fmt.Errorf("the probe's snapshot: %w", err)
		}
		if bytes.HasPrefix(line, []byte(`{"type":"snapshot"`)) {
			break
		}
	}
	wg.Go(func() {
		defer closeStream()
		for {
			line, err := body.next()
			if err != nil {
				return
			}
			if bytes.HasPrefix(line, updatePrefix) {
				written.Add(int64(len(line)))
			}
		}
	})
	return nil
}

// latestRevision returns the daemon's latest revision and its commit.
func latestRevision(d *soakDaemon) (int64, string, error) {
	resp, err := d.http.Get(d.url + "/v1/revisions/latest")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return 0, "", fmt.Errorf("%s/v1/revisions/latest: %s %s", d.url, resp.Status, b)
	}
	var latest struct {
		Revision int64  `json:"revision"`
		Commit   string `json:"commit"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&latest); err != nil {
		return 0, "", fmt.Errorf("%s/v1/revisions/latest: %w", d.url, err)
	}
	return latest.Revision, latest.Commit, nil
}

// waitRevision waits until the daemon serves revision rev, for at most a
// minute.
func waitRevision(d *soakDaemon, rev int64) error {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		got, _, err := latestRevision(d)
		if err == nil && got >= rev {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: revision %d after a minute (%v), want %d", d.url, got, err, rev)
		}
	}
}
