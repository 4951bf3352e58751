// Command cfgbench measures the cfg compiler against the untyped baseline on
// synthetic config repositories.
//
// For each repository size N it generates a repository once (internal/synth),
// checks that the compiler and the baseline write the same bytes, and then,
// run after run, times side by side a cold compile by the cfg compiler
// (compiler.Build, writing materialized_configs/) and by the baseline
// (internal/baseline: the same programs under plain go.starlark.net with
// untyped constructors and no validators), each with one worker and with one
// per CPU. Between runs it deletes materialized_configs/ and .cfg/. It prints
// one row per N, engine and worker count: the median time over runs, configs
// and megabytes of JSON per second, and the ratio of the typed time to the
// baseline's for the same N and workers.
//
// Usage:
//
//	cfgbench [-n 1000,10000] [-runs 5] [-j 1,NCPU] [-seed 1] [-modules M]
//	         [-dir DIR] [-keep] [-verify=false] [-nowrite] [-incremental]
//	         [-cpuprofile FILE]
//	cfgbench -soak [-cfg cfg] [-watchers 5000] [-stuck 100] [-slow 200]
//	         [-size 5242880] [-commits 200] [-max-rss-mb 300] [-max-p99 100ms]
//	cfgbench -serve [-cfg cfg] [-n 1000,20000] [-runs 5] [-streams 1000,5000]
//	         [-fanout 1,100,1000] [-changes 100] [-dir DIR]
//	cfgbench -cluster [-cfg cfg] [-n 1000] [-runs 5] [-fanout 1000,3000]
//	         [-changes 100] [-dir DIR]
//
// -incremental adds a second table: for each N, with the most workers, the
// median of a cold compile, a no-op compile and a compile after an edit to
// the module used by about 100 configs, each as a share of the cold one.
//
// -nowrite adds rows for both engines compiling in memory, without writing
// files (the typed one through compiler.New and CompileAll), to separate the
// cost of the programs from the cost of the file system. -verify (on by
// default) compiles each repository once with both engines first and fails,
// listing the first differing line of each file, unless the outputs are
// byte-identical. -cpuprofile profiles one extra typed compile of the
// largest N with the most workers.
//
// Both engines run with the garbage collector set as the cfg command sets it
// (internal/gcpolicy) unless GOGC and GOMEMLIMIT are set.
//
// -soak runs the soak benchmark of the distribution daemon instead: cfg
// serve (-cfg names the command) in a process of its own, on a repository
// holding a big config (-size, 5 MB) and a small one; -watchers watch
// streams (5,000), -stuck of them (100) never reading, from a snapshot of
// every config, and opened again each time the daemon drops them; -slow
// connections (200) sending a body a byte a second; then -commits commits
// (200) of the small config, each followed until every reading watcher has
// it. It prints the daemon's peak RSS, goroutines, open file descriptors
// and the quantiles of propagation, from the moment the tailed branch moves
// to each watcher's receipt, and fails unless every reading watcher got
// every revision in order, the peak RSS stays under -max-rss-mb (300) and
// p99 under -max-p99 (100 ms). scripts/bench.sh -soak runs it with the cfg
// it builds.
//
// -serve compares the distribution daemon with an embedded etcd v3.7.3
// (go.etcd.io/etcd/server/v3/embed) holding the same configs, each in a
// process of its own (etcd in cfgbench itself, started again as a child),
// on synthetic repositories of -n configs (1,000 and 20,000 unless -n is
// given; generated, compiled and committed with git once, and kept in
// -dir if given). Each run starts both afresh: cfg serve publishes the
// repository as its first revision, and etcd gets every config under
// /configs/NAME in transactions of up to 8 MB. It records each one's RSS
// once settled (no lower for 2 s), then with -streams watch streams, each
// of one config and its own connection (etcd: a client each, a get and a
// watch from the revision after it). Then, for each -fanout number of
// watchers of one raw config of 1 KB, it makes -changes changes with each
// system, alternating: cfg's from the moment the tailed branch moves (as
// git update-ref moves it; the commit is made before, not timed), etcd's
// from the put, each until every watcher has it. It prints one table: the
// medians over -runs runs of the RSS and of each run's p50 and p99, with
// the load average at the start of each run and the command that
// reproduces it. scripts/bench.sh -serve runs it with the cfg it builds.
//
// -cluster measures the fan-out of a cluster: one cfg serve over bbolt
// (--data-dir), three cfg serve daemons over a three-member etcd cluster
// (--etcd; the members are processes of etcd v3.7.3's server, built from
// internal/etcdmember, with fsync on), and etcd's own watches of one key
// on that cluster, in the same run. On a repository of -n configs (the
// first size; 1,000 unless given) it starts them all afresh each run,
// then, for each -fanout number of watchers of one raw config of 1 KB
// (1,000 and 3,000 unless given), spread evenly over the daemons (etcd's
// watchers over the members, each a client of its own), it makes
// -changes changes with each system, the systems' order rotating change
// by change: cfg's timed from the moment the tailed branch moves, etcd's
// from the put, each until every watcher has it. It prints the medians
// over -runs runs of each system's p50 and p99 with their ratios to the
// single daemon's and to etcd's, and for each process its watchers, its
// RSS with them open, its CPU time a change and per MB of updates
// written to watchers. scripts/bench.sh -cluster runs it with the cfg it
// builds.
//
// It is a development tool; scripts/bench.sh builds and runs it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/internal/baseline"
	"github.com/cfg-dev/cfg/internal/gcpolicy"
	"github.com/cfg-dev/cfg/internal/synth"
	"github.com/cfg-dev/cfg/repo"
)

