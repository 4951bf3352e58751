package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// A bolt store is one process's: opening it again while it is open fails.
// What a reopened store keeps is the conformance suite's (storetest).
func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "1")))
	if _, err := OpenBolt(path); err == nil || err.Error() != "opening store "+path+": in use by another process" {
		t.Errorf("opening an open store: %v", err)
	}
}

// TestStagedAppend appends revisions bigger than one write transaction
// holds: one cut short by an error, which leaves nothing visible, and
// then the same number again, which does not see what the first left.
// Each is written in as many transactions as stageBytes makes: one
// takes configs until their data (with their keys) reaches stageBytes.
func TestStagedAppend(t *testing.T) {
	defer func(n, m int) { stageBytes, walBytes = n, m }(stageBytes, walBytes)
	stageBytes = 100
	walBytes = 10 // not through the log
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("z", "z1")))

	// staged returns how many transactions stageBytes makes of configs
	// written as revision n: the last is the one that commits it.
	staged := func(n int64, configs []ConfigVersion) int {
		txs, size := 1, 0
		for _, c := range configs {
			if size >= stageBytes {
				txs, size = txs+1, 0
			}
			size += len(c.Data) + len(historyKey(c.Name, n))
		}
		return txs
	}
	// committed is the id of the store's last committed write
	// transaction, once what the log holds is in the bolt file.
	committed := func() int {
		if err := s.settle(); err != nil {
			t.Fatal(err)
		}
		var id int
		s.view(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}

	broken := errors.New("reading the commit: broken pipe")
	var failing []ConfigVersion
	for i := range 40 {
		failing = append(failing, cv(fmt.Sprintf("m/%02d", i), strings.Repeat("x", 30)))
	}
	failing = append(failing, cv("a", "a2"))
	before := committed()
	var yielded int
	err := s.Append(ctx, Revision{Number: 2, Commit: "c2"}, func(yield func(ConfigVersion, error) bool) {
		for _, c := range failing {
			yielded++
			if !yield(c, nil) {
				return
			}
		}
		yield(ConfigVersion{}, broken)
	})
	if !errors.Is(err, broken) || err.Error() != "appending revision 2: reading the commit: broken pipe" {
		t.Fatalf("Append with a failing iterator: %v", err)
	}
	// All but the transaction the error came in were committed.
	if got, want := committed()-before, staged(2, failing)-1; got != want || want < 10 {
		t.Errorf("the failed Append committed %d transactions, want %d", got, want)
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
	big = append(big, cv("z", ""))
	before = committed()
	mustAppend(t, s, newRev(2, big...))
	if got, want := committed()-before, staged(2, big); got != want || want < 5 {
		t.Errorf("the second Append committed %d transactions, want %d", got, want)
	}
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

// TestRetiredOverridesPruned checks that the records of retired override
// IDs do not pile up: those whose retirement ended are removed when next
// met, and all of them by the next retirement once a minute has passed;
// and that a file made before retired IDs were kept (without their
// bucket) takes them.
func TestRetiredOverridesPruned(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "cfg.db"))
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRetired) }); err != nil {
		t.Fatal(err)
	}
	o := wire.Override{ID: "x", Config: "a", Hosts: []string{"web-1"}, Data: []byte("x"), LeaseSeconds: 30, Expires: time.Now().Add(time.Minute)}
	if err := s.PutOverride(ctx, o); err != nil {
		t.Fatalf("PutOverride in a file without retired IDs: %v", err)
	}
	retired := func() (out []string) {
		t.Helper()
		err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRetired).ForEach(func(k, _ []byte) error {
				out = append(out, string(k))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ended := time.Now().Add(-time.Second)
	for _, id := range []string{"x", "y", "z"} {
		if err := s.DeleteOverride(ctx, id, ended); err != nil {
			t.Fatal(err)
		}
	}
	if got := retired(); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Fatalf("retired IDs: %q, want [x y z] (pruned at most once a minute)", got)
	}
	// An ended retirement met by PutOverride goes.
	if err := s.PutOverride(ctx, o); err != nil {
		t.Fatalf("PutOverride after its ID's retirement ended: %v", err)
	}
	if got := retired(); !slices.Equal(got, []string{"y", "z"}) {
		t.Errorf("retired IDs after a put of x: %q, want [y z]", got)
	}
	// A minute later, the next retirement removes every ended one.
	s.retiredPruned = s.retiredPruned.Add(-time.Minute)
	if err := s.DeleteOverride(ctx, "w", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := retired(); !slices.Equal(got, []string{"w"}) {
		t.Errorf("retired IDs a minute later: %q, want [w]", got)
	}
}
