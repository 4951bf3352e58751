package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cfg-dev/cfg/internal/etcdtest"
	"github.com/cfg-dev/cfg/wire"
)

// The tests of the etcd store share one 3-member cluster, started by the
// first test that needs it; each test keeps under its own prefix.
var (
	clusterOnce sync.Once
	cluster     *etcdtest.Cluster
	clusterCli  *clientv3.Client
	clusterErr  error
	prefixes    atomic.Int64
)

func TestMain(m *testing.M) {
	if path := os.Getenv(loggedChildEnv); path != "" {
		loggedChild(path)
		return
	}
	code := m.Run()
	if clusterCli != nil {
		clusterCli.Close()
	}
	if cluster != nil {
		cluster.Close()
	}
	os.Exit(code)
}

// EtcdForTest returns a client of the tests' cluster and a prefix of the
// test's own.
func EtcdForTest(t testing.TB) (*clientv3.Client, string) {
	t.Helper()
	clusterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cfg-etcd-")
		if err != nil {
			clusterErr = err
			return
		}
		if cluster, clusterErr = etcdtest.Start(dir, 3); clusterErr != nil {
			return
		}
		clusterCli, clusterErr = cluster.Client()
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return clusterCli, fmt.Sprintf("/cfg-test/%d/", prefixes.Add(1))
}