func main() {
	if n, err := strconv.Atoi(os.Getenv(floorEnv)); err == nil {
		if err := floorWriter(n); err != nil {
			fmt.Fprintln(os.Stderr, "cfgbench: the floor's writer:", err)
			os.Exit(1)
		}
		return
	}
	if etcdMain() {
		return
	}
	// Run the collector as the cfg command does, for both engines alike,
	// unless GOGC and GOMEMLIMIT say otherwise.
	gcpolicy.Compile(compiler.DefaultMaxMemory)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cfgbench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type options struct {
	sizes      []int
	jobs       []int
	runs       int
	seed       int64
	modules    int
	dir        string
	cpuprofile string
	verify     bool
	nowrite    bool
	keep       bool
	incr       bool
	prop       []int
	rounds     int
	examples   string
	process    bool
	fanout     []int // with -process: watchers of the daemon's fan-outs
	changes    int   // with -process: changes a fan-out
	generate   string
	soak       bool
	soakOpts   soakOptions
	serve      bool
	serveOpts  serveOptions
	cluster    bool
	clusterOpt clusterOptions
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fl := flag.NewFlagSet("cfgbench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	o := &options{}
	sizes := fl.String("n", "1000,10000", "comma-separated repository sizes (configs)")
	jobs := fl.String("j", "1,"+strconv.Itoa(runtime.NumCPU()), "comma-separated worker counts")
	fl.IntVar(&o.runs, "runs", 5, "timed runs per size, engine and worker count")
	fl.Int64Var(&o.seed, "seed", 1, "generator seed")
	fl.IntVar(&o.modules, "modules", 0, "modules per repository (0: configs/50)")
	fl.StringVar(&o.dir, "dir", "", "where to generate repositories (default: a new temporary directory)")
	fl.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of one typed compile of the largest size, all workers, to `file`")
	fl.BoolVar(&o.verify, "verify", true, "check that the compiler and the baseline write the same bytes")
	fl.BoolVar(&o.nowrite, "nowrite", false, "also time both engines in memory, without writing files")
	fl.BoolVar(&o.keep, "keep", false, "keep the generated repositories")
	prop := fl.String("propagation", "", "comma-separated subscriber counts: measure commit-to-subscriber propagation instead")
	fl.IntVar(&o.rounds, "rounds", 20, "commits per subscriber count with -propagation")
	fl.StringVar(&o.examples, "example", "examples/jobs", "the config repository -propagation commits to (copied)")
	fl.BoolVar(&o.incr, "incremental", false, "also time incremental compiles: a no-op and a change to a module used by about 100 configs")
	fl.BoolVar(&o.process, "process", false, "measure the cfg command (-cfg) as a child process instead: cold, no-op and incremental compiles, cfg validate, cfg serve's first publish and fan-out to watchers; time, CPU and peak RSS (default -n 20000)")
	fl.StringVar(&o.generate, "generate", "", "only generate a repository of the first -n configs in `dir` and print the module -process edits and its users")
	paper := fl.Bool("paper", false, fmt.Sprintf("with -process, also measure %d configs (takes long)", PaperConfigs))
	fl.BoolVar(&o.soak, "soak", false, "run the soak benchmark of the daemon instead (cfg serve in a process of its own)")
	fl.StringVar(&o.soakOpts.cfg, "cfg", "cfg", "the cfg command that -soak runs the daemon with and -process measures")
	fl.IntVar(&o.soakOpts.watchers, "watchers", 5000, "watch streams with -soak")
	fl.IntVar(&o.soakOpts.stuck, "stuck", 100, "of the watch streams, how many never read, with -soak")
	fl.IntVar(&o.soakOpts.slow, "slow", 200, "connections sending a body a byte a second, with -soak")
	fl.IntVar(&o.soakOpts.size, "size", 5<<20, "bytes of the big config, with -soak")
	fl.IntVar(&o.soakOpts.commits, "commits", 200, "commits with -soak")
	fl.BoolVar(&o.serve, "serve", false, "compare cfg serve with an embedded etcd instead: RSS with watch streams, propagation to watchers (-n default 1000,20000)")
	memory := fl.String("streams", "1000,5000", "with -serve, comma-separated numbers of watch streams to measure RSS with")
	latency := fl.String("fanout", "1,100,1000", "with -serve (-cluster: default 1000,3000; -process: 1000), comma-separated numbers of watchers to measure propagation to")
	fl.IntVar(&o.serveOpts.rounds, "changes", 100, "with -serve, -cluster and -process (default 20), changes per system, watcher count and run")
	fl.BoolVar(&o.cluster, "cluster", false, "measure the fan-out of 3 cfg serve over a 3-member etcd cluster against 1 cfg serve over bbolt and etcd's own watches instead (-n default 1000)")
	maxRSS := fl.Int("max-rss-mb", 300, "with -soak, fail unless the daemon's peak RSS stays under this many MB")
	fl.DurationVar(&o.soakOpts.maxP99, "max-p99", 100*time.Millisecond, "with -soak, fail unless p99 propagation stays under this")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	nSet := false
	fl.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if o.process && !nSet {
		*sizes = "20000"
	}
	if fl.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	var err error
	if o.sizes, err = ints(*sizes); err != nil {
		return nil, fmt.Errorf("-n: %w", err)
	}
	if o.jobs, err = ints(*jobs); err != nil {
		return nil, fmt.Errorf("-j: %w", err)
	}
	if *prop != "" {
		if o.prop, err = ints(*prop); err != nil {
			return nil, fmt.Errorf("-propagation: %w", err)
		}
	}
	if *paper {
		if !o.process {
			return nil, errors.New("-paper: only with -process")
		}
		if !slices.Contains(o.sizes, PaperConfigs) {
			o.sizes = append(o.sizes, PaperConfigs)
		}
	}
	if o.runs < 1 {
		return nil, fmt.Errorf("-runs: got %d, want at least 1", o.runs)
	}
	if o.process {
		o.fanout, o.changes = []int{1000}, 20
		fl.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "fanout":
				o.fanout, err = ints(*latency)
			case "changes":
				o.changes = o.serveOpts.rounds
			}
		})
		if err != nil {
			return nil, fmt.Errorf("-fanout: %w", err)
		}
		if o.changes < 1 {
			return nil, fmt.Errorf("-changes: got %d, want at least 1", o.changes)
		}
	}
	o.soakOpts.maxRSS = int64(*maxRSS) * 1e6
	if o.serve {
		so := &o.serveOpts
		so.cfg, so.runs, so.seed, so.dir = o.soakOpts.cfg, o.runs, o.seed, o.dir
		so.command = "scripts/bench.sh " + strings.Join(args, " ")
		so.sizes = []int{1000, 20000}
		fl.Visit(func(f *flag.Flag) {
			if f.Name == "n" {
				so.sizes = o.sizes
			}
		})
		if so.memory, err = ints(*memory); err != nil {
			return nil, fmt.Errorf("-streams: %w", err)
		}
		slices.Sort(so.memory)
		if so.latency, err = ints(*latency); err != nil {
			return nil, fmt.Errorf("-fanout: %w", err)
		}
		if so.rounds < 1 {
			return nil, fmt.Errorf("-changes: got %d, want at least 1", so.rounds)
		}
	}
	if o.cluster {
		if o.serve {
			return nil, errors.New("-cluster: not with -serve")
		}
		co := &o.clusterOpt
		co.cfg, co.runs, co.seed, co.dir, co.rounds = o.soakOpts.cfg, o.runs, o.seed, o.dir, o.serveOpts.rounds
		co.command = "scripts/bench.sh " + strings.Join(args, " ")
		co.configs, co.watchers = 1000, []int{1000, 3000}
		fl.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "n":
				co.configs = o.sizes[0]
			case "fanout":
				co.watchers, err = ints(*latency)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("-fanout: %w", err)
		}
		if co.rounds < 1 {
			return nil, fmt.Errorf("-changes: got %d, want at least 1", co.rounds)
		}
	}
	if so := o.soakOpts; so.watchers < 1 || so.stuck < 0 || so.stuck >= so.watchers || so.slow < 0 || so.size < 16 || so.commits < 1 {
		return nil, fmt.Errorf("-soak: got %d watchers, %d never reading, %d slow, %d bytes, %d commits; want at least one reading watcher, a config of 16 bytes or more and one commit",
			so.watchers, so.stuck, so.slow, so.size, so.commits)
	}
	return o, nil
}

