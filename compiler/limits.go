package compiler

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"go.starlark.net/starlark"
)

// Defaults of the resource limits of a compile (see Options).
const (
	// DefaultMaxMemory is the default limit on the heap of a compile.
	DefaultMaxMemory = 2 << 30
	// DefaultTimeout is the default limit on the wall time of one config.
	DefaultTimeout = time.Minute
	// MaxDepth is how deeply values may nest: the exported struct is at
	// depth 1, and every struct, list, set and map inside a value adds one.
	// Canonical JSON and the Thrift encodings share it; it is
	// thrift.DEFAULT_RECURSION_DEPTH, where Thrift's generated readers (Go
	// and C++ alike) and its Skip stop, so every value cfg writes can be
	// read by every consumer.
	MaxDepth = 64
)

// memoryPoll is how often a compile samples its heap.
const memoryPoll = 10 * time.Millisecond

// A limitError says that a config was stopped by a resource limit.
type limitError struct {
	memory bool // the memory limit; otherwise the time limit
	msg    string
}

func (e *limitError) Error() string { return e.msg }

// A job is the compile of one config: the Starlark threads run on its
// behalf (the config, the modules it is first to load, its validators),
// and the limit that stopped it, if any.
type job struct {
	name      string
	exclusive bool // running alone, after a memory stop
	mu        sync.Mutex
	threads   []*starlark.Thread
	stopped   *limitError
	timer     *time.Timer
}

const jobKey = "cfg.job"

// jobOf returns the job a thread runs for.
func jobOf(thread *starlark.Thread) *job {
	j, _ := thread.Local(jobKey).(*job)
	return j
}

// add registers a thread of the job, cancelling it at once if the job was
// stopped already.
func (j *job) add(t *starlark.Thread) {
	t.SetLocal(jobKey, j)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopped != nil {
		t.Cancel(j.stopped.msg)
		return
	}
	j.threads = append(j.threads, t)
}

// stop cancels every thread of the job with the first limit it passed.
func (j *job) stop(err *limitError) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopped != nil {
		return
	}
	j.stopped = err
	for _, t := range j.threads {
		t.Cancel(err.msg)
	}
}

// limit returns the limit that stopped the job, or nil.
func (j *job) limit() *limitError {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stopped
}

// limits enforces Options.MaxMemory and Options.Timeout on the jobs of one
// compile. The heap is shared by every config compiled at once: when it
// passes the limit, every running job is stopped, and each is compiled
// again alone, so that a config fails for memory only when it passes the
// limit by itself.
type limits struct {
	maxMemory uint64
	timeout   time.Duration

	// exclusive is held for reading by every job, and for writing by a
	// job compiled again alone.
	exclusive sync.RWMutex

	mu       sync.Mutex
	running  map[*job]struct{}
	watchers int           // calls of watch not yet stopped
	done     chan struct{} // closed to stop the sampler
}

func newLimits(maxMemory uint64, timeout time.Duration) *limits {
	return &limits{maxMemory: maxMemory, timeout: timeout, running: map[*job]struct{}{}}
}

// start begins a job; finish must be called when it is over.
func (l *limits) start(name string, exclusive bool) *job {
	j := &job{name: name, exclusive: exclusive}
	if l.timeout > 0 {
		j.timer = time.AfterFunc(l.timeout, func() {
			j.stop(&limitError{msg: fmt.Sprintf("config %q stopped: it ran longer than the time limit of %s (--timeout)", name, l.timeout)})
		})
	}
	l.mu.Lock()
	l.running[j] = struct{}{}
	l.mu.Unlock()
	return j
}

func (l *limits) finish(j *job) {
	if j.timer != nil {
		j.timer.Stop()
	}
	l.mu.Lock()
	delete(l.running, j)
	l.mu.Unlock()
}

// watch samples the heap until the returned function is called, stopping
// every running job when the live heap passes the limit. Calls nest: one
// sampler runs while any call is not stopped.
func (l *limits) watch() (stop func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watchers++; l.watchers == 1 {
		l.done = make(chan struct{})
		go l.sample(l.done)
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.watchers--; l.watchers == 0 {
			close(l.done)
		}
	}
}

// sample is the sampler of watch.
func (l *limits) sample(done chan struct{}) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(memoryPoll)
	defer tick.Stop()
	threshold := l.maxMemory
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		metrics.Read(samples[:1])
		if samples[0].Value.Uint64() <= threshold {
			continue
		}
		// Over the threshold with garbage counted: collect, and look
		// at what is live. Only the jobs running before the collection
		// can have made it.
		jobs := l.runningJobs()
		runtime.GC()
		metrics.Read(samples[1:])
		live := samples[1].Value.Uint64()
		if live > l.maxMemory {
			for _, j := range jobs {
				j.stop(&limitError{memory: true, msg: fmt.Sprintf("config %q stopped: the compile's memory passed the limit of %s (--max-memory)", j.name, FormatBytes(l.maxMemory))})
			}
			continue
		}
		// Under the limit: collect again only once the heap grew by
		// half the limit, so that garbage near the limit does not
		// make every sample collect.
		threshold = max(l.maxMemory, live+l.maxMemory/2)
	}
}

// runningJobs returns the jobs running now.
func (l *limits) runningJobs() []*job {
	l.mu.Lock()
	defer l.mu.Unlock()
	jobs := make([]*job, 0, len(l.running))
	for j := range l.running {
		jobs = append(jobs, j)
	}
	return jobs
}

// isLimit reports whether err comes from a program stopped by a limit.
func isLimit(err error) bool {
	var me *moduleError
	if errors.As(err, &me) {
		return me.limit
	}
	var le *limitError
	return errors.As(err, &le)
}

// FormatBytes renders a size the way --max-memory takes it: 4GiB,
// 512MiB, 100KiB or a number of bytes.
func FormatBytes(n uint64) string {
	for _, u := range []struct {
		suffix string
		size   uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// ParseBytes reads a size: a whole number of bytes with an optional
// suffix B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB
// (powers of 1000).
func ParseBytes(s string) (uint64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("got %q, want a size such as 4GiB, 512MiB or 1000000", s)
	}
	var n uint64
	for _, c := range s[:i] {
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("got %q, too large", s)
		}
		n = n*10 + d
	}
	units := map[string]uint64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	u, ok := units[s[i:]]
	if !ok {
		return 0, fmt.Errorf("got %q, want a size such as 4GiB, 512MiB or 1000000 (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	if n > (1<<64-1)/u {
		return 0, fmt.Errorf("got %q, too large", s)
	}
	return n * u, nil
}
