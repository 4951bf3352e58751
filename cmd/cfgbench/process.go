package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// PaperConfigs is the repository size -paper adds: about the size of the
// repository the Configerator paper describes (about 1.4 GB compiled).
const PaperConfigs = 100_000

// A usage is what one run of a child process cost, from its rusage (or,
// for the daemon, from /proc).
type usage struct {
	wall, cpu time.Duration // cpu: user and system time
	maxRSS    int64         // peak resident set size, bytes
	p99       time.Duration // of a fan-out: the p99 of propagation, wall its p50
}

// runChild runs cfg with args in dir and returns its cost. It fails unless
// cfg exits 0.
func runChild(cfg, dir string, args ...string) (usage, error) {
	cmd := exec.Command(cfg, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return usage{}, fmt.Errorf("cfg %s in %s: %w\n%s", strings.Join(args, " "), dir, err, lastLines(stderr.String(), 10))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return usage{}, fmt.Errorf("no resource usage for cfg on %s", runtime.GOOS)
	}
	return usage{
		wall:   wall,
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS: ru.Maxrss * 1024, // kilobytes on Linux
	}, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

type processRow struct {
	n      int
	step   string
	cmd    string
	fanout bool // the propagation to watchers: wall is its p50
	runs   []usage
}

// process measures the cfg command, as a child process, on a repository
// of each size: a cold compile, a no-op compile, a compile after an edit to
// the module used by about 100 configs, and cfg validate, each runs times;
// then, the repository committed with git, cfg serve on it: its first
// publish, and for each of o.fanout, that many watchers of one config and
// o.changes changes of it, each runs times with the daemon started afresh.
// It prints the median wall and CPU time and the highest peak RSS of each
// (of a fan-out, the medians of the p50 and p99 of propagation, and the
// daemon's CPU time and peak RSS from the opening of the watchers to the
// last change).
func process(o *options, stdout, stderr io.Writer) error {
	if err := raiseFDLimit(slices.Max(o.fanout) + 200); err != nil {
		return err
	}
	cfg, err := exec.LookPath(o.soakOpts.cfg)
	if err != nil {
		return err
	}
	if cfg, err = filepath.Abs(cfg); err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cfgbench-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(stdout, "cfgbench: cfg as a child process, %s/%s, %d CPUs, %s, %d runs; load average %s at the start\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.runs, loadavg())
	var rows []*processRow
	for _, n := range o.sizes {
		root := filepath.Join(dir, fmt.Sprintf("n%d", n))
		fmt.Fprintf(stderr, "generating %d configs in %s\n", n, root)
		module, users, err := generateApart(root, n, o)
		if err != nil {
			return err
		}
		gen := fmt.Sprintf("cfgbench -process -n %d -seed %d -keep -dir DIR", n, o.seed)
		steps := []*processRow{
			{n: n, step: "cold compile", cmd: "rm -rf .cfg materialized_configs && cfg compile -q"},
			{n: n, step: "no-op compile", cmd: "cfg compile -q"},
			{n: n, step: fmt.Sprintf("module edit (%d users)", users), cmd: fmt.Sprintf("echo '# edit' >> source/%s && cfg compile -q", module)},
			{n: n, step: "validate", cmd: "cfg validate -q"},
		}
		rows = append(rows, steps...)
		for r := range o.runs {
			if err := clean(root); err != nil {
				return err
			}
			for i, s := range steps {
				if i == 2 {
					if err := appendLine(filepath.Join(root, repo.SourceDir, filepath.FromSlash(module)), fmt.Sprintf("# edit %d", r)); err != nil {
						return err
					}
				}
				args := []string{"compile", "-q"}
				if i == 3 {
					args = []string{"validate", "-q"}
				}
				u, err := runChild(cfg, root, args...)
				if err != nil {
					return err
				}
				s.runs = append(s.runs, u)
				fmt.Fprintf(stderr, "N=%d run %d/%d %s: %.2fs, CPU %.2fs, peak RSS %s\n",
					n, r+1, o.runs, s.step, u.wall.Seconds(), u.cpu.Seconds(), mb(u.maxRSS))
			}
			os.RemoveAll(root + ".trash")
		}
		publish := &processRow{n: n, step: "first publish",
			cmd: fmt.Sprintf("cfg serve --repo . --branch %s --data-dir DATA, until GET /healthz answers 200", soakBranch)}
		rows = append(rows, publish)
		var fans []*processRow
		for _, w := range o.fanout {
			fans = append(fans, &processRow{n: n, fanout: true,
				step: fmt.Sprintf("%s watchers, %d changes (p50 / p99 ms)", thousands(w), o.changes),
				cmd: fmt.Sprintf("%d × GET /v1/watch?configs=%s, then %d × (change %s, git commit, git update-ref refs/heads/%s HEAD)",
					w, hotName, o.changes, hotFile, soakBranch)})
		}
		rows = append(rows, fans...)
		fmt.Fprintf(stderr, "N=%d: committing the repository with git\n", n)
		if err := commitConfigs(root); err != nil {
			return err
		}
		seq := 0 // the hot config's data of the last change
		for r := range o.runs {
			if err := daemonRun(cfg, root, o, &seq, publish, fans, stderr); err != nil {
				return fmt.Errorf("%d configs, run %d: %w", n, r+1, err)
			}
			fmt.Fprintf(stderr, "N=%d run %d/%d first publish: %.2fs, CPU %.2fs, peak RSS %s\n",
				n, r+1, o.runs, publish.runs[r].wall.Seconds(), publish.runs[r].cpu.Seconds(), mb(publish.runs[r].maxRSS))
			for _, f := range fans {
				u := f.runs[r]
				fmt.Fprintf(stderr, "N=%d run %d/%d %s: %.1f / %.1f, CPU %.2fs, peak RSS %s (load %s)\n",
					n, r+1, o.runs, f.step, ms(u.wall), ms(u.p99), u.cpu.Seconds(), mb(u.maxRSS), loadAvg())
			}
		}
		fmt.Fprintf(stderr, "repository: %s (%s)\n", root, gen)
		if !o.keep && o.dir == "" {
			os.RemoveAll(root)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tstep\tmedian s\tCPU s\tpeak RSS\tof cold CPU\tcommand (in the repository)")
	cold := map[int]time.Duration{}
	for _, r := range rows {
		u := r.summary()
		if r.step == "cold compile" {
			cold[r.n] = u.cpu
		}
		wall, share := fmt.Sprintf("%.2f", u.wall.Seconds()), fmt.Sprintf("%.0f%%", 100*u.cpu.Seconds()/cold[r.n].Seconds())
		if r.fanout {
			wall, share = fmt.Sprintf("%.1f / %.1f", ms(u.wall), ms(u.p99)), "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.2f\t%s\t%s\t%s\n", r.n, r.step, wall, u.cpu.Seconds(), mb(u.maxRSS), share, r.cmd)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "load average %s at the end\n", loadavg())
	fmt.Fprintf(stdout, "to reproduce: scripts/bench.sh -process -n %s -runs %d -fanout %s -changes %d -keep -dir DIR, then the command in DIR/nN\n",
		commas(o.sizes), o.runs, commas(o.fanout), o.changes)
	return nil
}

// commas writes l as -n takes it.
func commas(l []int) string {
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(l)), ","), "[]")
}

// daemonRun starts cfg serve afresh on the committed repository at root
// (firstPublish) and records its first publish in publish; then, for each
// of o.fanout, in fans, the propagation of o.changes changes of the hot
// config to that many watchers of it, the last change's data being *seq.
func daemonRun(cfg, root string, o *options, seq *int, publish *processRow, fans []*processRow, stderr io.Writer) (err error) {
	work, err := os.MkdirTemp(filepath.Dir(root), "serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	defer func() {
		if err != nil { // the end of the daemon's log says why
			printLogEnds(stderr, "process", filepath.Join(work, "daemon.log"))
		}
	}()
	d, u, err := firstPublish(cfg, root, work)
	if err != nil {
		return err
	}
	defer d.stop()
	publish.runs = append(publish.runs, u)
	rev := int64(1)
	for i, w := range o.fanout {
		u, err := fanoutRun(d, root, &rev, w, o.changes, seq)
		if err != nil {
			return fmt.Errorf("%d watchers: %w", w, err)
		}
		fans[i].runs = append(fans[i].runs, u)
	}
	return nil
}

// fanoutRun opens w watch streams of the hot config on d, whose latest
// revision is *rev, and makes changes changes of it, the first of data
// *seq+1. It returns the p50 and p99 of the time from the tailed branch
// moving until every watcher had the change, and the daemon's CPU time
// and peak RSS from the opening of the watchers to the last change.
func fanoutRun(d *soakDaemon, root string, rev *int64, w, changes int, seq *int) (usage, error) {
	pid := d.cmd.Process.Pid
	if err := resetPeakRSS(pid); err != nil {
		return usage{}, err
	}
	cpu := cpuTime(pid)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	f, err := openFanout(ctx, &wg, d.addr, root, *rev, w)
	if err != nil {
		return usage{}, err
	}
	var lat []time.Duration
	for c := range changes {
		*seq++
		t, err := f.change(*seq)
		*rev = f.rev
		if err != nil {
			return usage{}, fmt.Errorf("change %d: %w", c+1, err)
		}
		lat = append(lat, t)
	}
	u := usage{wall: quantile(lat, 0.5), p99: quantile(lat, 0.99), cpu: cpuTime(pid) - cpu}
	u.maxRSS, err = d.peakRSS()
	return u, err
}

// generateApart generates a repository of n configs at root in a child
// process (cfgbench -generate), and returns the module the incremental
// compile edits and its number of users. Generating in this process would
// make its resident set large, and Linux counts a child's peak RSS from
// the parent's at the moment the child starts: the children whose peak this
// process measures must start from a small one.
func generateApart(root string, n int, o *options) (string, int, error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, err
	}
	cmd := exec.Command(self, "-generate", root, "-n", strconv.Itoa(n), "-modules", strconv.Itoa(o.modules), "-seed", strconv.FormatInt(o.seed, 10))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("generating %d configs: %w\n%s", n, err, lastLines(stderr.String(), 10))
	}
	var module string
	var users int
	if _, err := fmt.Sscan(stdout.String(), &module, &users); err != nil {
		return "", 0, fmt.Errorf("generating %d configs: got %q, want a module and its users", n, stdout.String())
	}
	return module, users, nil
}

// generate is cfgbench -generate: it writes a repository of o.sizes[0]
// configs at root and prints the module with about 100 users and their
// number.
func generate(root string, o *options, stdout io.Writer) error {
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := synth.Generate(root, synth.Options{Configs: o.sizes[0], Modules: o.modules, Seed: o.seed}); err != nil {
		return fmt.Errorf("generating: %w", err)
	}
	module, users, err := synth.ModuleWithUsers(root, 100)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, module, users)
	return err
}

// summary returns the median wall time, p99 and CPU time and the highest
// peak RSS of the runs.
func (r *processRow) summary() usage {
	var walls, p99s, cpus []time.Duration
	var rss int64
	for _, u := range r.runs {
		walls, p99s, cpus = append(walls, u.wall), append(p99s, u.p99), append(cpus, u.cpu)
		rss = max(rss, u.maxRSS)
	}
	return usage{wall: median(walls), p99: median(p99s), cpu: median(cpus), maxRSS: rss}
}

func mb(b int64) string { return fmt.Sprintf("%d MB", b/1e6) }

func appendLine(p, line string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "\n%s\n", line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadavg returns the 1, 5 and 15 minute load averages, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