func ints(s string) ([]int, error) {
	var l []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		if !slices.Contains(l, n) {
			l = append(l, n)
		}
	}
	return l, nil
}

// An engine compiles the repository at root with jobs workers and reports
// the configs and bytes it produced.
type engine struct {
	name string
	run  func(root string, jobs int) (configs int, bytes int64, err error)
}

var (
	typed = engine{"typed", func(root string, jobs int) (int, int64, error) {
		res, err := compiler.Build(context.Background(), root, compiler.Options{Jobs: jobs})
		if err != nil {
			return 0, 0, err
		}
		if res.Failed > 0 {
			return res.Compiled, res.Bytes, fmt.Errorf("%d configs failed:\n%s", res.Failed, firstDiags(res, 5))
		}
		return res.Compiled, res.Bytes, nil
	}}
	typedNoWrite = engine{"typed-nowrite", func(root string, jobs int) (int, int64, error) {
		r, err := repo.Open(root)
		if err != nil {
			return 0, 0, err
		}
		defer r.Close()
		fsys := r.FS()
		tree, err := repo.Scan(fsys)
		if err != nil {
			return 0, 0, err
		}
		c := compiler.New(fsys, compiler.Options{Jobs: jobs})
		var n int
		var b int64
		for _, o := range c.CompileAll(context.Background(), tree.Configs) {
			if len(o.Diags) > 0 {
				return n, b, fmt.Errorf("%s: %v", o.Name, o.Diags[0])
			}
			n++
			b += int64(len(o.Data))
		}
		return n, b, nil
	}}
	untyped = engine{"baseline", func(root string, jobs int) (int, int64, error) {
		st, err := baseline.Run(root, jobs)
		return st.Configs, st.Bytes, err
	}}
	untypedNoWrite = engine{"baseline-nowrite", func(root string, jobs int) (int, int64, error) {
		st, err := baseline.RunInMemory(root, jobs)
		return st.Configs, st.Bytes, err
	}}
)

