package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Options says what to generate.
type Options struct {
	// Configs is the number of .cconf files (default 1000).
	Configs int
	// Modules is the number of .cinc modules under source/lib/ (default
	// Configs/50, at least 5).
	Modules int
	// Seed makes the repository: the same Options give the same bytes.
	Seed int64
}

func (o Options) withDefaults() Options {
	if o.Configs <= 0 {
		o.Configs = 1000
	}
	if o.Modules <= 0 {
		o.Modules = o.Configs / 50
	}
	o.Modules = max(o.Modules, 5)
	return o
}

// The compiled size of configs follows a lognormal distribution with the
// paper's median and 95th percentile, cut at MaxSize; its mean is then near
// 12 KB. Sizes below what the smallest program of a kind produces (about
// 500 bytes) are raised to it.
const (
	MedianSize = 1000
	P95Size    = 45000
	MaxSize    = 1 << 20
)

// ConfigInfo describes one generated config.
type ConfigInfo struct {
	// Name is the config name: its path under source/ without ".cconf".
	Name string
	// Kind is the root type: "Job", "CacheConfig" or "GateConfig".
	Kind string
	// Modules are the .cinc files the config loads directly, as paths under
	// source/.
	Modules []string
	// Size is the predicted size in bytes of the compiled JSON file,
	// trailing newline included.
	Size int
	// Target is the size drawn from the distribution; Size is as close to it
	// as the program's granularity allows.
	Target int
}

// Plan returns what Generate(dir, o) writes, config by config, without
// writing anything.
func Plan(o Options) []ConfigInfo {
	p := newPlan(o)
	infos := make([]ConfigInfo, len(p.configs))
	for i, c := range p.configs {
		infos[i] = c.info()
	}
	return infos
}

// Generate writes a config repository into dir: schemas and validators under
// source/schemas/, o.Modules modules under source/lib/ and o.Configs configs
// under source/<team>/<dir>/. The output is deterministic for o.
func Generate(dir string, o Options) error {
	p := newPlan(o)
	made := map[string]bool{}
	write := func(rel, text string) error {
		path := filepath.Join(dir, "source", filepath.FromSlash(rel))
		if d := filepath.Dir(path); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			made[d] = true
		}
		return os.WriteFile(path, []byte(text), 0o644)
	}
	for _, f := range schemaFiles {
		if err := write(f.path, f.text); err != nil {
			return err
		}
	}
	for _, m := range p.modules {
		if err := write(m.path(), m.source()); err != nil {
			return err
		}
	}
	for _, c := range p.configs {
		if err := write(c.name+".cconf", c.source()); err != nil {
			return err
		}
	}
	return nil
}

type plan struct {
	modules []module
	configs []*config
}

var (
	teams = []string{
		"ads", "events", "feed", "groups", "growth", "identity", "infra", "maps",
		"marketplace", "messaging", "ml", "network", "notifications", "payments",
		"photos", "ranking", "search", "security", "storage", "video",
	}
	subdirs = []string{"api", "backend", "batch", "cache", "edge", "ingest", "web"}
	words   = strings.Fields(`the config owner service region rollout traffic shard
		replica cache tier canary health check latency budget capacity throughput queue
		worker batch stream index ranking model feature gate experiment cluster host
		memory disk network quota limit retry timeout backoff deploy release review`)
	priorities = []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}
)

func newPlan(o Options) *plan {
	o = o.withDefaults()
	r := rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed5eed))
	p := &plan{}
	var (
		utils  []*utilMod
		jobs   []*jobsMod
		caches []*cacheMod
		gates  []*gateMod
	)
	p.modules, utils, jobs, caches, gates = newModules(r, o.Modules)
	pickUtil := newZipf(len(utils), 1)
	pickJobs := newZipf(len(jobs), 1)
	pickCache := newZipf(len(caches), 1)
	pickGate := newZipf(len(gates), 1)

	// Stratified lognormal sizes: config i gets the quantile perm[i] of the
	// distribution, so that every N has the same quantiles.
	sigma := math.Log(float64(P95Size)/MedianSize) / 1.6448536269514722
	perm := r.Perm(o.Configs)
	width := max(5, len(strconv.Itoa(o.Configs-1)))
	costs := map[elemKey]int{}
	for i := range o.Configs {
		u := (float64(perm[i]) + 0.5) / float64(o.Configs)
		z := math.Sqrt2 * math.Erfinv(2*u-1)
		c := &config{
			target: int(min(MaxSize, math.Round(MedianSize*math.Exp(sigma*z)))),
			team:   teams[r.IntN(len(teams))],
			sub:    subdirs[r.IntN(len(subdirs))],
		}
		nmods := 1
		switch x := r.Float64(); {
		case x < 0.15:
			nmods = 3
		case x < 0.5:
			nmods = 2
		}
		var third int
		switch x := r.Float64(); {
		case x < 0.6:
			c.kind = "Job"
			c.jobs = jobs[pickJobs.pick(r)]
			c.primary = c.jobs
			third = r.IntN(len(jobs))
			if nmods == 3 && jobs[third] != c.jobs {
				c.thirdJobs = jobs[third]
			}
			c.replicas = 1 + r.IntN(20)
			c.priority = priorities[r.IntN(len(priorities))]
		case x < 0.85:
			c.kind = "CacheConfig"
			c.cache = caches[pickCache.pick(r)]
			c.primary = c.cache
			third = r.IntN(len(caches))
			if nmods == 3 && caches[third] != c.cache {
				c.thirdCache = caches[third]
			}
			c.capacity = 1 + r.IntN(512)
		default:
			c.kind = "GateConfig"
			c.gate = gates[pickGate.pick(r)]
			c.primary = c.gate
			third = r.IntN(len(gates))
			if nmods == 3 && gates[third] != c.gate {
				c.thirdGate = gates[third]
			}
		}
		if nmods >= 2 {
			c.util = utils[pickUtil.pick(r)]
		}
		c.labelN = r.IntN(100)
		c.name = fmt.Sprintf("%s/%s/%s_%0*d", c.team, c.sub, kindFile[c.kind], width, i)
		c.size = c.fit(r, costs)
		p.configs = append(p.configs, c)
	}
	return p
}

var kindFile = map[string]string{"Job": "job", "CacheConfig": "cache", "GateConfig": "gate"}

// filler returns n characters of words.
func filler(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()[:n]
}
