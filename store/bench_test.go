package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchConfigs returns n configs of paper-like sizes: log-normal, median
// 1 KiB, mean about 12 KiB, 95th percentile about 40 KiB, at most 5 MiB.
func benchConfigs(n int) []ConfigVersion {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]ConfigVersion, n)
	for i := range out {
		size := int(math.Exp(math.Log(1024) + 2.23*r.NormFloat64()))
		size = max(64, min(size, 5<<20))
		b := make([]byte, size)
		for j := range b {
			b[j] = 'a' + byte(r.IntN(26))
		}
		out[i] = ConfigVersion{Name: fmt.Sprintf("svc%03d/config%05d", i%500, i), Compiled: true, Type: "Job", Data: b}
	}
	return out
}

// peakHeap runs fn and returns the most heap it saw in use above what was
// in use before, sampling every 2 ms.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	}()
	fn()
	close(done)
	<-sampled
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

func totalBytes(cs []ConfigVersion) int64 {
	var n int64
	for _, c := range cs {
		n += int64(len(c.Data))
	}
	return n
}

// BenchmarkFirstPublish appends a first revision of 20,000 configs
// (about 226 MB) to a new store.
func BenchmarkFirstPublish(b *testing.B) {
	configs := benchConfigs(20000)
	b.ReportAllocs()
	b.SetBytes(totalBytes(configs))
	var peak uint64
	for b.Loop() {
		b.StopTimer()
		s, err := OpenBolt(filepath.Join(b.TempDir(), "cfg.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		peak = max(peak, peakHeap(func() {
			if err := s.Append(context.Background(), Revision{Number: 1, Commit: "c1", Time: time.Now()}, Entries(configs)); err != nil {
				b.Fatal(err)
			}
		}))
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}

// bigStore makes a store holding a first revision of 20,000 configs and
// 100 revisions of one changed config each.
func bigStore(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "cfg.db")
	s, err := OpenBolt(path)
	if err != nil {
		b.Fatal(err)
	}
	configs := benchConfigs(20000)
	ctx := context.Background()
	if err := s.Append(ctx, Revision{Number: 1, Commit: "c1", Time: time.Now()}, Entries(configs)); err != nil {
		b.Fatal(err)
	}
	for n := int64(2); n <= 101; n++ {
		c := configs[n*97%20000]
		c.Data = fmt.Appendf(nil, "%s-%d", c.Data[:min(len(c.Data), 2000)], n)
		if err := s.Append(ctx, Revision{Number: n, Commit: fmt.Sprint("c", n), Time: time.Now()}, Entries([]ConfigVersion{c})); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	return path
}

// BenchmarkCheck measures the checks of a store of 20,000 configs (about
// 226 MB and 100 more revisions): OpenBolt's quick check of the meta
// pages, CheckBolt's check of every page and value that OpenBolt runs at
// every start, a whole OpenBolt, and bbolt's own tx.Check for
// comparison. The file is in the page cache: a cold start adds reading it
// from disk.
func BenchmarkCheck(b *testing.B) {
	path := bigStore(b)
	b.Run("quick", func(b *testing.B) {
		for b.Loop() {
			if err := check(path, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckBolt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := CheckBolt(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("OpenBolt", func(b *testing.B) {
		for b.Loop() {
			s, err := OpenBolt(path)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("bbolt-tx.Check", func(b *testing.B) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		for b.Loop() {
			err := db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendOne appends revisions that change one config of 1 KB to
// a store of 1,000 configs, as publishing a commit does: committed to the
// log (one fdatasync; the bolt file is written in the background) and,
// for comparison, to the bolt file directly (a transaction: two
// fdatasyncs). Each revision is read back with Latest, as the daemon's
// tailer does before the next.
func BenchmarkAppendOne(b *testing.B) {
	for _, logged := range []bool{true, false} {
		name := "logged"
		if !logged {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			if !logged {
				defer func(n int) { walBytes = n }(walBytes)
				walBytes = -1
			}
			s, err := OpenBolt(filepath.Join(b.TempDir(), "cfg.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Append(ctx, Revision{Number: 1, Commit: "c1"}, Entries(benchConfigs(1000))); err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 1024)
			n := int64(1)
			for b.Loop() {
				n++
				c := ConfigVersion{Name: "svc007/config00007", Compiled: true, Data: data}
				if err := s.Append(ctx, Revision{Number: n, Commit: fmt.Sprintf("c%d", n)}, Entries([]ConfigVersion{c})); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Latest(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
