package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// serveOptions are the inputs of the daemon's benchmark against etcd
// (-serve).
type serveOptions struct {
	cfg     string // the cfg command to run the daemon with
	sizes   []int  // repository sizes, in configs
	memory  []int  // watch streams to measure RSS with, ascending
	latency []int  // watchers to measure propagation to
	rounds  int    // changes per system, watcher count and run
	runs    int
	seed    int64
	dir     string // where repositories are generated and kept; "" for a temporary one
	command string // the command line that reproduces the table
}

// hotConfig is the config every latency round changes: a raw config of
// about 1 KB (the median size of the paper's configs), beside the
// compiled ones.
const (
	hotFile = "materialized_configs/bench/hot.json"
	hotName = "bench/hot.json"
	hotKey  = "/configs/" + hotName
)

// hotData is the hot config's data in round r.
func hotData(r int) []byte {
	b := fmt.Appendf(nil, "{\"round\": %d, \"pad\": \"", r)
	for len(b) < 1000 {
		b = append(b, 'x')
	}
	return append(b, "\"}\n"...)
}

// serveRow is what one run measured of one system on one repository.
type serveRow struct {
	idle, peak int64                   // RSS after the first publish (or load), and its peak then
	rss        map[int]int64           // RSS with n watch streams open
	peakAll    int64                   // peak RSS over the run
	times      map[int][]time.Duration // each change's propagation to every watcher, by watchers, in the order made
}

type serveKey struct {
	n      int
	system string
}

