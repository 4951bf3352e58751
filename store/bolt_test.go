package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/wire"
)

func openTest(t *testing.T, path string) *Bolt {
	t.Helper()
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

func rev(n int64, configs ...ConfigVersion) *Revision {
	return &Revision{Number: n, Commit: fmt.Sprintf("c%d", n), Time: t0.Add(time.Duration(n) * time.Second), Configs: configs}
}

func cv(name, data string) ConfigVersion {
	if data == "" {
		return ConfigVersion{Name: name, Deleted: true}
	}
	return ConfigVersion{Name: name, Compiled: true, Data: []byte(data)}
}

func mustAppend(t *testing.T, s Store, revs ...*Revision) {
	t.Helper()
	for _, r := range revs {
		if err := s.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func since(t *testing.T, s Store, from int64, m Match) []string {
	t.Helper()
	var out []string
	err := s.Since(context.Background(), from, m, func(r *Revision) error {
		for _, c := range r.Configs {
			out = append(out, fmt.Sprintf("%d %s %q deleted=%v", r.Number, c.Name, c.Data, c.Deleted))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendGetSince(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	if info, err := s.Latest(ctx); err != nil || info.Number != 0 {
		t.Fatalf("Latest of an empty store = %+v, %v; want revision 0", info, err)
	}
	mustAppend(t, s,
		rev(1, cv("a", "a1"), cv("b", "b1")),
		rev(2, cv("a", "a2")),
		rev(3, cv("b", ""), cv("c", "c3")),
	)
	info, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(RevisionInfo{Number: 3, Commit: "c3", Time: t0.Add(3 * time.Second), Configs: []string{"b", "c"}}, info); diff != "" {
		t.Errorf("Latest (-want +got):\n%s", diff)
	}
	a, err := s.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ConfigVersion{Name: "a", Revision: 2, Commit: "c2", Compiled: true, Data: []byte("a2")}, a); diff != "" {
		t.Errorf("Get(a) (-want +got):\n%s", diff)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, ErrNotFound) || err.Error() != `config "b": not found` {
		t.Errorf("Get of a deleted config: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown config: %v, want ErrNotFound", err)
	}

	want := []string{`1 a "a1" deleted=false`, `1 b "b1" deleted=false`, `2 a "a2" deleted=false`, `3 b "" deleted=true`, `3 c "c3" deleted=false`}
	if diff := cmp.Diff(want, since(t, s, 0, nil)); diff != "" {
		t.Errorf("Since(0) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`3 b "" deleted=true`}, since(t, s, 1, Names("b"))); diff != "" {
		t.Errorf("Since(1, b) (-want +got):\n%s", diff)
	}
	if got := since(t, s, 3, nil); got != nil {
		t.Errorf("Since(latest) = %q, want nothing", got)
	}

	snap, err := s.Snapshot(ctx, Names("a", "b", "c", "d"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range snap.Configs {
		names = append(names, fmt.Sprintf("%s@%d", c.Name, c.Revision))
	}
	if snap.Latest.Number != 3 || !cmp.Equal(names, []string{"a@2", "c@3"}) {
		t.Errorf("Snapshot = revision %d, %q; want 3, [a@2 c@3]", snap.Latest.Number, names)
	}

	r, err := s.Revision(ctx, 2)
	if err != nil || r.Commit != "c2" || len(r.Configs) != 1 || string(r.Configs[0].Data) != "a2" {
		t.Errorf("Revision(2) = %+v, %v", r, err)
	}
	if _, err := s.Revision(ctx, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revision(4): %v, want ErrNotFound", err)
	}
}

func TestSinceManyBatches(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	n := int64(3*sinceBatch + 5)
	for i := int64(1); i <= n; i++ {
		name := "even"
		if i%2 == 1 {
			name = "odd"
		}
		mustAppend(t, s, rev(i, cv(name, fmt.Sprint(i))))
	}
	var got []int64
	err := s.Since(context.Background(), 10, Names("odd"), func(r *Revision) error {
		got = append(got, r.Number)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for i := int64(11); i <= n; i += 2 {
		want = append(want, i)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Since (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	calls := 0
	err = s.Since(context.Background(), 0, nil, func(*Revision) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Since with fn failing: %v after %d calls, want stop after 1", err, calls)
	}
}

func TestAppendRejects(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	mustAppend(t, s, rev(1, cv("a", "1")))
	tests := []struct {
		rev     *Revision
		wantErr string
	}{
		{rev(1, cv("a", "x")), "appending revision 1: revision out of order: latest is 1"},
		{rev(3, cv("a", "x")), "appending revision 3: revision out of order: latest is 1"},
		{rev(2), "appending revision 2: no configs"},
		{rev(2, cv("a", "x"), cv("a", "y")), `appending revision 2: config "a" twice`},
		{rev(2, cv("/a", "x")), `appending revision 2: config name "/a": empty element (want slash-separated names)`},
		{rev(2, cv("a/../b", "x")), `appending revision 2: config name "a/../b": element ".." starts with a dot`},
	}
	for _, tt := range tests {
		err := s.Append(ctx, tt.rev)
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Append(%d %v): %v, want %s", tt.rev.Number, tt.rev.Configs, err, tt.wantErr)
		}
	}
	if !errors.Is(s.Append(ctx, rev(3, cv("a", "x"))), ErrOutOfOrder) {
		t.Error("a gap is not ErrOutOfOrder")
	}
	if info, _ := s.Latest(ctx); info.Number != 1 {
		t.Errorf("after rejected appends, latest is %d, want 1", info.Number)
	}
	if c, _ := s.Get(ctx, "a"); string(c.Data) != "1" {
		t.Errorf("after rejected appends, a is %q, want 1", c.Data)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cfg.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, rev(1, cv("a", "1")), rev(2, cv("b", "2")))
	hosts := []Host{{Name: "web-1", Labels: map[string]string{"cluster": "c1"}, Configs: []string{"a"}, Applied: 2, LastSeen: t0,
		Metrics: "http://web-1:9100/metrics", Overrides: []wire.AppliedOverride{{ID: "run-1", Config: "a", Version: 2}}}}
	if err := s.PutHosts(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	overrides := []wire.Override{
		{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 2, Compiled: true, Data: []byte(`{"x":1}`), LeaseSeconds: 30, Expires: t0},
		{ID: "run-2", Config: "b", Hosts: []string{"web-2"}, Version: 1, Data: []byte("raw"), LeaseSeconds: 5, Expires: t0},
		{ID: "run-3", Config: "b", Hosts: []string{"web-3"}, Version: 1, Data: []byte("gone"), LeaseSeconds: 5, Expires: t0},
	}
	for _, o := range overrides {
		if err := s.PutOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteOverride(ctx, "run-3"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteOverride(ctx, "never-there"); err != nil {
		t.Errorf("deleting a missing override: %v", err)
	}
	overrides = overrides[:2]
	runs := []wire.Run{{ID: "run-1", Config: "a", Spec: "canary/a", Status: wire.RunRunning, Started: t0, Base: 2}}
	if err := s.PutRun(ctx, runs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path); err == nil || err.Error() != "opening store "+path+": in use by another process" {
		t.Errorf("opening an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latest(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Latest after Close: %v, want ErrClosed", err)
	}

	s = openTest(t, path)
	if info, err := s.Latest(ctx); err != nil || info.Number != 2 || info.Commit != "c2" {
		t.Errorf("Latest after reopening = %+v, %v", info, err)
	}
	if diff := cmp.Diff([]string{`1 a "1" deleted=false`, `2 b "2" deleted=false`}, since(t, s, 0, nil)); diff != "" {
		t.Errorf("Since after reopening (-want +got):\n%s", diff)
	}
	got, err := s.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hosts, got); diff != "" {
		t.Errorf("Hosts after reopening (-want +got):\n%s", diff)
	}
	gotOverrides, err := s.Overrides(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(overrides, gotOverrides); diff != "" {
		t.Errorf("Overrides after reopening (-want +got):\n%s", diff)
	}
	gotRuns, err := s.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(runs, gotRuns); diff != "" {
		t.Errorf("Runs after reopening (-want +got):\n%s", diff)
	}
	mustAppend(t, s, rev(3, cv("a", "3")))
}

// TestConcurrentReaders reads while revisions are appended: every reader
// sees whole revisions, in order, with no gaps.
func TestConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	const n = 200
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				snap, err := s.Snapshot(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				// Every revision sets a and b to its number together.
				if len(snap.Configs) == 2 && string(snap.Configs[0].Data) != string(snap.Configs[1].Data) {
					t.Errorf("torn snapshot: %q and %q", snap.Configs[0].Data, snap.Configs[1].Data)
				}
				last := int64(0)
				err = s.Since(ctx, 0, Names("b"), func(r *Revision) error {
					if r.Number != last+1 {
						return fmt.Errorf("revision %d after %d", r.Number, last)
					}
					last = r.Number
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if last >= n {
					return
				}
			}
		}()
	}
	for i := int64(1); i <= n; i++ {
		mustAppend(t, s, rev(i, cv("a", fmt.Sprint(i)), cv("b", fmt.Sprint(i))))
	}
	wg.Wait()
}
