package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

// PaperConfigs is the repository size -paper adds: about the size of the
// repository the Configerator paper describes (about 1.4 GB compiled).
const PaperConfigs = 100_000

// A usage is what one run of a child process cost, from its rusage.
type usage struct {
	wall, cpu time.Duration // cpu: user and system time
	maxRSS    int64         // peak resident set size, bytes
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
	n    int
	step string
	cmd  string
	runs []usage
}

// process measures the cfg command, as a child process, on a repository
// of each size: a cold compile, a no-op compile, a compile after an edit to
// the module used by about 100 configs, and cfg validate, each runs times,
// and prints the median wall and CPU time and the highest peak RSS of each.
func process(o *options, stdout, stderr io.Writer) error {
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
		fmt.Fprintf(stderr, "repository: %s (%s)\n", root, gen)
		if !o.keep && o.dir == "" {
			os.RemoveAll(root)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tstep\tmedian s\tCPU s\tpeak RSS\tof cold CPU\tcommand (in the repository)")
	cold := map[int]time.Duration{}
	for _, r := range rows {
		wall, cpu, rss := r.summary()
		if r.step == "cold compile" {
			cold[r.n] = cpu
		}
		fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%s\t%.0f%%\t%s\n", r.n, r.step, wall.Seconds(), cpu.Seconds(), mb(rss),
			100*cpu.Seconds()/cold[r.n].Seconds(), r.cmd)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "load average %s at the end\n", loadavg())
	fmt.Fprintf(stdout, "to reproduce: scripts/bench.sh -process -n %s -runs %d -keep -dir DIR, then the command in DIR/nN\n",
		strings.Trim(strings.Join(strings.Fields(fmt.Sprint(o.sizes)), ","), "[]"), o.runs)
	return nil
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

// summary returns the median wall and CPU time and the highest peak RSS.
func (r *processRow) summary() (wall, cpu time.Duration, rss int64) {
	var walls, cpus []time.Duration
	for _, u := range r.runs {
		walls, cpus = append(walls, u.wall), append(cpus, u.cpu)
		rss = max(rss, u.maxRSS)
	}
	return median(walls), median(cpus), rss
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