// serveBench compares cfg serve with an embedded etcd holding the same
// configs, each in a process of its own, on synthetic repositories of
// o.sizes configs: RSS after the first publish and with o.memory watch
// streams, and the time from a change (the branch moving; the put) until
// every one of o.latency watchers has it, alternating the two systems
// round by round. It prints the medians over o.runs runs.
func serveBench(o serveOptions, stdout, stderr io.Writer) error {
	if err := raiseFDLimit(2*slices.Max(o.memory) + 500); err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cfgbench-serve-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	results := map[serveKey][]serveRow{}
	sizes := map[int]int64{}
	var loads []string
	for _, n := range o.sizes {
		root := filepath.Join(dir, fmt.Sprintf("serve-n%d-seed%d", n, o.seed))
		names, bytes, err := serveRepo(root, n, o.seed, stderr)
		if err != nil {
			return err
		}
		sizes[n] = bytes
		for run := range o.runs {
			loads = append(loads, loadAvg())
			fmt.Fprintf(stderr, "serve: %d configs, run %d/%d, load average %s\n", n, run+1, o.runs, loads[len(loads)-1])
			c, e, err := serveRun(o, root, dir, names, run, stderr)
			if err != nil {
				return fmt.Errorf("%d configs, run %d: %w", n, run+1, err)
			}
			results[serveKey{n, "cfg"}] = append(results[serveKey{n, "cfg"}], c)
			results[serveKey{n, "etcd"}] = append(results[serveKey{n, "etcd"}], e)
		}
	}
	loads = append(loads, loadAvg())
	fmt.Fprintf(stdout, "cfgbench -serve: %s/%s, %d CPUs, %s; medians of %d runs, %d changes per system and watcher count a run\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.runs, o.rounds)
	fmt.Fprintf(stdout, "load average (1 min) at the start of each run and at the end: %s\n", strings.Join(loads, ", "))
	fmt.Fprintf(stdout, "command: %s\n", o.command)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "configs\tMB\tsystem\tidle RSS MB\tpeak MB\t"
	for _, w := range o.memory {
		head += fmt.Sprintf("RSS %s streams MB\t", thousands(w))
	}
	for _, w := range o.latency {
		head += fmt.Sprintf("%s watcher p50/p99 ms\t", thousands(w))
	}
	fmt.Fprintln(tw, head)
	for _, n := range o.sizes {
		for _, system := range []string{"cfg", "etcd"} {
			rows := results[serveKey{n, system}]
			name := map[string]string{"cfg": "cfg serve", "etcd": "etcd 3.7.3"}[system]
			line := fmt.Sprintf("%d\t%.0f\t%s\t%.0f\t%.0f\t", n, float64(sizes[n])/1e6, name,
				megabytes(medianOf(rows, func(r serveRow) int64 { return r.idle })),
				megabytes(medianOf(rows, func(r serveRow) int64 { return r.peakAll })))
			for _, w := range o.memory {
				line += fmt.Sprintf("%.0f\t", megabytes(medianOf(rows, func(r serveRow) int64 { return r.rss[w] })))
			}
			for _, w := range o.latency {
				p50 := medianOf(rows, func(r serveRow) int64 { return int64(quantile(r.times[w], 0.5)) })
				p99 := medianOf(rows, func(r serveRow) int64 { return int64(quantile(r.times[w], 0.99)) })
				line += fmt.Sprintf("%.2f / %.2f\t", ms(time.Duration(p50)), ms(time.Duration(p99)))
			}
			fmt.Fprintln(tw, line)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printPaired(stdout, o, results)
}

// printPaired prints, for each repository size and watcher count, the
// differences between cfg's change and the etcd change made just before
// or after it (the two alternate, and the one made first alternates too),
// over the changes of every run: their median, its 95 % confidence
// interval, and the share of changes cfg's reached every watcher first.
// Each pair shares what the machine was doing at the time, which the
// medians of the table above do not: runs and minutes differ by more
// than the two systems do with one watcher.
func printPaired(stdout io.Writer, o serveOptions, results map[serveKey][]serveRow) error {
	fmt.Fprintf(stdout, "cfg against etcd change by change, every run's changes together: cfg's time less etcd's, median and its 95 %% confidence interval (negative: cfg first)\n")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "configs\twatchers\tchanges\tcfg - etcd p50 ms\t95% interval ms\tcfg first\t")
	for _, n := range o.sizes {
		cfgRows, etcdRows := results[serveKey{n, "cfg"}], results[serveKey{n, "etcd"}]
		for _, w := range o.latency {
			var diffs []time.Duration
			for run := range cfgRows {
				for i, c := range cfgRows[run].times[w] {
					diffs = append(diffs, c-etcdRows[run].times[w][i])
				}
			}
			med, lo, hi := medianInterval(diffs)
			first := 0
			for _, d := range diffs {
				if d < 0 {
					first++
				}
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%+.3f\t%+.3f to %+.3f\t%.0f %%\t\n", n, thousands(w), len(diffs),
				ms(med), ms(lo), ms(hi), 100*float64(first)/float64(max(len(diffs), 1)))
		}
	}
	return tw.Flush()
}

// medianInterval returns the median of ds and a 95 % confidence interval
// for it that assumes nothing of their distribution: the order statistics
// of ranks (m - 1.96 sqrt m) / 2 and 1 + (m + 1.96 sqrt m) / 2 of the m
// values, rounded outwards (the normal approximation of the binomial
// distribution of how many fall below the median; for 100 values, the
// 40th and the 61st). With 10 values or fewer it is all of them.
func medianInterval(ds []time.Duration) (med, lo, hi time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s)
	med = s[m/2]
	if m%2 == 0 {
		med = (s[m/2-1] + s[m/2]) / 2
	}
	half := 1.96 * math.Sqrt(float64(m))
	j := max(1, int(math.Floor((float64(m)-half)/2)))
	k := min(m, int(math.Ceil(1+(float64(m)+half)/2)))
	return med, s[j-1], s[k-1]
}

// megabytes returns b in MB.
func megabytes(b int64) float64 { return float64(b) / 1e6 }

// thousands writes n with a comma between thousands.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func medianOf(rows []serveRow, f func(serveRow) int64) int64 {
	var v []int64
	for _, r := range rows {
		v = append(v, f(r))
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// serveRepo makes (or finds, made earlier by the same options) a git
// repository at root of n synthetic configs, compiled and committed, with
// the hot config beside them, on branch soakBranch. It returns the
// names of the configs and the bytes of their data.
func serveRepo(root string, n int, seed int64, stderr io.Writer) ([]string, int64, error) {
	ready := filepath.Join(root, ".git", "cfgbench-ready")
	if _, err := os.Stat(ready); err != nil {
		if err := os.RemoveAll(root); err != nil {
			return nil, 0, err
		}
		fmt.Fprintf(stderr, "serve: generating and compiling %d configs in %s\n", n, root)
		if err := synth.Generate(root, synth.Options{Configs: n, Seed: seed}); err != nil {
			return nil, 0, fmt.Errorf("generating: %w", err)
		}
		res, err := compiler.Build(context.Background(), root, compiler.Options{Jobs: runtime.NumCPU()})
		if err != nil {
			return nil, 0, err
		}
		if res.Failed > 0 {
			return nil, 0, fmt.Errorf("%d configs failed:\n%s", res.Failed, firstDiags(res, 5))
		}
		if err := commitConfigs(root); err != nil {
			return nil, 0, err
		}
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			return nil, 0, err
		}
	}
	var names []string
	var size int64
	mat := filepath.Join(root, repo.MaterializedDir)
	err := filepath.WalkDir(mat, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") || !strings.HasSuffix(p, ".json") {
			return err
		}
		rel, _ := filepath.Rel(mat, p)
		rel = filepath.ToSlash(rel)
		if rel != hotName {
			names = append(names, strings.TrimSuffix(rel, ".json"))
		}
		info, err := d.Info()
		size += info.Size()
		return err
	})
	return names, size, err
}

