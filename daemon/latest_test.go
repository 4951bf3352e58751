package daemon

import (
	"context"
	"iter"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/store"
)

// pausedStore is a store whose Append, once the revision is stored, waits
// for release: the moment between a revision being stored and the daemon
// announcing it.
type pausedStore struct {
	store.Store
	stored  chan int64
	release chan struct{}
}

func (s *pausedStore) Append(ctx context.Context, r store.Revision, configs iter.Seq2[store.ConfigVersion, error]) error {
	err := s.Store.Append(ctx, r, configs)
	if err == nil && r.Number > 1 {
		s.stored <- r.Number
		<-s.release
	}
	return err
}

// servePaused serves a daemon of r over a bolt store that pauses after
// storing each revision but the first, and waits for revision 1.
func servePaused(t *testing.T, r *testRepo) (*testDaemon, *pausedStore) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps := &pausedStore{Store: st, stored: make(chan int64), release: make(chan struct{})}
	d := serve(t, Config{RepoPath: r.dir, Store: ps, Token: token, Poll: 50 * time.Millisecond})
	d.waitFor("revision 1", func() bool { return d.latest() == 1 })
	return d, ps
}

// waitStored waits until the store holds the next revision, its Append
// paused.
func (s *pausedStore) waitStored(t *testing.T) {
	t.Helper()
	select {
	case <-s.stored:
	case <-time.After(time.Minute):
		t.Fatal("the next revision was not stored within a minute")
	}
}

// TestLatestNeverGoesBack attacks the latest revision the daemon names: a
// client that was told revision N is the latest is never told a lower one
// afterwards, also while a revision is stored but not yet announced.
func TestLatestNeverGoesBack(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `"a1"`, "materialized_configs/b.json", `"b1"`)
	d, ps := servePaused(t, r)

	r.commit("materialized_configs/a.json", `"a2"`)
	ps.waitStored(t)
	// What a client reads in turn: the latest revision, a config revision
	// 2 did not change, one it changed, the latest revision again.
	var seen []string
	for _, path := range []string{"/v1/revisions/latest", "/v1/configs/b", "/v1/configs/a", "/v1/revisions/latest"} {
		code, _, h := d.do("GET", path, "", nil)
		if code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		seen = append(seen, h.Get("Cfg-Latest-Revision"))
	}
	if !slices.Equal(seen, []string{"2", "2", "2", "2"}) {
		t.Errorf("while revision 2 is stored but not announced, Cfg-Latest-Revision of the latest revision, b, a and the latest revision: %q, want 2 each time", seen)
	}
	close(ps.release)
	d.waitFor("revision 2", func() bool { return d.latest() == 2 })
}

// TestAnnouncedOnceStored attacks the order the README gives: a revision
// is stored before any watch stream is told of it. While the store holds
// revision 2 but its Append has not returned, the daemon has not made it
// its latest (what announcing does first, before the hub wakes the
// streams); once Append returns, the watcher gets it.
func TestAnnouncedOnceStored(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `"a1"`)
	d, ps := servePaused(t, r)
	w := d.watch("configs=a")
	w.expect(`snapshot 1 a@1="a1"`)

	r.commit("materialized_configs/a.json", `"a2"`)
	ps.waitStored(t)
	if n := d.Daemon.latest.Load(); n != 1 {
		t.Errorf("while revision 2's Append has not returned, the daemon's latest is %d, want 1 (not announced)", n)
	}
	close(ps.release)
	w.expect(`update 2 a@2="a2"`)
}