func firstDiags(res *compiler.Result, n int) string {
	var b strings.Builder
	for i, d := range res.Diags() {
		if i == n {
			fmt.Fprintf(&b, "  ...\n")
			break
		}
		fmt.Fprintf(&b, "  %s\n", d.Error())
	}
	return b.String()
}

type row struct {
	n       int
	engine  string
	jobs    int
	median  time.Duration
	configs int
	bytes   int64
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.soak {
		return soak(o.soakOpts, stdout, stderr)
	}
	if o.serve {
		return serveBench(o.serveOpts, stdout, stderr)
	}
	if o.cluster {
		return clusterBench(o.clusterOpt, stdout, stderr)
	}
	if len(o.prop) > 0 {
		return propagation(o.prop, o.rounds, o.examples, stdout, stderr)
	}
	if o.generate != "" {
		return generate(o.generate, o, stdout)
	}
	if o.process {
		return process(o, stdout, stderr)
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
	engines := []engine{typed, untyped}
	if o.nowrite {
		engines = []engine{typed, untyped, typedNoWrite, untypedNoWrite}
	}
	var rows, incRows []row
	for _, n := range o.sizes {
		root := filepath.Join(dir, fmt.Sprintf("n%d", n))
		fmt.Fprintf(stderr, "generating %d configs in %s\n", n, root)
		if err := os.RemoveAll(root); err != nil {
			return err
		}
		if err := synth.Generate(root, synth.Options{Configs: n, Modules: o.modules, Seed: o.seed}); err != nil {
			return fmt.Errorf("generating: %w", err)
		}
		if o.verify {
			if err := verify(root, stderr); err != nil {
				return err
			}
		}
		times := map[string][]time.Duration{}
		results := map[string]row{}
		for r := range o.runs {
			for _, jobs := range o.jobs {
				for _, e := range engines {
					d, configs, bytes, err := timeRun(root, e, jobs)
					if err != nil {
						return fmt.Errorf("%s -j %d on %d configs: %w", e.name, jobs, n, err)
					}
					fmt.Fprintf(stderr, "N=%d run %d/%d %-16s -j %d: %.3fs\n", n, r+1, o.runs, e.name, jobs, d.Seconds())
					key := e.name + "/" + strconv.Itoa(jobs)
					times[key] = append(times[key], d)
					results[key] = row{n: n, engine: e.name, jobs: jobs, configs: configs, bytes: bytes}
				}
			}
		}
		for _, jobs := range o.jobs {
			for _, e := range engines {
				key := e.name + "/" + strconv.Itoa(jobs)
				rw := results[key]
				rw.median = median(times[key])
				rows = append(rows, rw)
			}
		}
		if o.incr {
			inc, err := incremental(root, n, o.runs, slices.Max(o.jobs), stderr)
			if err != nil {
				return err
			}
			incRows = append(incRows, inc...)
		}
		if o.cpuprofile != "" && n == slices.Max(o.sizes) {
			if err := profile(root, o.cpuprofile, slices.Max(o.jobs)); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "wrote CPU profile of the typed compile, N=%d -j %d, to %s\n", n, slices.Max(o.jobs), o.cpuprofile)
		}
		os.RemoveAll(root + ".trash")
		if !o.keep && o.dir == "" {
			os.RemoveAll(root)
		}
	}
	fmt.Fprintf(stdout, "cfgbench: %s/%s, %d CPUs, %s, %d runs, median times\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.runs)
	printTable(stdout, rows)
	if len(incRows) > 0 {
		fmt.Fprintln(stdout)
		printIncremental(stdout, incRows)
	}
	return nil
}

// incremental times, with the cfg compiler and jobs workers, a cold compile,
// a no-op compile (nothing changed), and a compile after an edit to the
// module with the number of users closest to 100 (the edit changes the
// module's content, not what it computes, so the affected configs are
// compiled again but their files are not rewritten), each runs times.
func incremental(root string, n, runs, jobs int, stderr io.Writer) ([]row, error) {
	module, users, err := synth.ModuleWithUsers(root, 100)
	if err != nil {
		return nil, err
	}
	build := func() (*compiler.Result, time.Duration, error) {
		runtime.GC()
		start := time.Now()
		res, err := compiler.Build(context.Background(), root, compiler.Options{Jobs: jobs})
		d := time.Since(start)
		if err == nil && res.Failed > 0 {
			err = fmt.Errorf("%d configs failed", res.Failed)
		}
		return res, d, err
	}
	var cold, noop, change []time.Duration
	var coldRes, changeRes *compiler.Result
	for r := range runs {
		if err := clean(root); err != nil {
			return nil, err
		}
		res, d, err := build()
		if err != nil {
			return nil, err
		}
		cold, coldRes = append(cold, d), res
		if res, d, err = build(); err != nil {
			return nil, err
		}
		if res.Compiled != 0 {
			return nil, fmt.Errorf("no-op compile compiled %d configs", res.Compiled)
		}
		noop = append(noop, d)
		f, err := os.OpenFile(filepath.Join(root, repo.SourceDir, filepath.FromSlash(module)), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "\n# edit %d\n", r)
		if err := f.Close(); err != nil {
			return nil, err
		}
		if res, d, err = build(); err != nil {
			return nil, err
		}
		if res.Compiled != users {
			return nil, fmt.Errorf("changing %s (%d users) compiled %d configs", module, users, res.Compiled)
		}
		change, changeRes = append(change, d), res
		fmt.Fprintf(stderr, "N=%d incremental run %d/%d: cold %.3fs, no-op %.3fs, %s (%d users) %.3fs\n",
			n, r+1, runs, cold[r].Seconds(), noop[r].Seconds(), module, users, change[r].Seconds())
	}
	return []row{
		{n: n, engine: "cold", jobs: jobs, median: median(cold), configs: coldRes.Compiled},
		{n: n, engine: "no-op", jobs: jobs, median: median(noop)},
		{n: n, engine: fmt.Sprintf("module edit (%d users)", users), jobs: jobs, median: median(change), configs: changeRes.Compiled},
	}, nil
}

func printIncremental(w io.Writer, rows []row) {
	cold := map[int]time.Duration{}
	for _, r := range rows {
		if r.engine == "cold" {
			cold[r.n] = r.median
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tincremental compile\tjobs\tmedian s\tcompiled\tof cold\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.3f\t%d\t%.1f%%\t\n", r.n, r.engine, r.jobs, r.median.Seconds(), r.configs,
			100*r.median.Seconds()/cold[r.n].Seconds())
	}
	tw.Flush()
}

// clean moves the outputs and caches of previous runs out of the
// repository, into root+".trash", which is deleted after the runs of a
// size: deleting ten thousand files just before a timed run leaves the
// file system busy with them and slows the run that follows, whichever
// engine it is.
func clean(root string) error {
	trash := root + ".trash"
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return err
	}
	for _, d := range []string{repo.MaterializedDir, repo.CacheDir} {
		dst, err := os.MkdirTemp(trash, d+"-")
		if err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(root, d), filepath.Join(dst, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func timeRun(root string, e engine, jobs int) (time.Duration, int, int64, error) {
	if err := clean(root); err != nil {
		return 0, 0, 0, err
	}
	runtime.GC()
	start := time.Now()
	configs, bytes, err := e.run(root, jobs)
	return time.Since(start), configs, bytes, err
}

func profile(root, file string, jobs int) error {
	if err := clean(root); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	_, _, err = typed.run(root, jobs)
	pprof.StopCPUProfile()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(w io.Writer, rows []row) {
	// The typed engines are compared with the baseline writing the same way.
	against := map[string]string{typed.name: untyped.name, typedNoWrite.name: untypedNoWrite.name}
	type key struct {
		n, jobs int
		engine  string
	}
	base := map[key]time.Duration{}
	for _, r := range rows {
		base[key{r.n, r.jobs, r.engine}] = r.median
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tengine\tjobs\tmedian s\tconfigs/s\tMB/s\tvs baseline\t")
	for _, r := range rows {
		s := r.median.Seconds()
		ratio := "-"
		if b := base[key{r.n, r.jobs, against[r.engine]}]; b > 0 {
			ratio = fmt.Sprintf("%.2fx", s/b.Seconds())
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.3f\t%.0f\t%.1f\t%s\t\n",
			r.n, r.engine, r.jobs, s, float64(r.configs)/s, float64(r.bytes)/1e6/s, ratio)
	}
	tw.Flush()
}

// verify compiles root with both engines and compares the materialized files
// byte for byte.
func verify(root string, stderr io.Writer) error {
	jobs := runtime.NumCPU()
	typedOut := filepath.Join(filepath.Dir(root), filepath.Base(root)+"-typed")
	if err := os.RemoveAll(typedOut); err != nil {
		return err
	}
	defer os.RemoveAll(typedOut)
	if err := clean(root); err != nil {
		return err
	}
	if _, _, err := typed.run(root, jobs); err != nil {
		return fmt.Errorf("typed compile: %w", err)
	}
	if err := os.Rename(filepath.Join(root, repo.MaterializedDir), typedOut); err != nil {
		return err
	}
	if _, _, err := untyped.run(root, jobs); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	diffs, err := compareTrees(typedOut, filepath.Join(root, repo.MaterializedDir))
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		for _, d := range diffs[:min(len(diffs), 10)] {
			fmt.Fprintln(stderr, "  "+d)
		}
		return fmt.Errorf("typed and baseline outputs differ in %d files", len(diffs))
	}
	fmt.Fprintf(stderr, "verified: typed and baseline outputs are identical\n")
	return nil
}

// compareTrees returns one line per file that differs between dirs a and b,
// leaving out files whose names start with a dot (the typed compile's record
// of types, which the baseline does not write).
func compareTrees(a, b string) ([]string, error) {
	fa, err := listFiles(a)
	if err != nil {
		return nil, err
	}
	fb, err := listFiles(b)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, p := range fa {
		if _, ok := slices.BinarySearch(fb, p); !ok {
			diffs = append(diffs, p+": only in typed output")
		}
	}
	for _, p := range fb {
		if _, ok := slices.BinarySearch(fa, p); !ok {
			diffs = append(diffs, p+": only in baseline output")
			continue
		}
		da, err := os.ReadFile(filepath.Join(a, p))
		if err != nil {
			return nil, err
		}
		db, err := os.ReadFile(filepath.Join(b, p))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(da, db) {
			diffs = append(diffs, p+": "+firstDiff(da, db))
		}
	}
	return diffs, nil
}

func listFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	slices.Sort(files)
	return files, err
}

// firstDiff describes the first line that differs between a and b.
func firstDiff(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: typed %q, baseline %q", i+1, x, y)
		}
	}
	return "differs"
}