// commitConfigs writes the hot config, as of round 0, beside the compiled
// configs of the repository at root, makes the repository a git
// repository with all of it committed on branch main (cfg's caches, .cfg/,
// are ignored by their own .gitignore), and puts branch soakBranch at that
// commit.
func commitConfigs(root string) error {
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, hotFile)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, hotFile), hotData(0), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "configs"}, {"branch", "-f", soakBranch}} {
		if _, err := gitCmd(root, args...); err != nil {
			return err
		}
	}
	return nil
}

// tailable readies the git repository at dir for a daemon to tail branch
// from an empty store: the branch at the work branch's head (a run cut
// short may have committed without moving it), and no automatic gc, which
// would pack objects and refs in the background while changes are timed.
func tailable(dir, branch string) error {
	for _, args := range [][]string{{"config", "gc.auto", "0"}, {"branch", "-f", branch, "HEAD"}} {
		if _, err := gitCmd(dir, args...); err != nil {
			return err
		}
	}
	return nil
}

// firstPublishTimeout bounds the wait for a daemon's first publish of a
// synthetic repository: 100,000 configs take minutes on a loaded machine.
const firstPublishTimeout = 30 * time.Minute

// firstPublish readies the committed repository at root (tailable), starts
// cfg serve on its branch soakBranch with an empty store in work/cfg-data,
// logging to work/daemon.log, and waits until it has published that
// branch's head as revision 1. It returns the daemon and what the first
// publish cost: the time from the start until /healthz answered 200
// (polled every 20 ms), and the daemon's CPU time and peak RSS then.
func firstPublish(cfg, root, work string) (*soakDaemon, usage, error) {
	if err := tailable(root, soakBranch); err != nil {
		return nil, usage{}, err
	}
	head, err := gitCmd(root, "rev-parse", soakBranch)
	if err != nil {
		return nil, usage{}, err
	}
	start := time.Now()
	d, err := startDaemon(cfg, root, filepath.Join(work, "cfg-data"), filepath.Join(work, "daemon.log"), firstPublishTimeout)
	if err != nil {
		return nil, usage{}, err
	}
	u := usage{wall: time.Since(start), cpu: cpuTime(d.cmd.Process.Pid)}
	if u.maxRSS, err = d.peakRSS(); err != nil {
		d.stop()
		return nil, usage{}, err
	}
	rev, commit, err := latestRevision(d)
	if err == nil && (rev != 1 || commit != head) {
		err = fmt.Errorf("the first publish: got revision %d of commit %s, want revision 1 of %s", rev, commit, head)
	}
	if err != nil {
		d.stop()
		return nil, usage{}, err
	}
	return d, u, nil
}

// printLogEnds writes the end of each log to stderr, saying why a process
// failed.
func printLogEnds(stderr io.Writer, bench string, logs ...string) {
	for _, log := range logs {
		if b, err := os.ReadFile(log); err == nil {
			fmt.Fprintf(stderr, "%s: the end of %s:\n%s\n", bench, filepath.Base(log), b[max(0, len(b)-4096):])
		}
	}
}

