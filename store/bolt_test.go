package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

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

// rev is a revision to append and its configs.
type rev struct {
	Revision
	configs []ConfigVersion
}

func newRev(n int64, configs ...ConfigVersion) rev {
	return rev{Revision{Number: n, Commit: fmt.Sprintf("c%d", n), Time: t0.Add(time.Duration(n) * time.Second)}, configs}
}

func cv(name, data string) ConfigVersion {
	if data == "" {
		return ConfigVersion{Name: name, Deleted: true}
	}
	return ConfigVersion{Name: name, Compiled: true, Data: []byte(data)}
}

func mustAppend(t *testing.T, s Store, revs ...rev) {
	t.Helper()
	for _, r := range revs {
		if err := s.Append(context.Background(), r.Revision, Entries(r.configs)); err != nil {
			t.Fatal(err)
		}
	}
}

func since(t *testing.T, s Store, from int64, sel Selection) []string {
	t.Helper()
	var out []string
	err := s.Since(context.Background(), from, sel, func(c ConfigVersion) error {
		out = append(out, fmt.Sprintf("%d %s %q deleted=%v", c.Revision, c.Name, c.Data, c.Deleted))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshot returns the revision of a snapshot and its configs as
// "name@revision=data".
func snapshot(t *testing.T, s Store, sel Selection) (int64, []string) {
	t.Helper()
	var out []string
	r, err := s.Snapshot(context.Background(), sel, func(c ConfigVersion) error {
		out = append(out, fmt.Sprintf("%s@%d=%s", c.Name, c.Revision, c.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Number, out
}

func TestAppendGetSince(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	if info, err := s.Latest(ctx); err != nil || info.Number != 0 {
		t.Fatalf("Latest of an empty store = %+v, %v; want revision 0", info, err)
	}
	if n, got := snapshot(t, s, All()); n != 0 || got != nil {
		t.Errorf("Snapshot of an empty store = %d %q, want 0 and nothing", n, got)
	}
	mustAppend(t, s,
		newRev(1, cv("a", "a1"), cv("b", "b1")),
		newRev(2, cv("a", "a2")),
		newRev(3, cv("b", ""), cv("c", "c3")),
	)
	info, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Revision{Number: 3, Commit: "c3", Time: t0.Add(3 * time.Second), Configs: 2}, info); diff != "" {
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
	for _, name := range []string{"nope", "a/b", "", "c/"} {
		if _, err := s.Get(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of unknown config %q: %v, want ErrNotFound", name, err)
		}
	}

	want := []string{`1 a "a1" deleted=false`, `1 b "b1" deleted=false`, `2 a "a2" deleted=false`, `3 b "" deleted=true`, `3 c "c3" deleted=false`}
	if diff := cmp.Diff(want, since(t, s, 0, All())); diff != "" {
		t.Errorf("Since(0) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, since(t, s, 0, Select("c", "b", "a", "a", "x"))); diff != "" {
		t.Errorf("Since(0, a b c) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`3 b "" deleted=true`}, since(t, s, 1, Select("b"))); diff != "" {
		t.Errorf("Since(1, b) (-want +got):\n%s", diff)
	}
	if got := since(t, s, 3, All()); got != nil {
		t.Errorf("Since(latest) = %q, want nothing", got)
	}

	n, got := snapshot(t, s, Select("a", "b", "c", "d"))
	if n != 3 || !cmp.Equal(got, []string{"a@2=a2", "c@3=c3"}) {
		t.Errorf("Snapshot(a b c d) = revision %d, %q; want 3, [a@2=a2 c@3=c3]", n, got)
	}
	if n, got := snapshot(t, s, All()); n != 3 || !cmp.Equal(got, []string{"a@2=a2", "c@3=c3"}) {
		t.Errorf("Snapshot(*) = revision %d, %q; want 3, [a@2=a2 c@3=c3]", n, got)
	}

	r, err := s.Revision(ctx, 2)
	if diff := cmp.Diff(Revision{Number: 2, Commit: "c2", Time: t0.Add(2 * time.Second), Configs: 1}, r); err != nil || diff != "" {
		t.Errorf("Revision(2): %v (-want +got):\n%s", err, diff)
	}
	if _, err := s.Revision(ctx, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revision(4): %v, want ErrNotFound", err)
	}
	var changed []string
	if err := s.Changed(ctx, 3, func(name string) error { changed = append(changed, name); return nil }); err != nil || !cmp.Equal(changed, []string{"b", "c"}) {
		t.Errorf("Changed(3) = %q, %v; want [b c]", changed, err)
	}
	if err := s.Changed(ctx, 4, func(string) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Changed(4): %v, want ErrNotFound", err)
	}
}

// TestNamesSortApart checks that a name's history is not mixed up with
// that of a name it prefixes.
func TestNamesSortApart(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	mustAppend(t, s,
		newRev(1, cv("a", "a1"), cv("a/b", "ab1"), cv("a.b", "a.b1"), cv("a+", "a^1")),
		newRev(2, cv("a/b", "ab2")),
		newRev(3, cv("a", "")),
	)
	if n, got := snapshot(t, s, All()); n != 3 || !cmp.Equal(got, []string{"a+@1=a^1", "a.b@1=a.b1", "a/b@2=ab2"}) {
		t.Errorf("Snapshot(*) = %d %q", n, got)
	}
	if _, got := snapshot(t, s, Select("a/b", "a")); !cmp.Equal(got, []string{"a/b@2=ab2"}) {
		t.Errorf("Snapshot(a, a/b) = %q", got)
	}
	if got := since(t, s, 1, Select("a")); !cmp.Equal(got, []string{`3 a "" deleted=true`}) {
		t.Errorf("Since(1, a) = %q", got)
	}
}

func TestManyBatches(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	n := int64(3*readBatch + 5)
	for i := int64(1); i <= n; i++ {
		name := "even"
		if i%2 == 1 {
			name = "odd"
		}
		mustAppend(t, s, newRev(i, cv(name, fmt.Sprint(i))))
	}
	var got []int64
	err := s.Since(ctx, 10, Select("odd"), func(c ConfigVersion) error {
		got = append(got, c.Revision)
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
	if got := since(t, s, 0, All()); len(got) != int(n) || got[n-1] != fmt.Sprintf("%d odd %q deleted=false", n, fmt.Sprint(n)) {
		t.Errorf("Since(0, *): %d changes, last %q", len(got), got[len(got)-1])
	}
	stop := errors.New("stop")
	calls := 0
	err = s.Since(ctx, 0, All(), func(ConfigVersion) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Since with fn failing: %v after %d calls, want stop after 1", err, calls)
	}

	// A revision of more configs than a batch, read whole.
	var many []ConfigVersion
	for i := range 2*readBatch + 3 {
		many = append(many, cv(fmt.Sprintf("m/%04d", i), fmt.Sprint(i)))
	}
	mustAppend(t, s, newRev(n+1, many...))
	if k, got := snapshot(t, s, All()); k != n+1 || len(got) != len(many)+2 || got[len(got)-1] != fmt.Sprintf("odd@%d=%d", n, n) {
		t.Errorf("Snapshot(*) = revision %d, %d configs", k, len(got))
	}
	if got := since(t, s, n, All()); len(got) != len(many) {
		t.Errorf("Since(%d, *): %d changes, want %d", n, len(got), len(many))
	}
	if err := s.Changed(ctx, n+1, func(string) error { calls++; return nil }); err != nil || calls != 1+len(many) {
		t.Errorf("Changed(%d): %v, %d names", n+1, err, calls-1)
	}
}

// TestBatchesByBytes reads configs whose data add up to several read
// batches' worth of bytes: every one comes, in order, whole.
func TestBatchesByBytes(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	big := func(i int) string { return strings.Repeat(fmt.Sprint(i), readBatchBytes/3) }
	var first []ConfigVersion
	for i := range 7 {
		first = append(first, cv(fmt.Sprintf("c%d", i), big(i)))
	}
	mustAppend(t, s, newRev(1, first...), newRev(2, cv("c1", big(8)), cv("c5", big(9))))
	var want []string
	for i := range 7 {
		data := big(i)
		switch i {
		case 1:
			data = big(8)
		case 5:
			data = big(9)
		}
		rev := 1
		if i == 1 || i == 5 {
			rev = 2
		}
		want = append(want, fmt.Sprintf("c%d@%d=%s", i, rev, data))
	}
	if n, got := snapshot(t, s, All()); n != 2 || !cmp.Equal(got, want) {
		t.Errorf("Snapshot(*) = revision %d, %d configs; want 2, %d", n, len(got), len(want))
	}
	if _, got := snapshot(t, s, Select("c6", "c1", "c0", "c5")); !cmp.Equal(got, []string{want[0], want[1], want[5], want[6]}) {
		t.Errorf("Snapshot(c0, c1, c5, c6): %d configs", len(got))
	}
	if got := since(t, s, 0, All()); len(got) != 9 || got[8] != fmt.Sprintf("2 c5 %q deleted=false", big(9)) {
		t.Errorf("Since(0, *): %d changes", len(got))
	}
	if got := since(t, s, 0, Select("c5", "c1")); len(got) != 4 || got[0] != fmt.Sprintf("1 c1 %q deleted=false", big(1)) {
		t.Errorf("Since(0, c1, c5): %d changes", len(got))
	}
}

func TestAppendRejects(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	mustAppend(t, s, newRev(1, cv("a", "1")))
	tests := []struct {
		rev     rev
		wantErr string
	}{
		{newRev(1, cv("a", "x")), "appending revision 1: revision out of order: latest is 1"},
		{newRev(3, cv("a", "x")), "appending revision 3: revision out of order: latest is 1"},
		{newRev(2), "appending revision 2: no configs"},
		{newRev(2, cv("a", "x"), cv("a", "y")), `appending revision 2: config "a" twice`},
		{newRev(2, cv("/a", "x")), `appending revision 2: config name "/a": empty element (want slash-separated names)`},
		{newRev(2, cv("a/../b", "x")), `appending revision 2: config name "a/../b": element ".." starts with a dot`},
		{newRev(2, ConfigVersion{Name: "a", Deleted: true, Data: []byte("x")}), `appending revision 2: deleted config "a" has data`},
	}
	for _, tt := range tests {
		err := s.Append(ctx, tt.rev.Revision, Entries(tt.rev.configs))
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Append(%d %v): %v, want %s", tt.rev.Number, tt.rev.configs, err, tt.wantErr)
		}
	}
	if r := newRev(3, cv("a", "x")); !errors.Is(s.Append(ctx, r.Revision, Entries(r.configs)), ErrOutOfOrder) {
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
	mustAppend(t, s, newRev(1, cv("a", "1")), newRev(2, cv("b", "2")))
	hosts := []Host{{Name: "web-1", Labels: map[string]string{"cluster": "c1"}, Configs: []string{"a"}, Applied: 2, LastSeen: t0,
		Metrics: "http://web-1:9100/metrics", Overrides: []wire.AppliedOverride{{ID: "run-1", Config: "a", Version: 2}}}}
	if err := s.PutHosts(ctx, hosts, time.Hour); err != nil {
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
	if diff := cmp.Diff([]string{`1 a "1" deleted=false`, `2 b "2" deleted=false`}, since(t, s, 0, All())); diff != "" {
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
	mustAppend(t, s, newRev(3, cv("a", "3")))
}

// TestConcurrentReaders reads while revisions are appended: every reader
// sees whole revisions, in order, with no gaps, and snapshots of one
// point in time.
func TestConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	const n = 200
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				var data []string
				_, err := s.Snapshot(ctx, All(), func(c ConfigVersion) error {
					data = append(data, string(c.Data))
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				// Every revision sets a and b to its number together.
				if len(data) == 2 && data[0] != data[1] {
					t.Errorf("torn snapshot: %q and %q", data[0], data[1])
				}
				last := int64(0)
				err = s.Since(ctx, 0, Select("b"), func(c ConfigVersion) error {
					if c.Revision != last+1 {
						return fmt.Errorf("revision %d after %d", c.Revision, last)
					}
					last = c.Revision
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
		})
	}
	for i := int64(1); i <= n; i++ {
		mustAppend(t, s, newRev(i, cv("a", fmt.Sprint(i)), cv("b", fmt.Sprint(i))))
	}
	wg.Wait()
}

// TestStagedAppend appends revisions bigger than one write transaction
// holds: one cut short by an error, which leaves nothing visible, and
// then the same number again, which does not see what the first left.
func TestStagedAppend(t *testing.T) {
	defer func(n int) { stageBytes = n }(stageBytes)
	stageBytes = 100
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("z", "z1")))

	broken := errors.New("reading the commit: broken pipe")
	var yielded int
	err := s.Append(ctx, Revision{Number: 2, Commit: "c2"}, func(yield func(ConfigVersion, error) bool) {
		for i := range 40 {
			yielded++
			if !yield(cv(fmt.Sprintf("m/%02d", i), strings.Repeat("x", 30)), nil) {
				return
			}
		}
		yield(cv("a", "a2"), nil)
		yield(ConfigVersion{}, broken)
	})
	if !errors.Is(err, broken) || err.Error() != "appending revision 2: reading the commit: broken pipe" {
		t.Fatalf("Append with a failing iterator: %v", err)
	}
	// Several transactions were committed, and none of it shows.
	if info, _ := s.Latest(ctx); info.Number != 1 {
		t.Errorf("latest after a failed Append: %d, want 1", info.Number)
	}
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@1=a1", "z@1=z1"}) {
		t.Errorf("Snapshot after a failed Append: %q", got)
	}
	if _, err := s.Get(ctx, "m/00"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a config of a failed Append: %v, want ErrNotFound", err)
	}
	if c, _ := s.Get(ctx, "a"); string(c.Data) != "a1" {
		t.Errorf("Get(a) after a failed Append: %q, want a1", c.Data)
	}
	if got := since(t, s, 1, All()); got != nil {
		t.Errorf("Since(1) after a failed Append: %q", got)
	}
	s.Close()
	if err := CheckBolt(path); err != nil {
		t.Errorf("CheckBolt after a failed Append: %v", err)
	}

	s = openTest(t, path)
	var big []ConfigVersion
	for i := range 20 {
		big = append(big, cv(fmt.Sprintf("n/%02d", i), strings.Repeat("y", 30)))
	}
	mustAppend(t, s, newRev(2, append(big, cv("z", ""))...))
	if _, got := snapshot(t, s, Select("a", "m/00", "n/19", "z")); !cmp.Equal(got, []string{"a@1=a1", "n/19@2=" + strings.Repeat("y", 30)}) {
		t.Errorf("Snapshot after the second Append: %q", got)
	}
	var changed int
	s.Changed(ctx, 2, func(name string) error {
		if !strings.HasPrefix(name, "n/") && name != "z" {
			t.Errorf("revision 2 changed %q", name)
		}
		changed++
		return nil
	})
	if r, err := s.Revision(ctx, 2); err != nil || r.Configs != 21 || changed != 21 {
		t.Errorf("revision 2: %+v, %v, %d names; want 21 configs", r, err, changed)
	}
	if got := len(since(t, s, 1, All())); got != 21 {
		t.Errorf("Since(1): %d changes, want 21", got)
	}
}

// TestNotAStore checks what OpenBolt refuses besides damage: a bbolt file
// of something else, and an empty bbolt file whose identity is recorded.
func TestNotAStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()
	if _, err := OpenBolt(path); err == nil || err.Error() != "store "+path+": not a cfg store: no layout"+remedy(path) {
		t.Errorf("OpenBolt of another bbolt file: %v", err)
	}
	os.Remove(path)
	db, _ = bolt.Open(path, 0o600, nil)
	db.Close()
	os.WriteFile(path+".identity", []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	if _, err := OpenBolt(path); err == nil || err.Error() != "store "+path+": empty, but "+path+".identity records store 0123456789abcdef0123456789abcdef"+remedy(path) {
		t.Errorf("OpenBolt of an empty file: %v", err)
	}
	os.WriteFile(path+".identity", []byte("nope\n"), 0o600)
	if _, err := OpenBolt(path); err == nil || err.Error() != "store identity "+path+`.identity: got "nope", want 32 hex digits` {
		t.Errorf("OpenBolt with a bad identity file: %v", err)
	}
}

// TestReadsCostWhatTheyReturn guards the cost of what opening a watch
// reads: the latest revision and a snapshot of one config allocate as
// much in a store of 3,000 configs as in one of 3.
func TestReadsCostWhatTheyReturn(t *testing.T) {
	ctx := context.Background()
	allocs := func(n int) float64 {
		s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
		var cs []ConfigVersion
		for i := range n {
			cs = append(cs, cv(fmt.Sprintf("svc%02d/config%04d", i%50, i), fmt.Sprintf(`{"n":%d}`, i)))
		}
		mustAppend(t, s, newRev(1, cs...), newRev(2, cs[0]))
		return testing.AllocsPerRun(50, func() {
			if _, err := s.Latest(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := s.Snapshot(ctx, Select("svc00/config0000"), func(c ConfigVersion) error {
				if c.Revision != 2 {
					t.Fatalf("snapshot of revision %d", c.Revision)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	small, big := allocs(3), allocs(3000)
	t.Logf("Latest and a one-config Snapshot: %.0f allocations with 3 configs, %.0f with 3,000", small, big)
	if big > small+4 {
		t.Errorf("Latest and a one-config Snapshot: %.0f allocations with 3,000 configs, %.0f with 3", big, small)
	}
}

// TestBoltCompactKeys compacts a bolt store: the entries a later one
// superseded go, a deleted config goes whole, the changes of the
// compacted revisions go, and the current entries stay.
func TestBoltCompactKeys(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "cfg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("x", "x1"), cv("y", "y1")),
		newRev(2, cv("a", "a2"), ConfigVersion{Name: "x", Deleted: true}),
		newRev(3, cv("y", "y3")))
	keys := func(bucket []byte) (out []string) {
		s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
				if string(bucket) == string(bucketHistory) {
					name, rev, _ := parseHistoryKey(k)
					out = append(out, fmt.Sprintf("%s@%d", name, rev))
				} else {
					rev, name, _ := parseChangeKey(k)
					out = append(out, fmt.Sprintf("%d %s", rev, name))
				}
				return nil
			})
		})
		return out
	}
	if floor, err := s.Compact(context.Background(), 1); err != nil || floor != 2 {
		t.Fatalf("Compact(1) = %d, %v; want 2", floor, err)
	}
	if got, want := keys(bucketHistory), []string{"a@2", "y@1", "y@3"}; !slices.Equal(got, want) {
		t.Errorf("history after compacting: %q, want %q", got, want)
	}
	if got, want := keys(bucketChanges), []string{"3 y"}; !slices.Equal(got, want) {
		t.Errorf("changes after compacting: %q, want %q", got, want)
	}
}
