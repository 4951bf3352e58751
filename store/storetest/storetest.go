// Package storetest is the conformance suite of store.Store: every
// implementation (the embedded bbolt store, the etcd store) runs it, so
// that the daemon can rely on one behaviour whatever holds its revisions.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// Open opens one store: a new, empty one the first time, the same one
// again (as after a restart) every later time, once the earlier one is
// closed.
type Open func() (store.Store, error)

// Run runs the suite; newStore gives each test its own store, and the
// suite closes what it opens.
func Run(t *testing.T, newStore func(t *testing.T) Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"AppendGetSince", testAppendGetSince},
		{"NamesSortApart", testNamesSortApart},
		{"ManyBatches", testManyBatches},
		{"BatchesByBytes", testBatchesByBytes},
		{"BigConfig", testBigConfig},
		{"AppendRejects", testAppendRejects},
		{"FailedAppend", testFailedAppend},
		{"Reopen", testReopen},
		{"CallbackErrors", testCallbackErrors},
		{"ConcurrentReaders", testConcurrentReaders},
		{"HostsExpire", testHostsExpire},
		{"RenewOverride", testRenewOverride},
		{"RetireOverride", testRetireOverride},
		{"RunEnds", testRunEnds},
		{"Compact", testCompact},
		{"CompactWhileReading", testCompactWhileReading},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// openStore opens a store and closes it at the end of the test.