// gitCmd runs git in dir and returns its output.
func gitCmd(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=bench", "-c", "user.email=bench@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// serveRun is one run on the repository at root: cfg serve and etcd each
// started afresh, their RSS measured idle and with watch streams, then
// the propagation of changes to watchers of the hot config measured,
// alternating cfg and etcd change by change.
func serveRun(o serveOptions, root, dir string, names []string, run int, stderr io.Writer) (c, e serveRow, err error) {
	work, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		return c, e, err
	}
	defer os.RemoveAll(work)
	defer func() {
		if err != nil { // the end of each process's log says why
			printLogEnds(stderr, "serve", filepath.Join(work, "daemon.log"), filepath.Join(work, "etcd.log"))
		}
	}()
	c = serveRow{rss: map[int]int64{}, times: map[int][]time.Duration{}}
	e = serveRow{rss: map[int]int64{}, times: map[int][]time.Duration{}}

	// cfg serve, from an empty store: the first publish is the whole
	// repository at the work branch's head.
	d, _, err := firstPublish(o.cfg, root, work)
	if err != nil {
		return c, e, err
	}
	defer d.stop()
	cfgPid := d.cmd.Process.Pid
	if c.idle, c.peak, err = settledRSS(cfgPid); err != nil {
		return c, e, err
	}
	fmt.Fprintf(stderr, "serve: cfg serve published; RSS %.0f MB, peak %.0f MB\n", megabytes(c.idle), megabytes(c.peak))

	// etcd, loaded with the same configs.
	et, err := startEtcd(filepath.Join(work, "etcd-data"), filepath.Join(work, "etcd.log"))
	if err != nil {
		return c, e, err
	}
	defer et.stop()
	etcdPid := et.cmd.Process.Pid
	etcdRev, err := loadEtcd(et.addr, root, names)
	if err != nil {
		return c, e, err
	}
	if e.idle, e.peak, err = settledRSS(etcdPid); err != nil {
		return c, e, err
	}
	fmt.Fprintf(stderr, "serve: etcd loaded; RSS %.0f MB, peak %.0f MB\n", megabytes(e.idle), megabytes(e.peak))

	// RSS with watch streams, each of one config (the i-th), from a
	// snapshot; cfg and etcd in turn, the first alternating run by run.
	systems := []func() error{
		func() error {
			return memoryWith(o.memory, cfgPid, c.rss, cfgWatchers(d.addr, names), stderr, "cfg serve")
		},
		func() error {
			return memoryWith(o.memory, etcdPid, e.rss, etcdWatchers(et.addr, names), stderr, "etcd")
		},
	}
	if run%2 == 1 {
		slices.Reverse(systems)
	}
	for _, f := range systems {
		if err := f(); err != nil {
			return c, e, err
		}
	}

	// Propagation to n watchers of the hot config.
	cfgRev, etcdRev := int64(1), etcdRev
	cli, err := etcdClient(et.addr)
	if err != nil {
		return c, e, err
	}
	defer cli.Close()
	for _, n := range o.latency {
		ctx, cancel := context.WithCancel(context.Background())
		var etcdCur atomic.Pointer[round]
		ew := etcdWatchers(et.addr, []string{hotName})
		var wg sync.WaitGroup
		errc := make(chan error, n)
		cf, err := openFanout(ctx, &wg, d.addr, root, cfgRev, n)
		if err != nil {
			cancel()
			wg.Wait()
			return c, e, err
		}
		if err := ew(ctx, n, &wg, errc, func(rev int64, at time.Time) { etcdCur.Load().arrive(rev, at) }); err != nil {
			cancel()
			wg.Wait()
			return c, e, err
		}
		var cfgAll, etcdAll []time.Duration
		for r := range o.rounds {
			steps := []func() error{
				func() error {
					d, err := cf.change(run*1e6 + n*1e3 + r + 1)
					cfgAll = append(cfgAll, d)
					return err
				},
				func() error {
					etcdRev++
					d, err := etcdRound(cli, &etcdCur, etcdRev, n, run*1e6+n*1e3+r+1, errc)
					etcdAll = append(etcdAll, d)
					return err
				},
			}
			if r%2 == 1 {
				slices.Reverse(steps)
			}
			for _, f := range steps {
				if err := f(); err != nil {
					cancel()
					wg.Wait()
					return c, e, fmt.Errorf("%d watchers, change %d: %w", n, r+1, err)
				}
			}
		}
		cancel()
		wg.Wait()
		cfgRev = cf.rev
		c.times[n], e.times[n] = cfgAll, etcdAll
		fmt.Fprintf(stderr, "serve: %d watchers: cfg p50 %.2f p99 %.2f ms, etcd p50 %.2f p99 %.2f ms (load %s)\n",
			n, ms(quantile(cfgAll, 0.5)), ms(quantile(cfgAll, 0.99)), ms(quantile(etcdAll, 0.5)), ms(quantile(etcdAll, 0.99)), loadAvg())
	}
	if c.peakAll, err = procStatus(cfgPid, "VmHWM"); err != nil {
		return c, e, err
	}
	if e.peakAll, err = procStatus(etcdPid, "VmHWM"); err != nil {
		return c, e, err
	}
	return c, e, nil
}