func openEtcdTest(t *testing.T, cli *clientv3.Client, prefix string) *Etcd {
	t.Helper()
	s, err := OpenEtcd(t.Context(), cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// configsOf returns n configs named PREFIX/NNN whose data name the writer.
func configsOf(writer string, n int) []ConfigVersion {
	var cs []ConfigVersion
	for i := range n {
		cs = append(cs, cv(fmt.Sprintf("%s/%03d", writer, i), writer))
	}
	return cs
}

// checkRevision checks that revision n holds exactly the configs of
// writer, n of them.
func checkRevision(t *testing.T, s Store, n int64, writer string, count int) {
	t.Helper()
	var names []string
	if err := s.Changed(t.Context(), n, func(name string) error { names = append(names, name); return nil }); err != nil {
		t.Fatal(err)
	}
	var wrong []string
	for _, name := range names {
		if !strings.HasPrefix(name, writer+"/") {
			wrong = append(wrong, name)
		}
	}
	r, err := s.Revision(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != count || len(wrong) > 0 || r.Configs != count || r.Commit != "c-"+writer {
		t.Errorf("revision %d: commit %q, %d configs, %d changed, of other writers %q; want commit c-%s and %d configs of %s",
			n, r.Commit, r.Configs, len(names), wrong, writer, count, writer)
	}
	err = s.Since(t.Context(), n-1, All(), func(c ConfigVersion) error {
		if c.Revision == n && string(c.Data) != writer {
			t.Errorf("revision %d: config %q holds %q, want %q", n, c.Name, c.Data, writer)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEtcdAppendRace appends each revision from several writers at once,
// each through its own store: exactly one of them wins each revision, the
// others get ErrOutOfOrder, and the revision holds the winner's configs
// and nothing of the others'.
func TestEtcdAppendRace(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	const writers, revisions, configs = 3, 4, 150 // 150 configs: several transactions each
	stores := make([]*Etcd, writers)
	for i := range stores {
		stores[i] = openEtcdTest(t, cli, prefix)
	}
	for n := int64(1); n <= revisions; n++ {
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() {
				w := fmt.Sprintf("w%d", i)
				errs[i] = s.Append(t.Context(), Revision{Number: n, Commit: "c-" + w}, Entries(configsOf(w, configs)))
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("revision %d: writers %d and %d both won", n, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, ErrOutOfOrder):
				t.Errorf("revision %d: writer %d: %v, want ErrOutOfOrder", n, i, err)
			}
		}
		if winner < 0 {
			// Each claim can end the one before it; the last claimer
			// wins unless something else failed.
			t.Fatalf("revision %d: no writer won: %v", n, errs)
		}
		for _, s := range stores {
			if l, err := s.Latest(t.Context()); err != nil || l.Number != n {
				t.Fatalf("after revision %d: latest %d, %v", n, l.Number, err)
			}
		}
		checkRevision(t, stores[0], n, fmt.Sprintf("w%d", winner), configs)
	}
}

// TestEtcdClaimTaken appends a revision through one store while another
// is in the middle of appending it: the one that claimed it last makes it
// visible with only its own configs, and the first fails.
func TestEtcdClaimTaken(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	a, b := openEtcdTest(t, cli, prefix), openEtcdTest(t, cli, prefix)
	mustAppend(t, a, rev{Revision{Number: 1, Commit: "c-first"}, configsOf("first", 1)})
	var errB error
	errA := a.Append(t.Context(), Revision{Number: 2, Commit: "c-a"}, func(yield func(ConfigVersion, error) bool) {
		for i, c := range configsOf("a", 300) {
			if i == 200 { // after several transactions of a's
				errB = b.Append(t.Context(), Revision{Number: 2, Commit: "c-b"}, Entries(configsOf("b", 10)))
			}
			if !yield(c, nil) {
				return
			}
		}
	})
	if errB != nil {
		t.Fatalf("the second writer: %v", errB)
	}
	if !errors.Is(errA, ErrOutOfOrder) || errA.Error() != "appending revision 2: revision out of order: latest is 2" {
		t.Errorf("the first writer: %v, want ErrOutOfOrder, latest is 2", errA)
	}
	checkRevision(t, a, 2, "b", 10)

	// The same with the second writer still staging when the first
	// tries to finish: neither sees the other's entries, and the first
	// finds its claim gone.
	var errC error
	c := openEtcdTest(t, cli, prefix)
	errA = a.Append(t.Context(), Revision{Number: 3, Commit: "c-a"}, func(yield func(ConfigVersion, error) bool) {
		for _, c := range configsOf("a", 200) {
			if !yield(c, nil) {
				return
			}
		}
		errC = c.Append(t.Context(), Revision{Number: 3, Commit: "c-c"}, func(yield func(ConfigVersion, error) bool) {
			for _, c := range configsOf("c", 200) {
				if !yield(c, nil) {
					return
				}
			}
			yield(ConfigVersion{}, errors.New("cut short"))
		})
	})
	if errC == nil || errC.Error() != "appending revision 3: cut short" {
		t.Errorf("the writer cut short: %v", errC)
	}
	if !errors.Is(errA, ErrOutOfOrder) || errA.Error() != "appending revision 3: revision out of order: another writer is appending it" {
		t.Errorf("the writer whose claim was taken: %v", errA)
	}
	if l, _ := a.Latest(t.Context()); l.Number != 2 {
		t.Errorf("latest %d, want 2", l.Number)
	}
	mustAppend(t, b, rev{Revision{Number: 3, Commit: "c-b"}, configsOf("b", 3)})
	checkRevision(t, a, 3, "b", 3)
}

// TestEtcdLeftovers cuts an Append short after it wrote entries and the
// chunks of a big config, as a publisher killed midway would: the keys
// are in etcd, unseen, and the next Append of the revision removes them.
func TestEtcdLeftovers(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	mustAppend(t, s, rev{Revision{Number: 1, Commit: "c-first"}, configsOf("first", 1)})
	ctx, cancel := context.WithCancel(t.Context())
	big := ConfigVersion{Name: "big", Data: bytes.Repeat([]byte("x"), 3*etcdChunkBytes-64)} // 3 chunks with its header
	err := s.Append(ctx, Revision{Number: 2, Commit: "c-dead"}, func(yield func(ConfigVersion, error) bool) {
		for _, c := range append([]ConfigVersion{big}, configsOf("dead", 200)...) {
			if !yield(c, nil) {
				return
			}
		}
		cancel()
		yield(cv("last", "x"), nil)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append cut short: %v", err)
	}
	count := func(bucket []byte) int64 {
		resp, err := cli.Get(t.Context(), s.bucketStart(bucket), clientv3.WithRange(s.bucketEnd(bucket)), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	// A change is written before its entry, maybe in the transaction
	// before.
	if h, c, k := count(bucketHistory), count(bucketChanges), count(bucketChunks); h < 100 || c != h && c != h+1 || k != 3 {
		t.Fatalf("after an Append cut short: %d history, %d changes, %d chunk keys; want some, as many or one more, 3", h, c, k)
	}
	if got, err := s.Get(t.Context(), "big"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(big) after an Append cut short = %d bytes, %v; want ErrNotFound", len(got.Data), err)
	}
	mustAppend(t, openEtcdTest(t, cli, prefix), rev{Revision{Number: 2, Commit: "c-b"}, configsOf("b", 5)})
	if h, c, k := count(bucketHistory), count(bucketChanges), count(bucketChunks); h != 6 || c != 6 || k != 0 {
		t.Errorf("after the next Append: %d history, %d changes, %d chunk keys; want 6, 6, 0", h, c, k)
	}
	checkRevision(t, s, 2, "b", 5)
}

// TestEtcdDamage changes values in etcd under the store: reads of them
// fail with ErrDamaged, counted, and return nothing of them.
func TestEtcdDamage(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	big := ConfigVersion{Name: "big", Data: bytes.Repeat([]byte("x"), 2*etcdChunkBytes)}
	mustAppend(t, s, rev{Revision{Number: 1, Commit: "c1"}, []ConfigVersion{cv("a", "a1"), big, cv("c", "c1")}})
	flip := func(key string) {
		resp, err := cli.Get(t.Context(), key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %q: %v", key, err)
		}
		v := bytes.Clone(resp.Kvs[0].Value)
		v[len(v)/2] ^= 1
		if _, err := cli.Put(t.Context(), key, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	flip(s.key(bucketHistory, historyKey("a", 1)))
	flip(s.key(bucketChunks, chunkKey(historyKey("big", 1), 1)))
	for _, name := range []string{"a", "big"} {
		if c, err := s.Get(t.Context(), name); !errors.Is(err, ErrDamaged) || c.Data != nil {
			t.Errorf("Get(%s) of a damaged value: %d bytes, %v; want ErrDamaged", name, len(c.Data), err)
		}
	}
	var got []string
	_, err := s.Snapshot(t.Context(), All(), func(c ConfigVersion) error { got = append(got, c.Name); return nil })
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("Snapshot of damaged values: %v, want ErrDamaged", err)
	}
	if s.DamagedReads() != 3 {
		t.Errorf("DamagedReads() = %d, want 3", s.DamagedReads())
	}
	if _, err := cli.Delete(t.Context(), s.key(bucketHistory, historyKey("c", 1))); err != nil {
		t.Fatal(err)
	}
	if err := s.Since(t.Context(), 0, Select("c", "a"), func(ConfigVersion) error { return nil }); !errors.Is(err, ErrDamaged) {
		t.Errorf("Since with an entry missing: %v, want ErrDamaged", err)
	}
	if err := s.Since(t.Context(), 0, All(), func(ConfigVersion) error { return nil }); !errors.Is(err, ErrDamaged) {
		t.Errorf("Since with an entry missing: %v, want ErrDamaged", err)
	}
}

// TestEtcdOverrideLease checks that an override's key lives under a lease
// that outlives its expiry by the grace, and that a renewal moves it to a
// new lease and revokes the old one.
func TestEtcdOverrideLease(t *testing.T) {
	defer func(d time.Duration) { etcdOverrideGrace = d }(etcdOverrideGrace)
	etcdOverrideGrace = 2 * time.Second
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	lease := func(id string) clientv3.LeaseID {
		resp, err := cli.Get(t.Context(), s.key(bucketOverrides, []byte(id)))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading override %q: %v", id, err)
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	o := wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 1, Data: []byte("x"), LeaseSeconds: 3600, Expires: time.Now().Add(time.Hour)}
	if err := s.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	first := lease("run-1")
	ttl, err := cli.TimeToLive(t.Context(), first)
	if err != nil || ttl.GrantedTTL < 3600 || ttl.GrantedTTL > 3603 {
		t.Errorf("lease of an override of an hour: %+v, %v; want an hour and the grace", ttl, err)
	}
	o.Version, o.Expires = 2, time.Now()
	if err := s.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if second := lease("run-1"); second == first {
		t.Error("a renewal kept the lease")
	}
	if ttl, err := cli.TimeToLive(t.Context(), first); err != nil || ttl.TTL != -1 {
		t.Errorf("the lease before the renewal: %+v, %v; want revoked", ttl, err)
	}
	// The override expired now: the lease ends after the grace.
	for {
		os, err := s.Overrides(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(os) == 0 {
			break
		}
		if os[0].Version != 2 {
			t.Fatalf("override version %d, want 2", os[0].Version)
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	o.ID, o.Expires = "run-2", time.Now().Add(time.Hour)
	if err := s.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	id := lease("run-2")
	if err := s.DeleteOverride(t.Context(), "run-2", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := cli.TimeToLive(t.Context(), id); err != nil || ttl.TTL != -1 {
		t.Errorf("the lease of a deleted override: %+v, %v; want revoked", ttl, err)
	}
}

// follower runs Follow from after and sends what it is given to the
// returned channel; the test's end stops it.
func follower(t *testing.T, follow func(ctx context.Context, fn func(Revision) error) error) (<-chan int64, <-chan error) {
	got, done := make(chan int64, 100), make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- follow(ctx, func(r Revision) error { got <- r.Number; return nil }) }()
	t.Cleanup(cancel)
	return got, done
}

// expect waits for revisions first..last from got, in order, failing if
// Follow returns (done).
func expect(t *testing.T, got <-chan int64, done <-chan error, first, last int64) {
	t.Helper()
	for n := first; n <= last; n++ {
		select {
		case r := <-got:
			if r != n {
				t.Fatalf("followed revision %d, want %d", r, n)
			}
		case err := <-done:
			t.Fatalf("waiting for revision %d: Follow returned %v", n, err)
		}
	}
}

// TestEtcdFollow follows the revisions of a store as they are appended
// through another one, from a compacted etcd revision too: every
// revision comes once, in order, and a compacted watch costs one read of
// the store.
func TestEtcdFollow(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	w, s := openEtcdTest(t, cli, prefix), openEtcdTest(t, cli, prefix)
	appendN := func(from, to int64) {
		for n := from; n <= to; n++ {
			mustAppend(t, w, rev{Revision{Number: n, Commit: fmt.Sprint(n)}, []ConfigVersion{cv("a", fmt.Sprint(n))}})
		}
	}
	appendN(1, 3)
	got, done := follower(t, func(ctx context.Context, fn func(Revision) error) error { return s.Follow(ctx, 1, fn) })
	expect(t, got, done, 2, 3)
	appendN(4, 6)
	expect(t, got, done, 4, 6)

	// A watch from an etcd revision that was compacted away.
	resp, err := cli.Get(t.Context(), "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	// The watch below may go to any member: each must have applied the
	// compaction, or one that has not yet would serve the watch from
	// etcd revision 1, with no read of the store.
	if err := cluster.WaitApplied(); err != nil {
		t.Fatal(err)
	}
	reads := s.followReads.Load()
	got, done = follower(t, func(ctx context.Context, fn func(Revision) error) error { return s.follow(ctx, 2, 1, fn) })
	expect(t, got, done, 3, 6)
	appendN(7, 8)
	expect(t, got, done, 7, 8)
	if n := s.followReads.Load() - reads; n != 1 {
		t.Errorf("a watch from a compacted revision read the store %d times, want once", n)
	}
	select {
	case r := <-got:
		t.Errorf("followed revision %d twice", r)
	default:
	}
}

// TestEtcdFollowError checks that Follow returns the error of its
// callback.
func TestEtcdFollowError(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	mustAppend(t, s, rev{Revision{Number: 1, Commit: "1"}, []ConfigVersion{cv("a", "1")}})
	stop := errors.New("stop")
	if err := s.Follow(t.Context(), 0, func(Revision) error { return stop }); err != stop {
		t.Errorf("Follow with fn failing: %v, want stop", err)
	}
}

// TestEtcdLead elects a publisher among two members, each with its own
// client: one leads at a time; when the leader's process dies (its client
// stops renewing the lease, nothing is revoked) the other takes over once
// the lease runs out; a leader that ends resigns.
func TestEtcdLead(t *testing.T) {
	_, prefix := EtcdForTest(t)
	clients := make([]*clientv3.Client, 2)
	stores := make([]*Etcd, 2)
	for i := range clients {
		c, err := cluster.Client()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i], stores[i] = c, openEtcdTest(t, c, prefix)
	}
	var leading, most atomic.Int32
	started := make(chan string, 2)
	finish := make(chan struct{})
	lead := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			n := leading.Add(1)
			defer leading.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			started <- name
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-finish:
				return nil
			}
		}
	}
	results := make(chan error, 2)
	go func() { results <- stores[0].Lead(t.Context(), "a", 2, lead("a")) }()
	if name := <-started; name != "a" {
		t.Fatalf("%s leads, want a", name)
	}
	go func() { results <- stores[1].Lead(t.Context(), "b", 2, lead("b")) }()
	if l, err := stores[1].Leader(t.Context()); err != nil || l != "a" {
		t.Errorf("Leader() = %q, %v; want a", l, err)
	}
	clients[0].Close() // the leader's process dies
	if err := <-results; !errors.Is(err, ErrLeadershipLost) {
		t.Errorf("the dead leader's Lead: %v, want ErrLeadershipLost", err)
	}
	if name := <-started; name != "b" {
		t.Fatalf("%s leads, want b", name)
	}
	if l, err := stores[1].Leader(t.Context()); err != nil || l != "b" {
		t.Errorf("Leader() = %q, %v; want b", l, err)
	}
	close(finish)
	if err := <-results; err != nil {
		t.Errorf("Lead of b: %v", err)
	}
	if l, err := stores[1].Leader(t.Context()); err != nil || l != "" {
		t.Errorf("Leader() after b resigned = %q, %v; want none", l, err)
	}
	if most.Load() != 1 {
		t.Errorf("%d members led at once", most.Load())
	}
}

// benchStores runs bench against a bolt store and an etcd store on the
// tests' 3-member cluster (on this machine, without fsync).
func benchStores(b *testing.B, bench func(b *testing.B, s Store)) {
	b.Run("bolt", func(b *testing.B) {
		s, err := OpenBolt(b.TempDir() + "/cfg.db")
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		bench(b, s)
	})
	b.Run("etcd", func(b *testing.B) {
		cli, prefix := EtcdForTest(b)
		s, err := OpenEtcd(b.Context(), cli, prefix)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		bench(b, s)
	})
}

// BenchmarkAppend appends revisions of one config of 1 KiB.
func BenchmarkAppend(b *testing.B) {
	benchStores(b, func(b *testing.B, s Store) {
		data := bytes.Repeat([]byte("x"), 1024)
		n := int64(0)
		for b.Loop() {
			n++
			if err := s.Append(b.Context(), Revision{Number: n, Commit: "c"}, Entries([]ConfigVersion{{Name: "a", Data: data}})); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenWatch reads what opening a watch of one config reads (the
// latest revision and a snapshot of the config) in a store of 3,000
// configs of paper-like sizes.
func BenchmarkOpenWatch(b *testing.B) {
	benchStores(b, func(b *testing.B, s Store) {
		cs := benchConfigs(3000)
		if err := s.Append(b.Context(), Revision{Number: 1, Commit: "c"}, Entries(cs)); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.Latest(b.Context()); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Snapshot(b.Context(), Select(cs[7].Name), func(ConfigVersion) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadAll reads every config of a store of 3,000 configs of
// paper-like sizes (about 35 MB) and of 20,000 (about 226 MB), each
// appended as one revision: a snapshot of every config, and every change
// since revision 0 (what a watch of every config from the start reads).
func BenchmarkReadAll(b *testing.B) {
	for _, n := range []int{3000, 20000} {
		b.Run(fmt.Sprintf("configs=%d", n), func(b *testing.B) {
			cs := benchConfigs(n)
			benchStores(b, func(b *testing.B, s Store) {
				if err := s.Append(b.Context(), Revision{Number: 1, Commit: "c"}, Entries(cs)); err != nil {
					b.Fatal(err)
				}
				b.Run("snapshot", func(b *testing.B) {
					b.SetBytes(totalBytes(cs))
					for b.Loop() {
						if _, err := s.Snapshot(b.Context(), All(), func(ConfigVersion) error { return nil }); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run("since", func(b *testing.B) {
					b.SetBytes(totalBytes(cs))
					for b.Loop() {
						if err := s.Since(b.Context(), 0, All(), func(ConfigVersion) error { return nil }); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		})
	}
}

// TestEtcdMemberFailures appends and follows revisions on a cluster of
// its own while its members fail: with the leader stopped, appends go on;
// with two of three stopped, they fail (within their context's time) and
// leave nothing; once a quorum is back, they go on, and the follower gets
// every revision once, in order.
func TestEtcdMemberFailures(t *testing.T) {
	c, err := etcdtest.Start(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // after the follower ends: members wait for watches
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s := openEtcdTest(t, cli, "/cfg/")
	got, done := follower(t, func(ctx context.Context, fn func(Revision) error) error { return s.Follow(ctx, 0, fn) })
	appendRev := func(ctx context.Context, n int64) error {
		return s.Append(ctx, Revision{Number: n, Commit: fmt.Sprint(n)}, Entries([]ConfigVersion{cv("a", fmt.Sprint(n))}))
	}
	if err := appendRev(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	expect(t, got, done, 1, 1)

	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Stop(leader)
	for n := int64(2); n <= 3; n++ {
		if err := appendRev(t.Context(), n); err != nil {
			t.Fatalf("with the leader stopped: %v", err)
		}
	}
	expect(t, got, done, 2, 3)

	other := (leader + 1) % 3
	c.Stop(other)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	err = appendRev(ctx, 4)
	cancel()
	if err == nil {
		t.Fatal("Append without a quorum succeeded")
	}
	if err := c.Restart(other); err != nil {
		t.Fatal(err)
	}
	for n := int64(4); n <= 5; n++ {
		if err := appendRev(t.Context(), n); err != nil {
			t.Fatalf("with a quorum back: %v", err)
		}
	}
	expect(t, got, done, 4, 5)
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if err := appendRev(t.Context(), 6); err != nil {
		t.Fatal(err)
	}
	expect(t, got, done, 6, 6)
	select {
	case r := <-got:
		t.Errorf("followed revision %d again", r)
	default:
	}
	var revs []int64
	err = s.Since(t.Context(), 0, All(), func(c ConfigVersion) error { revs = append(revs, c.Revision); return nil })
	if err != nil || !slices.Equal(revs, []int64{1, 2, 3, 4, 5, 6}) {
		t.Errorf("revisions after the failures: %v, %v; want 1 to 6", revs, err)
	}
}

// TestEtcdReadRuns reads snapshots and changes of a store whose configs
// have several entries, some deleted, with the entries of an Append cut
// short among them, in pages of a few keys: what the etcd store reads
// (entries one after another by range reads, names that go on past a
// page by their newest entry) is what the bolt store reads of the same
// revisions.
func TestEtcdReadRuns(t *testing.T) {
	defer func(n int64) { etcdKeyPage = n }(etcdKeyPage)
	etcdKeyPage = 7
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	b, err := OpenBolt(filepath.Join(t.TempDir(), "cfg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var revs []rev
	var first []ConfigVersion
	for i := range 60 {
		first = append(first, cv(fmt.Sprintf("c%03d", i), fmt.Sprint("one", i)))
	}
	revs = append(revs, rev{Revision{Number: 1, Commit: "c1"}, first})
	for n := int64(2); n <= 6; n++ {
		var cs []ConfigVersion
		for i := range 60 {
			switch {
			case i%int(n+1) == 0:
				cs = append(cs, cv(fmt.Sprintf("c%03d", i), fmt.Sprint("rev", n, "-", i)))
			case n == 4 && i%11 == 1:
				cs = append(cs, ConfigVersion{Name: fmt.Sprintf("c%03d", i), Deleted: true})
			}
		}
		revs = append(revs, rev{Revision{Number: n, Commit: fmt.Sprint("c", n)}, cs})
	}
	mustAppend(t, s, revs...)
	mustAppend(t, b, revs...)
	// An Append of revision 7 cut short leaves entries after the latest
	// revision among the others.
	ctx, cancel := context.WithCancel(t.Context())
	err = s.Append(ctx, Revision{Number: 7, Commit: "c-dead"}, func(yield func(ConfigVersion, error) bool) {
		for i := 0; i < 60; i += 4 {
			if !yield(cv(fmt.Sprintf("c%03d", i), "dead"), nil) {
				return
			}
		}
		cancel()
		yield(cv("last", "x"), nil)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append cut short: %v", err)
	}
	read := func(st Store, snapshot bool, from int64, sel Selection) []string {
		var got []string
		fn := func(c ConfigVersion) error {
			got = append(got, fmt.Sprintf("%s@%d deleted=%v %s", c.Name, c.Revision, c.Deleted, c.Data))
			return nil
		}
		if snapshot {
			if _, err := st.Snapshot(t.Context(), sel, fn); err != nil {
				t.Fatal(err)
			}
		} else if err := st.Since(t.Context(), from, sel, fn); err != nil {
			t.Fatal(err)
		}
		return got
	}
	sels := []Selection{All(), Select("c000", "c001", "c012", "c013", "c059", "nope")}
	for _, sel := range sels {
		if want, got := read(b, true, 0, sel), read(s, true, 0, sel); !slices.Equal(got, want) {
			t.Errorf("Snapshot(%v):\n got %q\nwant %q", sel.Names(), got, want)
		}
		for from := range int64(7) {
			if want, got := read(b, false, from, sel), read(s, false, from, sel); !slices.Equal(got, want) {
				t.Errorf("Since(%d, %v):\n got %q\nwant %q", from, sel.Names(), got, want)
			}
		}
	}
	if n := s.rangeMisses.Load(); n != 0 {
		t.Errorf("%d range reads found keys among the entries they read; want none", n)
	}
}

// TestEtcdReadRunAmong reads a range of entries among which another key
// was added after they were listed: the entries the range's limit then
// leaves out are read by themselves, and the other key is skipped.
func TestEtcdReadRunAmong(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	mustAppend(t, s, rev{Revision{Number: 1, Commit: "c1"}, []ConfigVersion{cv("a", "a1"), cv("b", "b1"), cv("c", "c1"), cv("d", "d1")}})
	key := func(name string) string { return s.key(bucketHistory, historyKey(name, 1)) }
	got, err := s.readBatch(t.Context(), 0, []fetch{{want: []wanted{{key("a"), "a"}, {key("c"), "c"}, {key("d"), "d"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name+"="+string(c.Data))
	}
	if want := []string{"a=a1", "c=c1", "d=d1"}; !slices.Equal(names, want) {
		t.Errorf("read %q, want %q", names, want)
	}
	if n := s.rangeMisses.Load(); n != 1 {
		t.Errorf("%d range reads found keys among the entries they read; want 1", n)
	}
	_, err = s.readBatch(t.Context(), 0, []fetch{{want: []wanted{{key("a"), "a"}, {key("x"), "x"}, {key("d"), "d"}}}})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), `config "x" at revision 1: entry missing`) {
		t.Errorf("reading an entry that is not there: %v; want ErrDamaged naming it", err)
	}
}

// TestEtcdOverrideRenew renews an override for the same lease seconds
// past the end of the lease it was put with: each renewal is a keep-alive
// of that lease, the key is never written again, and the override stays.
// A renewal for other lease seconds moves the key to a new lease with its
// value as it was, and revokes the old one.
func TestEtcdOverrideRenew(t *testing.T) {
	defer func(d time.Duration) { etcdOverrideGrace = d }(etcdOverrideGrace)
	etcdOverrideGrace = time.Second
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	read := func() *mvccpb.KeyValue {
		t.Helper()
		resp, err := cli.Get(t.Context(), s.key(bucketOverrides, []byte("run-1")))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading the override: %v, %d keys", err, len(resp.Kvs))
		}
		return resp.Kvs[0]
	}
	const lease = 4 * time.Second
	o := wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 1, Data: []byte("x"), LeaseSeconds: 4, Expires: time.Now().Add(lease)}
	if err := s.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	put := read()
	end := time.Now().Add(lease + etcdOverrideGrace + 2*time.Second) // past the first lease
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		if err := s.RenewOverride(t.Context(), o.ID, time.Now().Add(lease)); err != nil {
			t.Fatal(err)
		}
		if kv := read(); kv.ModRevision != put.ModRevision || kv.Lease != put.Lease {
			t.Fatalf("after a renewal for the same lease: key written again (mod revision %d, lease %x; put %d, %x)", kv.ModRevision, kv.Lease, put.ModRevision, put.Lease)
		}
	}
	if err := s.RenewOverride(t.Context(), o.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	kv := read()
	if kv.Lease == put.Lease || !bytes.Equal(kv.Value, put.Value) {
		t.Errorf("after a renewal for an hour: lease %x (was %x), value %q (was %q); want a new lease, the same value", kv.Lease, put.Lease, kv.Value, put.Value)
	}
	if ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(put.Lease)); err != nil || ttl.TTL != -1 {
		t.Errorf("the lease before the renewal: %+v, %v; want revoked", ttl, err)
	}
	if ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(kv.Lease)); err != nil || ttl.GrantedTTL < 3600 || ttl.GrantedTTL > 3602 {
		t.Errorf("the new lease: %+v, %v; want an hour and the grace", ttl, err)
	}
}

// TestEtcdCompactKeys compacts a store with an entry kept in chunks: the
// entries a later one superseded go with their chunks, a deleted config
// goes whole, and the current entries and their chunks stay.
func TestEtcdCompactKeys(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	big := func(b byte) ConfigVersion {
		return ConfigVersion{Name: "big", Data: bytes.Repeat([]byte{b}, 2*etcdChunkBytes)} // 3 chunks with its header
	}
	mustAppend(t, s,
		rev{Revision{Number: 1, Commit: "c1"}, []ConfigVersion{big('1'), cv("x", "x1"), cv("y", "y1")}},
		rev{Revision{Number: 2, Commit: "c2"}, []ConfigVersion{big('2'), {Name: "x", Deleted: true}}},
		rev{Revision{Number: 3, Commit: "c3"}, []ConfigVersion{cv("y", "y3")}})
	count := func(bucket []byte) int64 {
		resp, err := cli.Get(t.Context(), s.bucketStart(bucket), clientv3.WithRange(s.bucketEnd(bucket)), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	if h, c, k := count(bucketHistory), count(bucketChanges), count(bucketChunks); h != 6 || c != 6 || k != 6 {
		t.Fatalf("before compacting: %d history, %d changes, %d chunk keys; want 6, 6, 6", h, c, k)
	}
	if floor, err := s.Compact(t.Context(), 1); err != nil || floor != 2 {
		t.Fatalf("Compact(1) = %d, %v; want 2", floor, err)
	}
	// big@2 and its chunks, y@1 (current as of 2), y@3 and its change.
	if h, c, k := count(bucketHistory), count(bucketChanges), count(bucketChunks); h != 3 || c != 1 || k != 3 {
		t.Errorf("after compacting: %d history, %d changes, %d chunk keys; want 3, 1, 3", h, c, k)
	}
	if c, err := s.Get(t.Context(), "big"); err != nil || !bytes.Equal(c.Data, big('2').Data) {
		t.Errorf("Get(big) after compacting: %d bytes, %v", len(c.Data), err)
	}
	if s.DamagedReads() != 0 {
		t.Errorf("DamagedReads() = %d", s.DamagedReads())
	}
}

// TestEtcdFollowOverrides follows the overrides of a store while another
// client of the store sets, renews (one keep-alive, which changes no key
// of the override) and removes one: each change is delivered, a renewal
// with its exact new expiry.
func TestEtcdFollowOverrides(t *testing.T) {
	cli, prefix := EtcdForTest(t)
	s := openEtcdTest(t, cli, prefix)
	other := openEtcdTest(t, cli, prefix)
	got := make(chan []wire.Override, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.FollowOverrides(ctx, func(os []wire.Override) error {
			got <- os
			return nil
		})
	}()
	// next waits for a delivery that satisfies ok.
	next := func(what string, ok func([]wire.Override) bool) []wire.Override {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case os := <-got:
				if ok(os) {
					return os
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	next("the first delivery", func(os []wire.Override) bool { return len(os) == 0 })
	expires := time.Now().Add(time.Minute).UTC().Round(0)
	o := wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 1, Data: []byte("x"), LeaseSeconds: 60, Expires: expires}
	if err := other.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	next("the override", func(os []wire.Override) bool { return len(os) == 1 && os[0].Expires.Equal(expires) })
	renewed := expires.Add(1500 * time.Millisecond)
	if err := other.RenewOverride(t.Context(), o.ID, renewed); err != nil {
		t.Fatal(err)
	}
	next("the renewal", func(os []wire.Override) bool { return len(os) == 1 && os[0].Expires.Equal(renewed) })
	if os, err := other.Overrides(t.Context()); err != nil || len(os) != 1 || !os[0].Expires.Equal(renewed) {
		t.Errorf("Overrides after the renewal: %v, %v; want expiry %v", os, err, renewed)
	}
	// A later put wins over the renewal before it.
	o.Version, o.Expires = 2, expires
	if err := other.PutOverride(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	next("version 2", func(os []wire.Override) bool {
		return len(os) == 1 && os[0].Version == 2 && os[0].Expires.Equal(expires)
	})
	if err := other.DeleteOverride(t.Context(), o.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	next("the removal", func(os []wire.Override) bool { return len(os) == 0 })
	if resp, err := cli.Get(t.Context(), s.bucketStart(bucketRenewed), clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("records of renewals after the removal: %v, %v", resp, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowOverrides: %v, want context.Canceled", err)
	}
}