func openStore(t *testing.T, open Open) store.Store {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

// rev is a revision to append and its configs.
type rev struct {
	store.Revision
	configs []store.ConfigVersion
}

func newRev(n int64, configs ...store.ConfigVersion) rev {
	return rev{store.Revision{Number: n, Commit: fmt.Sprintf("c%d", n), Time: t0.Add(time.Duration(n) * time.Second)}, configs}
}

// cv is a compiled config, or a deletion when data is empty.
func cv(name, data string) store.ConfigVersion {
	if data == "" {
		return store.ConfigVersion{Name: name, Deleted: true}
	}
	return store.ConfigVersion{Name: name, Compiled: true, Data: []byte(data)}
}

func mustAppend(t *testing.T, s store.Store, revs ...rev) {
	t.Helper()
	for _, r := range revs {
		if err := s.Append(context.Background(), r.Revision, store.Entries(r.configs)); err != nil {
			t.Fatal(err)
		}
	}
}

func since(t *testing.T, s store.Store, from int64, sel store.Selection) []string {
	t.Helper()
	var out []string
	err := s.Since(context.Background(), from, sel, func(c store.ConfigVersion) error {
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
func snapshot(t *testing.T, s store.Store, sel store.Selection) (int64, []string) {
	t.Helper()
	var out []string
	r, err := s.Snapshot(context.Background(), sel, func(c store.ConfigVersion) error {
		out = append(out, fmt.Sprintf("%s@%d=%s", c.Name, c.Revision, c.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Number, out
}

func changed(t *testing.T, s store.Store, n int64) []string {
	t.Helper()
	var names []string
	if err := s.Changed(context.Background(), n, func(name string) error { names = append(names, name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}

func testAppendGetSince(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	if id := s.Identity(); len(id) != 32 {
		t.Errorf("Identity() = %q, want 32 hex digits", id)
	}
	if info, err := s.Latest(ctx); err != nil || info.Number != 0 {
		t.Fatalf("Latest of an empty store = %+v, %v; want revision 0", info, err)
	}
	if n, got := snapshot(t, s, store.All()); n != 0 || got != nil {
		t.Errorf("Snapshot of an empty store = %d %q, want 0 and nothing", n, got)
	}
	if got := since(t, s, 0, store.All()); got != nil {
		t.Errorf("Since of an empty store = %q, want nothing", got)
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
	if diff := cmp.Diff(store.Revision{Number: 3, Commit: "c3", Time: t0.Add(3 * time.Second), Configs: 2}, info); diff != "" {
		t.Errorf("Latest (-want +got):\n%s", diff)
	}
	a, err := s.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.ConfigVersion{Name: "a", Revision: 2, Commit: "c2", Compiled: true, Data: []byte("a2")}, a); diff != "" {
		t.Errorf("Get(a) (-want +got):\n%s", diff)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) || err.Error() != `config "b": not found` {
		t.Errorf("Get of a deleted config: %v, want ErrNotFound", err)
	}
	for _, name := range []string{"nope", "a/b", "", "c/"} {
		if _, err := s.Get(ctx, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of unknown config %q: %v, want ErrNotFound", name, err)
		}
	}

	want := []string{`1 a "a1" deleted=false`, `1 b "b1" deleted=false`, `2 a "a2" deleted=false`, `3 b "" deleted=true`, `3 c "c3" deleted=false`}
	if diff := cmp.Diff(want, since(t, s, 0, store.All())); diff != "" {
		t.Errorf("Since(0) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, since(t, s, 0, store.Select("c", "b", "a", "a", "x"))); diff != "" {
		t.Errorf("Since(0, a b c) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`3 b "" deleted=true`}, since(t, s, 1, store.Select("b"))); diff != "" {
		t.Errorf("Since(1, b) (-want +got):\n%s", diff)
	}
	if got := since(t, s, 3, store.All()); got != nil {
		t.Errorf("Since(latest) = %q, want nothing", got)
	}
	if got := since(t, s, 1, store.Select()); got != nil {
		t.Errorf("Since with an empty selection = %q, want nothing", got)
	}

	n, got := snapshot(t, s, store.Select("a", "b", "c", "d"))
	if n != 3 || !cmp.Equal(got, []string{"a@2=a2", "c@3=c3"}) {
		t.Errorf("Snapshot(a b c d) = revision %d, %q; want 3, [a@2=a2 c@3=c3]", n, got)
	}
	if n, got := snapshot(t, s, store.All()); n != 3 || !cmp.Equal(got, []string{"a@2=a2", "c@3=c3"}) {
		t.Errorf("Snapshot(*) = revision %d, %q; want 3, [a@2=a2 c@3=c3]", n, got)
	}
	if n, got := snapshot(t, s, store.Select()); n != 3 || got != nil {
		t.Errorf("Snapshot of an empty selection = revision %d, %q; want 3 and nothing", n, got)
	}

	r, err := s.Revision(ctx, 2)
	if diff := cmp.Diff(store.Revision{Number: 2, Commit: "c2", Time: t0.Add(2 * time.Second), Configs: 1}, r); err != nil || diff != "" {
		t.Errorf("Revision(2): %v (-want +got):\n%s", err, diff)
	}
	for _, n := range []int64{0, 4, -1} {
		if _, err := s.Revision(ctx, n); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Revision(%d): %v, want ErrNotFound", n, err)
		}
	}
	if got := changed(t, s, 3); !cmp.Equal(got, []string{"b", "c"}) {
		t.Errorf("Changed(3) = %q; want [b c]", got)
	}
	if err := s.Changed(ctx, 4, func(string) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Changed(4): %v, want ErrNotFound", err)
	}
}

// testNamesSortApart checks that a name's history is not mixed up with
// that of a name it prefixes.
func testNamesSortApart(t *testing.T, open Open) {
	s := openStore(t, open)
	mustAppend(t, s,
		newRev(1, cv("a", "a1"), cv("a/b", "ab1"), cv("a.b", "a.b1"), cv("a+", "a^1")),
		newRev(2, cv("a/b", "ab2")),
		newRev(3, cv("a", "")),
	)
	if n, got := snapshot(t, s, store.All()); n != 3 || !cmp.Equal(got, []string{"a+@1=a^1", "a.b@1=a.b1", "a/b@2=ab2"}) {
		t.Errorf("Snapshot(*) = %d %q", n, got)
	}
	if _, got := snapshot(t, s, store.Select("a/b", "a")); !cmp.Equal(got, []string{"a/b@2=ab2"}) {
		t.Errorf("Snapshot(a, a/b) = %q", got)
	}
	if got := since(t, s, 1, store.Select("a")); !cmp.Equal(got, []string{`3 a "" deleted=true`}) {
		t.Errorf("Since(1, a) = %q", got)
	}
	if got := changed(t, s, 1); !cmp.Equal(got, []string{"a", "a+", "a.b", "a/b"}) {
		t.Errorf("Changed(1) = %q", got)
	}
}

// batch is more than the most entries a store reads in one go (256).
const batch = 2*256 + 5

// testManyBatches reads more changes, and a revision of more configs,
// than one read of the store returns.
func testManyBatches(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	n := int64(batch)
	for i := int64(1); i <= n; i++ {
		name := "even"
		if i%2 == 1 {
			name = "odd"
		}
		mustAppend(t, s, newRev(i, cv(name, fmt.Sprint(i))))
	}
	var got []int64
	err := s.Since(ctx, 10, store.Select("odd"), func(c store.ConfigVersion) error {
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
	if got := since(t, s, 0, store.All()); len(got) != int(n) || got[n-1] != fmt.Sprintf("%d odd %q deleted=false", n, fmt.Sprint(n)) {
		t.Errorf("Since(0, *): %d changes, last %q", len(got), got[len(got)-1])
	}
	if _, got := snapshot(t, s, store.All()); !cmp.Equal(got, []string{fmt.Sprintf("even@%d=%d", n-1, n-1), fmt.Sprintf("odd@%d=%d", n, n)}) {
		t.Errorf("Snapshot(*) of two configs of long histories = %q", got)
	}

	// A revision of more configs than a batch, read whole.
	var many []store.ConfigVersion
	for i := range batch {
		many = append(many, cv(fmt.Sprintf("m/%04d", i), fmt.Sprint(i)))
	}
	mustAppend(t, s, newRev(n+1, many...))
	if k, got := snapshot(t, s, store.All()); k != n+1 || len(got) != len(many)+2 || got[len(got)-1] != fmt.Sprintf("odd@%d=%d", n, n) || got[1] != "m/0000@"+fmt.Sprint(n+1)+"=0" {
		t.Errorf("Snapshot(*) = revision %d, %d configs", k, len(got))
	}
	var names []string
	for i := 0; i < batch; i += 2 {
		names = append(names, fmt.Sprintf("m/%04d", i))
	}
	if _, got := snapshot(t, s, store.Select(names...)); len(got) != len(names) || got[len(got)-1] != fmt.Sprintf("m/%04d@%d=%d", batch-1, n+1, batch-1) {
		t.Errorf("Snapshot of %d named configs: %d configs", len(names), len(got))
	}
	if got := since(t, s, n, store.All()); len(got) != len(many) {
		t.Errorf("Since(%d, *): %d changes, want %d", n, len(got), len(many))
	}
	if got := changed(t, s, n+1); len(got) != len(many) || got[0] != "m/0000" {
		t.Errorf("Changed(%d): %d names, want %d", n+1, len(got), len(many))
	}
	if r, err := s.Revision(ctx, n+1); err != nil || r.Configs != len(many) {
		t.Errorf("Revision(%d) = %+v, %v; want %d configs", n+1, r, err, len(many))
	}
}

// testBatchesByBytes reads configs whose data add up to several reads'
// worth of bytes: every one comes, in order, whole.
func testBatchesByBytes(t *testing.T, open Open) {
	s := openStore(t, open)
	big := func(i int) string { return strings.Repeat(fmt.Sprint(i), (1<<20)/3) }
	var first []store.ConfigVersion
	for i := range 7 {
		first = append(first, cv(fmt.Sprintf("c%d", i), big(i)))
	}
	mustAppend(t, s, newRev(1, first...), newRev(2, cv("c1", big(8)), cv("c5", big(9))))
	var want []string
	for i := range 7 {
		data, rev := big(i), 1
		switch i {
		case 1:
			data, rev = big(8), 2
		case 5:
			data, rev = big(9), 2
		}
		want = append(want, fmt.Sprintf("c%d@%d=%s", i, rev, data))
	}
	if n, got := snapshot(t, s, store.All()); n != 2 || !cmp.Equal(got, want) {
		t.Errorf("Snapshot(*) = revision %d, %d configs; want 2, %d", n, len(got), len(want))
	}
	if _, got := snapshot(t, s, store.Select("c6", "c1", "c0", "c5")); !cmp.Equal(got, []string{want[0], want[1], want[5], want[6]}) {
		t.Errorf("Snapshot(c0, c1, c5, c6): %d configs", len(got))
	}
	if got := since(t, s, 0, store.All()); len(got) != 9 || got[8] != fmt.Sprintf("2 c5 %q deleted=false", big(9)) {
		t.Errorf("Since(0, *): %d changes", len(got))
	}
	if got := since(t, s, 0, store.Select("c5", "c1")); len(got) != 4 || got[0] != fmt.Sprintf("1 c1 %q deleted=false", big(1)) {
		t.Errorf("Since(0, c1, c5): %d changes", len(got))
	}
}

// testBigConfig stores a config bigger than a clustered store takes in
// one request (etcd's default is 1.5 MiB), beside small ones.
func testBigConfig(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	big := make([]byte, 5<<20+123)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	c := store.ConfigVersion{Name: "big/blob", Type: "blob.Blob", Data: big}
	mustAppend(t, s, newRev(1, cv("a", "a1"), c, cv("z", "z1")), newRev(2, cv("a", "a2")))
	got, err := s.Get(ctx, "big/blob")
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 1 || got.Commit != "c1" || got.Type != "blob.Blob" || got.Compiled || string(got.Data) != string(big) {
		t.Errorf("Get(big/blob) = revision %d, commit %q, type %q, compiled %v, %d bytes; want 1, c1, blob.Blob, false, %d bytes",
			got.Revision, got.Commit, got.Type, got.Compiled, len(got.Data), len(big))
	}
	var sizes []string
	if _, err := s.Snapshot(ctx, store.All(), func(c store.ConfigVersion) error {
		sizes = append(sizes, fmt.Sprintf("%s@%d:%d", c.Name, c.Revision, len(c.Data)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a@2:2", fmt.Sprintf("big/blob@1:%d", len(big)), "z@1:2"}; !cmp.Equal(sizes, want) {
		t.Errorf("Snapshot(*) = %q, want %q", sizes, want)
	}
	mustAppend(t, s, newRev(3, cv("big/blob", "")))
	if _, err := s.Get(ctx, "big/blob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the deleted big config: %v, want ErrNotFound", err)
	}
	if got := since(t, s, 1, store.All()); !cmp.Equal(got, []string{`2 a "a2" deleted=false`, `3 big/blob "" deleted=true`}) {
		t.Errorf("Since(1) = %q", got)
	}
}

func testAppendRejects(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	if r := newRev(2, cv("a", "x")); !errors.Is(s.Append(ctx, r.Revision, store.Entries(r.configs)), store.ErrOutOfOrder) {
		t.Error("revision 2 of an empty store is not ErrOutOfOrder")
	}
	mustAppend(t, s, newRev(1, cv("a", "1")))
	tests := []struct {
		rev     rev
		wantErr string
	}{
		{newRev(1, cv("a", "x")), "appending revision 1: revision out of order: latest is 1"},
		{newRev(3, cv("a", "x")), "appending revision 3: revision out of order: latest is 1"},
		{newRev(0, cv("a", "x")), "appending revision 0: revision out of order: latest is 1"},
		{newRev(2), "appending revision 2: no configs"},
		{newRev(2, cv("a", "x"), cv("a", "y")), `appending revision 2: config "a" twice`},
		{newRev(2, cv("/a", "x")), `appending revision 2: config name "/a": empty element (want slash-separated names)`},
		{newRev(2, cv("a/../b", "x")), `appending revision 2: config name "a/../b": element ".." starts with a dot`},
		{newRev(2, store.ConfigVersion{Name: "a", Deleted: true, Data: []byte("x")}), `appending revision 2: deleted config "a" has data`},
	}
	for _, tt := range tests {
		err := s.Append(ctx, tt.rev.Revision, store.Entries(tt.rev.configs))
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Append(%d %v): %v, want %s", tt.rev.Number, tt.rev.configs, err, tt.wantErr)
		}
	}
	if r := newRev(3, cv("a", "x")); !errors.Is(s.Append(ctx, r.Revision, store.Entries(r.configs)), store.ErrOutOfOrder) {
		t.Error("a gap is not ErrOutOfOrder")
	}
	if info, _ := s.Latest(ctx); info.Number != 1 {
		t.Errorf("after rejected appends, latest is %d, want 1", info.Number)
	}
	if c, _ := s.Get(ctx, "a"); string(c.Data) != "1" {
		t.Errorf("after rejected appends, a is %q, want 1", c.Data)
	}
	if got := since(t, s, 0, store.All()); !cmp.Equal(got, []string{`1 a "1" deleted=false`}) {
		t.Errorf("after rejected appends, Since(0) = %q", got)
	}
	mustAppend(t, s, newRev(2, cv("a", "2")))
	if got := changed(t, s, 2); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("after rejected appends, Changed(2) = %q, want [a]", got)
	}
}

// testFailedAppend appends revisions whose configs fail midway, after
// more configs than a clustered store writes in one request: nothing of
// them shows, and the next Append of the same number does not see what
// they left behind.
func testFailedAppend(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("z", "z1")))

	broken := errors.New("reading the commit: broken pipe")
	failing := func(n int, size int) iter.Seq2[store.ConfigVersion, error] {
		return func(yield func(store.ConfigVersion, error) bool) {
			for i := range n {
				if !yield(cv(fmt.Sprintf("m/%03d", i), strings.Repeat("x", size)), nil) {
					return
				}
			}
			if !yield(cv("a", "a2"), nil) {
				return
			}
			yield(store.ConfigVersion{}, broken)
		}
	}
	for _, f := range []struct{ n, size int }{{300, 30}, {12, 300 << 10}, {0, 0}} {
		err := s.Append(ctx, store.Revision{Number: 2, Commit: "c2"}, failing(f.n, f.size))
		if !errors.Is(err, broken) || err.Error() != "appending revision 2: reading the commit: broken pipe" {
			t.Fatalf("Append of %d configs of %d bytes with a failing iterator: %v", f.n, f.size, err)
		}
		if info, _ := s.Latest(ctx); info.Number != 1 {
			t.Errorf("latest after a failed Append: %d, want 1", info.Number)
		}
		if _, got := snapshot(t, s, store.All()); !cmp.Equal(got, []string{"a@1=a1", "z@1=z1"}) {
			t.Errorf("Snapshot after a failed Append: %q", got)
		}
		if _, got := snapshot(t, s, store.Select("a", "m/000")); !cmp.Equal(got, []string{"a@1=a1"}) {
			t.Errorf("Snapshot(a, m/000) after a failed Append: %q", got)
		}
		if _, err := s.Get(ctx, "m/000"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of a config of a failed Append: %v, want ErrNotFound", err)
		}
		if c, _ := s.Get(ctx, "a"); string(c.Data) != "a1" {
			t.Errorf("Get(a) after a failed Append: %q, want a1", c.Data)
		}
		if got := since(t, s, 1, store.All()); got != nil {
			t.Errorf("Since(1) after a failed Append: %q", got)
		}
		if got := since(t, s, 1, store.Select("a", "m/001")); got != nil {
			t.Errorf("Since(1, a, m/001) after a failed Append: %q", got)
		}
		if _, err := s.Revision(ctx, 2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Revision(2) after a failed Append: %v, want ErrNotFound", err)
		}
	}
	// A cancelled context is a failure too.
	cctx, cancel := context.WithCancel(ctx)
	err := s.Append(cctx, store.Revision{Number: 2, Commit: "c2"}, func(yield func(store.ConfigVersion, error) bool) {
		for i := range 200 {
			if i == 150 {
				cancel()
			}
			if !yield(cv(fmt.Sprintf("m/%03d", i), "x"), nil) {
				return
			}
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Append cancelled midway: %v, want context.Canceled", err)
	}
	if info, _ := s.Latest(ctx); info.Number != 1 {
		t.Errorf("latest after a cancelled Append: %d, want 1", info.Number)
	}

	s.Close()
	s = openStore(t, open)
	var next []store.ConfigVersion
	for i := range 150 {
		next = append(next, cv(fmt.Sprintf("n/%03d", i), strings.Repeat("y", 30)))
	}
	mustAppend(t, s, newRev(2, append(next, cv("z", ""))...))
	if _, got := snapshot(t, s, store.Select("a", "m/000", "m/299", "n/149", "z")); !cmp.Equal(got, []string{"a@1=a1", "n/149@2=" + strings.Repeat("y", 30)}) {
		t.Errorf("Snapshot after the second Append: %q", got)
	}
	names := changed(t, s, 2)
	for _, name := range names {
		if !strings.HasPrefix(name, "n/") && name != "z" {
			t.Errorf("revision 2 changed %q", name)
		}
	}
	if r, err := s.Revision(ctx, 2); err != nil || r.Configs != 151 || len(names) != 151 {
		t.Errorf("revision 2: %+v, %v, %d names; want 151 configs", r, err, len(names))
	}
	if got := len(since(t, s, 1, store.All())); got != 151 {
		t.Errorf("Since(1): %d changes, want 151", got)
	}
	if _, got := snapshot(t, s, store.All()); len(got) != 151 || got[0] != "a@1=a1" {
		t.Errorf("Snapshot(*) after the second Append: %d configs, first %q", len(got), got[0])
	}
}

// testReopen checks what a store keeps across a restart: its identity,
// revisions, hosts, overrides and runs; and that a closed store refuses
// calls.
func testReopen(t *testing.T, open Open) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	id := s.Identity()
	mustAppend(t, s, newRev(1, cv("a", "1")), newRev(2, cv("b", "2")))
	hosts := []store.Host{
		{Name: "web-2", Labels: map[string]string{}, Configs: []string{"b"}, Applied: 1, LastSeen: t0},
		{Name: "web-1", Labels: map[string]string{"cluster": "c1"}, Configs: []string{"a"}, Applied: 2, LastSeen: t0,
			Metrics: "http://web-1:9100/metrics", Overrides: []wire.AppliedOverride{{ID: "run-1", Config: "a", Version: 2}}},
	}
	if err := s.PutHosts(ctx, hosts, time.Hour); err != nil {
		t.Fatal(err)
	}
	hosts[0].Applied = 2
	if err := s.PutHosts(ctx, hosts[:1], time.Hour); err != nil {
		t.Fatal(err)
	}
	hosts[0], hosts[1] = hosts[1], hosts[0]
	expires := time.Now().UTC().Add(time.Hour).Round(0)
	overrides := []wire.Override{
		{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 2, Compiled: true, Data: []byte(`{"x":1}`), LeaseSeconds: 30, Expires: expires},
		{ID: "run-2", Config: "b", Hosts: []string{"web-2"}, Version: 1, Data: []byte("raw"), LeaseSeconds: 5, Expires: expires},
		{ID: "run-3", Config: "b", Hosts: []string{"web-3"}, Version: 1, Data: []byte("gone"), LeaseSeconds: 5, Expires: expires},
	}
	for _, o := range overrides {
		if err := s.PutOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	overrides[0].Version = 3
	if err := s.PutOverride(ctx, overrides[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteOverride(ctx, "run-3", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteOverride(ctx, "never-there", time.Time{}); err != nil {
		t.Errorf("deleting a missing override: %v", err)
	}
	overrides = overrides[:2]
	runs := []wire.Run{
		{ID: "run-2", Config: "b", Spec: "canary/b", Status: wire.RunRunning, Started: t0, Base: 1},
		{ID: "run-1", Config: "a", Spec: "canary/a", Status: wire.RunRunning, Started: t0, Base: 2},
	}
	for _, r := range runs {
		if err := s.PutRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	runs[0], runs[1] = runs[1], runs[0]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latest(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Latest after Close: %v, want ErrClosed", err)
	}
	if err := s.Append(ctx, newRev(3).Revision, store.Entries([]store.ConfigVersion{cv("a", "3")})); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Snapshot(ctx, store.All(), func(store.ConfigVersion) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Snapshot after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("closing a closed store: %v", err)
	}

	s = openStore(t, open)
	if s.Identity() != id {
		t.Errorf("identity after reopening = %q, want %q", s.Identity(), id)
	}
	if info, err := s.Latest(ctx); err != nil || info.Number != 2 || info.Commit != "c2" {
		t.Errorf("Latest after reopening = %+v, %v", info, err)
	}
	if diff := cmp.Diff([]string{`1 a "1" deleted=false`, `2 b "2" deleted=false`}, since(t, s, 0, store.All())); diff != "" {
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
	if diff := cmp.Diff(overrides, gotOverrides, approxExpires); diff != "" {
		t.Errorf("Overrides after reopening (-want +got):\n%s", diff)
	}
	if err := s.PutOverride(ctx, wire.Override{ID: "run-3", Config: "b", Hosts: []string{"web-3"}, Data: []byte("again"), LeaseSeconds: 5, Expires: expires}); !errors.Is(err, store.ErrRetired) {
		t.Errorf("PutOverride of an ID retired before reopening: %v, want ErrRetired", err)
	}
	gotRuns, err := s.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(runs, gotRuns); diff != "" {
		t.Errorf("Runs after reopening (-want +got):\n%s", diff)
	}
	mustAppend(t, s, newRev(3, cv("a", "3")))
	if s.DamagedReads() != 0 {
		t.Errorf("DamagedReads() = %d, want 0", s.DamagedReads())
	}
}

// testCallbackErrors checks that Snapshot, Since and Changed stop at the
// first error their callback returns, and return it.
func testCallbackErrors(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	mustAppend(t, s, newRev(1, cv("a", "1"), cv("b", "1"), cv("c", "1")), newRev(2, cv("a", "2")))
	stop := errors.New("stop")
	for _, sel := range []store.Selection{store.All(), store.Select("a", "b", "c")} {
		calls := 0
		if err := s.Since(ctx, 0, sel, func(store.ConfigVersion) error { calls++; return stop }); err != stop || calls != 1 {
			t.Errorf("Since(%v) with fn failing: %v after %d calls, want stop after 1", sel.Names(), err, calls)
		}
		calls = 0
		if _, err := s.Snapshot(ctx, sel, func(store.ConfigVersion) error { calls++; return stop }); err != stop || calls != 1 {
			t.Errorf("Snapshot(%v) with fn failing: %v after %d calls, want stop after 1", sel.Names(), err, calls)
		}
	}
	calls := 0
	if err := s.Changed(ctx, 1, func(string) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("Changed with fn failing: %v after %d calls, want stop after 1", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Latest(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Latest with a cancelled context: %v, want context.Canceled", err)
	}
}

// testConcurrentReaders reads while revisions are appended: every reader
// sees whole revisions, in order, with no gaps, and snapshots of one
// point in time.
func testConcurrentReaders(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	const n = 100
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				var data []string
				_, err := s.Snapshot(ctx, store.All(), func(c store.ConfigVersion) error {
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
				err = s.Since(ctx, 0, store.Select("b"), func(c store.ConfigVersion) error {
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
				if c, err := s.Get(ctx, "a"); err == nil && c.Revision < last {
					t.Errorf("Get(a) of revision %d after Since saw revision %d", c.Revision, last)
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

// approxExpires compares the Expires of overrides to the second: a store
// may keep an override's expiry as the end of a lease of whole seconds.
var approxExpires = cmpopts.EquateApproxTime(2 * time.Second)

// testHostsExpire checks that a host record is listed until its ttl runs
// out and not after, that recording a host again starts its ttl again,
// and that a ttl of nothing is refused.
func testHostsExpire(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	if err := s.PutHosts(ctx, []store.Host{{Name: "web-1"}}, 0); err == nil {
		t.Error("PutHosts with a ttl of 0 succeeded")
	}
	if err := s.PutHosts(ctx, []store.Host{{Name: "web-1", Applied: 1}, {Name: "web-2", Applied: 1}}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHosts(ctx, []store.Host{{Name: "web-3", Applied: 1}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		hosts, err := s.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hosts {
			out = append(out, h.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"web-1", "web-2", "web-3"}, names()); diff != "" {
		t.Errorf("Hosts (-want +got):\n%s", diff)
	}
	// web-2, reported again before its ttl runs out, stays.
	if err := s.PutHosts(ctx, []store.Host{{Name: "web-2", Applied: 2}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for slices.Contains(names(), "web-1") {
		if time.Now().After(deadline) {
			t.Fatal("web-1 still listed a minute after its ttl of 2s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	hosts, err := s.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Host{{Name: "web-2", Applied: 2}, {Name: "web-3", Applied: 1}}, hosts); diff != "" {
		t.Errorf("Hosts after web-1's ttl ran out (-want +got):\n%s", diff)
	}
}

// testRenewOverride checks that a renewal moves an override's expiry and
// keeps the rest of it, that renewing a missing override is ErrNotFound,
// and that a renewed override outlives the lease it was put with.
func testRenewOverride(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	o := wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 2, Compiled: true,
		Data: []byte(`{"x":1}`), LeaseSeconds: 30, Expires: time.Now().UTC().Add(30 * time.Second)}
	if err := s.PutOverride(ctx, o); err != nil {
		t.Fatal(err)
	}
	check := func(what string, want ...wire.Override) {
		t.Helper()
		got, err := s.Overrides(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, approxExpires, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Overrides %s (-want +got):\n%s", what, diff)
		}
	}
	// The same lease seconds again, and then others.
	for _, d := range []time.Duration{30 * time.Second, time.Hour, 10 * time.Second} {
		o.Expires = time.Now().UTC().Add(d)
		if err := s.RenewOverride(ctx, o.ID, o.Expires); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("after a renewal for %v", d), o)
	}
	if err := s.RenewOverride(ctx, "never-there", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renewing a missing override: %v, want ErrNotFound", err)
	}
	if err := s.DeleteOverride(ctx, o.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.RenewOverride(ctx, o.ID, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renewing a deleted override: %v, want ErrNotFound", err)
	}
	check("after deleting it")
}

// testRetireOverride checks that a removal that retires an override's ID
// refuses every later PutOverride of the ID, whether the override was
// there or not, until the retirement ends, and only for that ID; that a
// removal without retire does not; and that a second retirement moves the
// end.
func testRetireOverride(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	o := wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 1, Compiled: true,
		Data: []byte(`{"x":1}`), LeaseSeconds: 30, Expires: time.Now().UTC().Add(30 * time.Second)}
	put := func(id string) error {
		o := o
		o.ID = id
		return s.PutOverride(ctx, o)
	}
	overrides := func() []string {
		t.Helper()
		got, err := s.Overrides(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range got {
			ids = append(ids, o.ID)
		}
		return ids
	}
	for _, id := range []string{"run-1", "run-2", "kept"} {
		if err := put(id); err != nil {
			t.Fatal(err)
		}
	}
	// run-1 is removed and retired, run-2 removed only, never-set retired
	// without ever having been there.
	soon := time.Now().Add(2 * time.Second)
	for id, retire := range map[string]time.Time{"run-1": time.Now().Add(time.Hour), "run-2": {}, "never-set": soon} {
		if err := s.DeleteOverride(ctx, id, retire); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"run-1", "never-set"} {
		err := put(id)
		if !errors.Is(err, store.ErrRetired) || !strings.Contains(err.Error(), id) {
			t.Errorf("PutOverride of retired %s: %v, want ErrRetired naming it", id, err)
		}
	}
	if err := put("run-2"); err != nil {
		t.Errorf("PutOverride of an ID removed without retiring it: %v", err)
	}
	if got := overrides(); !slices.Equal(got, []string{"kept", "run-2"}) {
		t.Errorf("Overrides after the refused puts: %v, want [kept run-2]", got)
	}
	// A renewal of a retired ID finds nothing to renew.
	if err := s.RenewOverride(ctx, "run-1", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renewing a retired override: %v, want ErrNotFound", err)
	}
	// Once never-set's retirement ends, it can be set; run-1's, retired
	// again for a moment, ends then too.
	if err := s.DeleteOverride(ctx, "run-1", soon); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"never-set", "run-1"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := put(id)
			if err == nil {
				break
			}
			if !errors.Is(err, store.ErrRetired) || time.Now().After(deadline) {
				t.Fatalf("PutOverride of %s after its retirement ended at %v: %v", id, soon, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := overrides(); !slices.Equal(got, []string{"kept", "never-set", "run-1", "run-2"}) {
		t.Errorf("Overrides at the end: %v", got)
	}
}

// testRunEnds checks that a running run replaces a running one, but not
// one that ended, even when the renewals race the run's end.
func testRunEnds(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	running := wire.Run{ID: "run-1", Config: "a", Spec: "canary/a", Status: wire.RunRunning, Started: t0, Base: 1, LeaseSeconds: 4, Expires: t0.Add(4 * time.Second)}
	ended := running
	ended.Status, ended.Ended, ended.LeaseSeconds, ended.Expires = wire.RunLanded, t0.Add(time.Minute), 0, time.Time{}
	check := func(what string, want wire.Run) {
		t.Helper()
		got, err := s.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]wire.Run{want}, got); diff != "" {
			t.Errorf("Runs %s (-want +got):\n%s", what, diff)
		}
	}
	for i := range 3 {
		running.Expires = t0.Add(time.Duration(4+i) * time.Second)
		if err := s.PutRun(ctx, running); err != nil {
			t.Fatal(err)
		}
	}
	check("after renewals", running)
	if err := s.PutRun(ctx, ended); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRun(ctx, running); !errors.Is(err, store.ErrRunEnded) {
		t.Errorf("a running run over an ended one: %v, want ErrRunEnded", err)
	}
	check("after a late renewal", ended)

	// Renewals racing the end, on another run each time: the end stays.
	for i := range 5 {
		running.ID, ended.ID = fmt.Sprintf("race-%d", i), fmt.Sprintf("race-%d", i)
		if err := s.PutRun(ctx, running); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 5 {
					if err := s.PutRun(ctx, running); err != nil && !errors.Is(err, store.ErrRunEnded) {
						t.Errorf("renewing %s: %v", running.ID, err)
					}
				}
			})
		}
		wg.Go(func() {
			if err := s.PutRun(ctx, ended); err != nil {
				t.Errorf("ending %s: %v", ended.ID, err)
			}
		})
		wg.Wait()
		runs, err := s.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(runs, func(r wire.Run) bool { return r.ID == ended.ID })
		if i < 0 || runs[i].Status != wire.RunLanded {
			t.Fatalf("%s after renewals raced its end: %+v", ended.ID, runs)
		}
	}
}

// testCompact checks that Compact keeps every config's current entry and
// the revisions after the floor, that Since from before the floor and
// Changed of a compacted revision fail with ErrCompacted, that the floor
// never goes down and survives reopening, and that appends go on.
func testCompact(t *testing.T, open Open) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compact(ctx, 0); err == nil {
		t.Error("Compact keeping 0 revisions succeeded")
	}
	if floor, err := s.Compact(ctx, 1); err != nil || floor != 0 {
		t.Errorf("Compact of an empty store = %d, %v; want 0", floor, err)
	}
	mustAppend(t, s,
		newRev(1, cv("a", "a1"), cv("b", "b1"), cv("c", "c1"), cv("d", "d1")),
		newRev(2, cv("a", "a2"), cv("b", "")),
		newRev(3, cv("c", "c3"), cv("f", "f3")),
		newRev(4, cv("a", "a4"), cv("f", "")),
		newRev(5, cv("e", "e5")))
	_, before := snapshot(t, s, store.All())
	if floor, err := s.Compact(ctx, 2); err != nil || floor != 3 {
		t.Fatalf("Compact(2) at revision 5 = %d, %v; want 3", floor, err)
	}
	check := func(what string) {
		t.Helper()
		if n, got := snapshot(t, s, store.All()); n != 5 || !slices.Equal(got, before) {
			t.Errorf("%s: snapshot at %d = %q, want at 5 %q", what, n, got, before)
		}
		if _, got := snapshot(t, s, store.Select("a", "b", "c", "f")); !slices.Equal(got, []string{"a@4=a4", "c@3=c3"}) {
			t.Errorf("%s: snapshot of a, b, c, f = %q", what, got)
		}
		if c, err := s.Get(ctx, "d"); err != nil || string(c.Data) != "d1" || c.Revision != 1 {
			t.Errorf("%s: Get(d) = %+v, %v; want d1 of revision 1", what, c, err)
		}
		if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: Get of the deleted b: %v, want ErrNotFound", what, err)
		}
		want := []string{`4 a "a4" deleted=false`, `4 f "" deleted=true`, `5 e "e5" deleted=false`}
		if diff := cmp.Diff(want, since(t, s, 3, store.All())); diff != "" {
			t.Errorf("%s: Since(3) (-want +got):\n%s", what, diff)
		}
		if diff := cmp.Diff(want[:1], since(t, s, 3, store.Select("a", "b"))); diff != "" {
			t.Errorf("%s: Since(3, a, b) (-want +got):\n%s", what, diff)
		}
		for _, from := range []int64{0, 2} {
			for _, sel := range []store.Selection{store.All(), store.Select("a")} {
				err := s.Since(ctx, from, sel, func(store.ConfigVersion) error { return nil })
				if !errors.Is(err, store.ErrCompacted) {
					t.Errorf("%s: Since(%d, %v): %v, want ErrCompacted", what, from, sel.Names(), err)
				}
			}
		}
		if err := s.Changed(ctx, 3, func(string) error { return nil }); !errors.Is(err, store.ErrCompacted) {
			t.Errorf("%s: Changed(3): %v, want ErrCompacted", what, err)
		}
		if got := changed(t, s, 4); !slices.Equal(got, []string{"a", "f"}) {
			t.Errorf("%s: Changed(4) = %q", what, got)
		}
		if r, err := s.Revision(ctx, 1); err != nil || r.Commit != "c1" {
			t.Errorf("%s: Revision(1) = %+v, %v", what, r, err)
		}
	}
	check("after Compact(2)")
	if floor, err := s.Compact(ctx, 5); err != nil || floor != 3 {
		t.Errorf("Compact(5) after Compact(2) = %d, %v; want the floor kept at 3", floor, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, open)
	check("after reopening")
	mustAppend(t, s, newRev(6, cv("c", "c6")))
	if floor, err := s.Compact(ctx, 1); err != nil || floor != 5 {
		t.Fatalf("Compact(1) at revision 6 = %d, %v; want 5", floor, err)
	}
	if _, got := snapshot(t, s, store.All()); !slices.Equal(got, []string{"a@4=a4", "c@6=c6", "d@1=d1", "e@5=e5"}) {
		t.Errorf("snapshot after Compact(1) = %q", got)
	}
	if diff := cmp.Diff([]string{`6 c "c6" deleted=false`}, since(t, s, 5, store.All())); diff != "" {
		t.Errorf("Since(5) after Compact(1) (-want +got):\n%s", diff)
	}
	if s.DamagedReads() != 0 {
		t.Errorf("DamagedReads() = %d, want 0", s.DamagedReads())
	}
}

// testCompactWhileReading appends revisions and compacts to the last one
// while readers take snapshots and read changes: each read is whole and
// right as of its revision, or fails with ErrCompacted; none finds the
// store damaged or leaves anything out.
func testCompactWhileReading(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	const configs = 20
	var first []store.ConfigVersion
	for i := range configs {
		first = append(first, cv(fmt.Sprintf("k%02d", i), "1"))
	}
	mustAppend(t, s, newRev(1, first...))
	// Revision n > 1 sets config n%configs to n.
	wantAt := func(r int64) []string {
		var out []string
		for i := range configs {
			v := int64(1)
			for n := int64(2); n <= r; n++ {
				if n%configs == int64(i) {
					v = n
				}
			}
			out = append(out, fmt.Sprintf("k%02d@%d=%d", i, v, v))
		}
		return out
	}
	const last = 60
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for n := int64(2); n <= last; n++ {
			c := cv(fmt.Sprintf("k%02d", n%configs), fmt.Sprint(n))
			if err := s.Append(ctx, newRev(n, c).Revision, store.Entries([]store.ConfigVersion{c})); err != nil {
				errs <- err
				return
			}
			if _, err := s.Compact(ctx, 1); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var got []string
				r, err := s.Snapshot(ctx, store.All(), func(c store.ConfigVersion) error {
					got = append(got, fmt.Sprintf("%s@%d=%s", c.Name, c.Revision, c.Data))
					return nil
				})
				if errors.Is(err, store.ErrCompacted) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("snapshot: %w", err)
					return
				}
				if want := wantAt(r.Number); !slices.Equal(got, want) {
					errs <- fmt.Errorf("snapshot at %d = %q, want %q", r.Number, got, want)
					return
				}
				latest, err := s.Latest(ctx)
				if err != nil {
					errs <- err
					return
				}
				from := max(latest.Number-1, 0)
				var revs []int64
				err = s.Since(ctx, from, store.All(), func(c store.ConfigVersion) error {
					if c.Revision > 1 && c.Name != fmt.Sprintf("k%02d", c.Revision%configs) || string(c.Data) != fmt.Sprint(c.Revision) {
						return fmt.Errorf("since %d: %s=%s at revision %d", from, c.Name, c.Data, c.Revision)
					}
					revs = append(revs, c.Revision)
					return nil
				})
				if errors.Is(err, store.ErrCompacted) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("since: %w", err)
					return
				}
				revs = slices.Compact(revs)
				for i, r := range revs {
					if r != from+1+int64(i) {
						errs <- fmt.Errorf("since %d: revisions %v, want dense from %d", from, revs, from+1)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.DamagedReads() != 0 {
		t.Errorf("DamagedReads() = %d, want 0", s.DamagedReads())
	}
	if n, got := snapshot(t, s, store.All()); n != last || !slices.Equal(got, wantAt(last)) {
		t.Errorf("snapshot at the end, at %d = %q, want at %d %q", n, got, last, wantAt(last))
	}
}