// settledRSS waits for a process's RSS to settle after a burst of work
// (the collector returning memory takes a few cycles) and returns it and
// the peak RSS: it samples every 100 ms until the RSS has not fallen for
// 2 s, at most 15 s.
func settledRSS(pid int) (rss, peak int64, err error) {
	low, since := int64(-1), time.Now()
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(100 * time.Millisecond) {
		rss, err = procStatus(pid, "VmRSS")
		if err != nil {
			return 0, 0, err
		}
		if low < 0 || rss < low {
			low, since = rss, time.Now()
		} else if time.Since(since) >= 2*time.Second {
			break
		}
	}
	peak, err = procStatus(pid, "VmHWM")
	return low, peak, err
}

// watchers opens n watch streams, each calling arrive with the revision
// of each change it is told of and when, with wg counting them and errc
// taking their errors once open, until ctx is done; it returns once all
// have read their snapshot.
type watchers func(ctx context.Context, n int, wg *sync.WaitGroup, errc chan<- error, arrive func(rev int64, at time.Time)) error

// memoryWith opens counts[0] watch streams of one config each, config i
// for stream i, on the system of process pid, records its settled RSS,
// opens more up to counts[1], and so on, then closes them all.
func memoryWith(counts []int, pid int, rss map[int]int64, open watchers, stderr io.Writer, system string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errc := make(chan error, slices.Max(counts))
	have := 0
	for _, n := range counts {
		if err := open(ctx, n-have, &wg, errc, func(int64, time.Time) {}); err != nil {
			return err
		}
		have = n
		r, _, err := settledRSS(pid)
		if err != nil {
			return err
		}
		select {
		case err := <-errc:
			return err
		default:
		}
		rss[n] = r
		fmt.Fprintf(stderr, "serve: %s with %d watch streams: RSS %.0f MB\n", system, n, megabytes(r))
	}
	return nil
}

// cfgWatchers opens watch streams of cfg serve at addr, the i-th of
// names[i%len(names)] (counting from the first stream opened), each from
// one of 250 loopback addresses (the daemon bounds streams per address).
func cfgWatchers(addr string, names []string) watchers {
	next := 0
	return func(ctx context.Context, n int, wg *sync.WaitGroup, errc chan<- error, arrive func(int64, time.Time)) error {
		ready := make(chan error, n)
		for range n {
			i := next
			next++
			path := "/v1/watch?configs=" + names[i%len(names)]
			wg.Go(func() {
				err := cfgWatch(ctx, fmt.Sprintf("127.0.4.%d", 1+i%250), addr, path, ready, arrive)
				if err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("cfg watcher %d: %w", i, err)
				}
			})
		}
		return waitReady(ready, n)
	}
}

// waitReady waits for n streams to say they have read their snapshot (nil)
// or failed.
func waitReady(ready <-chan error, n int) error {
	timeout := time.After(300 * time.Second)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				return err
			}
		case <-timeout:
			return errors.New("timed out waiting for the watch streams to open")
		}
	}
	return nil
}

// cfgWatch reads a watch stream of cfg serve, telling ready once it read
// its snapshot and arrive of every update after it.
func cfgWatch(ctx context.Context, ip, addr, path string, ready chan<- error, arrive func(int64, time.Time)) (err error) {
	told := false
	defer func() {
		if !told {
			ready <- fmt.Errorf("%s: %w", path, err)
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
		if !told && bytes.HasPrefix(line, []byte(`{"type":"snapshot"`)) {
			told = true
			ready <- nil
			continue
		}
		rest, ok := bytes.CutPrefix(line, updatePrefix)
		if !ok {
			continue
		}
		end := bytes.IndexByte(rest, ',')
		rev, err := strconv.ParseInt(string(rest[:max(end, 0)]), 10, 64)
		if err != nil {
			return fmt.Errorf("an update of revision %q", rest[:max(end, 0)])
		}
		arrive(rev, now)
	}
}

// etcdClient returns a client of etcd at addr: a connection of its own.
func etcdClient(addr string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 30 * time.Second,
		MaxCallSendMsgSize: etcdMaxRequest, MaxCallRecvMsgSize: etcdMaxRequest, Logger: zap.NewNop()})
}

// etcdWatchers opens watchers of etcd at addr, each with a client (and
// connection) of its own, as each host's agent would have, the i-th of
// key /configs/names[i%len(names)]: a get (the snapshot), then a watch
// from the revision after it.
func etcdWatchers(addr string, names []string) watchers {
	next := 0
	return func(ctx context.Context, n int, wg *sync.WaitGroup, errc chan<- error, arrive func(int64, time.Time)) error {
		ready := make(chan error, n)
		sem := make(chan struct{}, 16) // connections being opened at once
		for range n {
			i := next
			next++
			key := "/configs/" + names[i%len(names)]
			wg.Go(func() {
				sem <- struct{}{}
				cli, ch, err := etcdWatch(ctx, addr, key)
				<-sem
				ready <- err
				if err != nil {
					return
				}
				defer cli.Close()
				for resp := range ch {
					now := time.Now()
					if err := resp.Err(); err != nil && ctx.Err() == nil {
						errc <- fmt.Errorf("etcd watcher %d: %w", i, err)
						return
					}
					for _, ev := range resp.Events {
						arrive(ev.Kv.ModRevision, now)
					}
				}
			})
		}
		return waitReady(ready, n)
	}
}

// etcdWatch opens a client of etcd, reads key and watches it from the
// revision after the read.
func etcdWatch(ctx context.Context, addr, key string) (*clientv3.Client, clientv3.WatchChan, error) {
	cli, err := etcdClient(addr)
	if err != nil {
		return nil, nil, err
	}
	get, err := cli.Get(ctx, key)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	if len(get.Kvs) != 1 {
		cli.Close()
		return nil, nil, fmt.Errorf("etcd has no %s", key)
	}
	return cli, cli.Watch(ctx, key, clientv3.WithRev(get.Header.Revision+1)), nil
}

// loadEtcd puts the configs of the repository at root into etcd at addr,
// under /configs/NAME (the hot config too), in transactions of up to 8 MB,
// and returns etcd's revision after it.
func loadEtcd(addr, root string, names []string) (int64, error) {
	cli, err := etcdClient(addr)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx := context.Background()
	var ops []clientv3.Op
	size := 0
	var rev int64
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("loading etcd: %w", err)
		}
		rev, ops, size = resp.Header.Revision, ops[:0], 0
		return nil
	}
	for _, name := range append(slices.Clone(names), strings.TrimSuffix(hotName, ".json")) {
		file, key := name+".json", "/configs/"+name
		if name+".json" == hotName {
			key = hotKey
		}
		data, err := os.ReadFile(filepath.Join(root, repo.MaterializedDir, filepath.FromSlash(file)))
		if err != nil {
			return 0, err
		}
		if size+len(data) > 8<<20 || len(ops) == 4096 {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		ops = append(ops, clientv3.OpPut(key, string(data)))
		size += len(data)
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return rev, nil
}

// round is one change being propagated: want is the revision that brings
// it (0: whatever revision a watcher is told of first, for a key that
// changes once a round), and the round is done once n watchers have it.
type round struct {
	want  int64
	n     int32
	start time.Time
	got   atomic.Int32
	last  atomic.Int64 // the longest time from start to a watcher having it, in ns
	done  chan struct{}
}

// startRound starts the timed window of a change that n watchers must see
// as revision want (any revision if 0). It first writes what the page
// cache holds to disk (sync): every system's change starts from a disk
// with nothing of the benchmark's own to write, whatever it did before the
// window (the git commit of a cfg change rewrites the index, megabytes in
// a large repository), so that the first fdatasync in the window does not
// wait for it.
func startRound(want int64, n int) *round {
	syscall.Sync()
	return &round{want: want, n: int32(n), start: time.Now(), done: make(chan struct{})}
}

// arrive counts a watcher told of revision rev at at.
func (r *round) arrive(rev int64, at time.Time) {
	if r == nil || r.want != 0 && rev != r.want {
		return
	}
	storeMax(&r.last, int64(at.Sub(r.start)))
	if r.got.Add(1) == r.n {
		close(r.done)
	}
}

// wait waits for every watcher to have the round's change, and returns
// how long the last one took.
func (r *round) wait(errc <-chan error) (time.Duration, error) {
	select {
	case <-r.done:
		return time.Duration(r.last.Load()), nil
	case err := <-errc:
		return 0, err
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("revision %d: %d of %d watchers had it after 60 s", r.want, r.got.Load(), r.n)
	}
}

// A fanout is watchers of the hot config on a cfg serve tailing branch
// soakBranch of the repository at root, and the changes timed until every
// one of them has them.
type fanout struct {
	root string
	n    int
	rev  int64 // the revision the daemon published last
	cur  atomic.Pointer[round]
	errc chan error // the watchers' errors
}

// openFanout opens n watch streams of the hot config on the daemon at
// addr, tailing root, whose latest revision is rev, until ctx is done,
// counted by wg, and returns once each has read its snapshot.
func openFanout(ctx context.Context, wg *sync.WaitGroup, addr, root string, rev int64, n int) (*fanout, error) {
	f := &fanout{root: root, n: n, rev: rev, errc: make(chan error, n)}
	err := cfgWatchers(addr, []string{hotName})(ctx, n, wg, f.errc, func(rev int64, at time.Time) { f.cur.Load().arrive(rev, at) })
	return f, err
}

// change commits the hot config's data of round seq, moves the tailed
// branch to it and returns the time until every watcher had the revision
// it brings.
func (f *fanout) change(seq int) (time.Duration, error) {
	f.rev++
	return cfgRound(f.root, soakBranch, &f.cur, f.rev, f.n, seq, f.errc)
}

// cfgRound commits a change of the hot config on the work branch (not
// timed), then moves the tailed branch to it, as git update-ref would,
// and waits until n watchers have revision rev. The timed window starts
// as the branch moves: at the rename of the ref's lock file, which is
// written before, as the commit is.
func cfgRound(root, branch string, cur *atomic.Pointer[round], rev int64, n, seq int, errc <-chan error) (time.Duration, error) {
	if err := os.WriteFile(filepath.Join(root, hotFile), hotData(seq), 0o644); err != nil {
		return 0, err
	}
	if _, err := gitCmd(root, "commit", "-q", "-m", "hot "+strconv.Itoa(seq), "--", hotFile); err != nil {
		return 0, err
	}
	head, err := gitCmd(root, "rev-parse", "HEAD")
	if err != nil {
		return 0, err
	}
	var r *round
	err = moveBranch(root, branch, head, func() {
		r = startRound(rev, n)
		cur.Store(r)
	})
	if err != nil {
		return 0, err
	}
	return r.wait(errc)
}

// moveBranch moves branch to commit as git update-ref does: it writes the
// ref to its lock file, which it creates only if no git command holds it,
// and renames that over the ref, so that a reader never sees it half
// written and git's own commands (pack-refs) never lose the change. It
// calls moving just before the rename.
func moveBranch(root, branch, commit string, moving func()) error {
	ref := filepath.Join(root, ".git", "refs", "heads", filepath.FromSlash(branch))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		f, err := os.OpenFile(ref+".lock", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && time.Now().Before(deadline) {
			continue // a git command holds the ref
		}
		if err != nil {
			return err
		}
		_, err = f.WriteString(commit + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			moving()
			err = os.Rename(ref+".lock", ref)
		}
		if err != nil {
			os.Remove(ref + ".lock")
		}
		return err
	}
}

// etcdRound puts a change of the hot config and waits until n watchers
// have revision rev.
func etcdRound(cli *clientv3.Client, cur *atomic.Pointer[round], rev int64, n, seq int, errc <-chan error) (time.Duration, error) {
	data := string(hotData(seq))
	r := startRound(rev, n)
	cur.Store(r)
	resp, err := cli.Put(context.Background(), hotKey, data)
	if err != nil {
		return 0, err
	}
	if resp.Header.Revision != rev {
		return 0, fmt.Errorf("etcd put revision %d, want %d", resp.Header.Revision, rev)
	}
	return r.wait(errc)
}
