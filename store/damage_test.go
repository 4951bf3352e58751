package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/cfg-dev/cfg/wire"
)

// marker is data stored in the test store, to find its bytes in the
// file; it is longer than the 64 bytes some tests write over it.
const marker = "VALUE-MARKER-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789"

// buildStore makes a closed store at dir/cfg.db holding three revisions
// (the last transaction appends revision 3), a host, an override and a run.
func buildStore(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "cfg.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustAppend(t, s, newRev(1, cv("a", marker), cv("b", "b1"), cv("c/d", "cd1")), newRev(2, cv("b", "b2")))
	if err := s.PutHosts(ctx, []Host{{Name: "web-1", Configs: []string{"a"}, Applied: 2}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOverride(ctx, wire.Override{ID: "run-1", Config: "a", Hosts: []string{"web-1"}, Version: 1, Data: []byte("x"), LeaseSeconds: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRun(ctx, wire.Run{ID: "run-1", Config: "a", Status: wire.RunRunning}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, newRev(3, cv("c/d", ""), cv("e", "e3")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// metaOf reads the meta page bbolt uses for the file at path.
func metaOf(t *testing.T, path string) boltMeta {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	c := &checker{f: f, size: fi.Size()}
	if problem, err := c.readMeta(); problem != "" || err != nil {
		t.Fatalf("meta of %s: %s %v", path, problem, err)
	}
	return c.meta
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// overwriteAll writes b over every copy of s in the file at path, at off
// from its start (bbolt leaves the older copies of a page it rewrote in
// free pages).
func overwriteAll(t *testing.T, path, s string, off int64, b []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := bytes.Index(data, []byte(s)); i >= 0; i = bytes.Index(data, []byte(s)) {
		overwrite(t, path, int64(i)+off, b)
		copy(data[i:], b)
		data[i] ^= 0x80 // not found again, whatever b is
		n++
	}
	if n == 0 {
		t.Fatalf("%q is not in %s", s, path)
	}
}

func remedy(path string) string {
	return fmt.Sprintf("; restore the store from a backup, or move %s and %s.identity aside to start a new, empty store (agents then resynchronise from it)", path, path)
}

// TestDamagedFiles attacks the store's file as a failing disk or an
// operator would, and checks that OpenBolt refuses it with a clear error
// instead of serving it, making it again or faulting.
func TestDamagedFiles(t *testing.T) {
	ff := bytes.Repeat([]byte{0xff}, 64)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		// want is the problem found in a file of size bytes, whose meta
		// page was m before the damage.
		want func(path string, size int64, m boltMeta) string
	}{
		{"truncated to 0", func(t *testing.T, path string) { os.Truncate(path, 0) },
			func(path string, size int64, m boltMeta) string { return "store " + path + ": empty file (0 bytes)" }},
		{"truncated to half", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/2)
		}, func(path string, size int64, m boltMeta) string {
			return fmt.Sprintf("store %s: truncated: %d bytes, but its last transaction uses %d pages of %d bytes", path, size/2, m.hwm, m.pageSize)
		}},
		{"truncated to 8 KB", func(t *testing.T, path string) { os.Truncate(path, 8192) },
			func(path string, size int64, m boltMeta) string {
				return fmt.Sprintf("store %s: truncated: 8192 bytes, but its last transaction uses %d pages of %d bytes", path, m.hwm, m.pageSize)
			}},
		{"both meta pages overwritten", func(t *testing.T, path string) {
			overwrite(t, path, 16, ff)
			overwrite(t, path, int64(metaOf(t, path).pageSize)+16, ff)
		}, func(path string, size int64, m boltMeta) string {
			return fmt.Sprintf("store %s: no valid meta page in its %d bytes", path, size)
		}},
		{"64 bytes over the root page", func(t *testing.T, path string) {
			m := metaOf(t, path)
			overwrite(t, path, int64(m.root)*int64(m.pageSize), ff)
		}, func(path string, size int64, m boltMeta) string {
			return fmt.Sprintf("store %s: page %d: header names page 18446744073709551615", path, m.root)
		}},
		{"64 bytes over a value", func(t *testing.T, path string) {
			overwriteAll(t, path, marker, 0, ff)
		}, func(path string, size int64, m boltMeta) string {
			return fmt.Sprintf("store %s: config \"a\" at revision 1: store damaged: value fails its checksum", path)
		}},
		{"one value byte flipped", func(t *testing.T, path string) {
			overwriteAll(t, path, marker, 3, []byte{'U' ^ 1})
		}, func(path string, size int64, m boltMeta) string {
			return fmt.Sprintf("store %s: config \"a\" at revision 1: store damaged: value fails its checksum", path)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := buildStore(t, t.TempDir())
			m := metaOf(t, path)
			fi, _ := os.Stat(path)
			tt.damage(t, path)
			s, err := OpenBolt(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt opened a damaged store")
			}
			if want := tt.want(path, fi.Size(), m) + remedy(path); err.Error() != want {
				t.Errorf("OpenBolt:\n got %s\nwant %s", err, want)
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("OpenBolt: %v is not ErrDamaged", err)
			}
		})
	}
}

// TestNewestMetaDamaged overwrites the meta page of the last transaction,
// which wrote revision 3: bbolt then uses the other one, as after a crash
// in the middle of writing it, and the file is as it was one transaction
// earlier. A revision written to the file directly (bigger than the log
// takes) is then gone, as its Append never returned; one committed to the
// log, which the log still holds after such a crash, is written to the
// file again from it.
func TestNewestMetaDamaged(t *testing.T) {
	for _, logged := range []bool{false, true} {
		t.Run(fmt.Sprintf("logged=%v", logged), func(t *testing.T) {
			if !logged {
				defer func(n int) { walBytes = n }(walBytes)
				walBytes = -1
			}
			path := buildStore(t, t.TempDir())
			m := metaOf(t, path)
			overwrite(t, path, int64(m.txid%2)*int64(m.pageSize)+16, bytes.Repeat([]byte{0xff}, 64))
			if logged {
				// The log as the crash left it: holding revision 3.
				id, err := os.ReadFile(path + IdentitySuffix)
				if err != nil {
					t.Fatal(err)
				}
				r := newRev(3, cv("c/d", ""), cv("e", "e3"))
				r.Configs = 2
				for i := range r.configs {
					r.configs[i].Revision, r.configs[i].Commit = 3, r.Commit
				}
				w := &wal{identity: bytes.TrimSpace(id)}
				if err := os.WriteFile(path+WALSuffix, w.encode(r.Revision, r.configs), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := openTest(t, path)
			want := int64(2)
			if logged {
				want = 3
			}
			if info, err := s.Latest(context.Background()); err != nil || info.Number != want {
				t.Errorf("Latest = %+v, %v; want revision %d", info, err, want)
			}
			if _, got := snapshot(t, s, Select("c/d", "e")); logged && !cmp.Equal(got, []string{"e@3=e3"}) || !logged && !cmp.Equal(got, []string{"c/d@1=cd1"}) {
				t.Errorf("Snapshot of c/d and e: %q", got)
			}
			mustAppend(t, s, newRev(want+1, cv("e", "again")))
		})
	}
}

// TestRandomDamage overwrites 64 bytes with random ones in every page the
// store uses (and at the start of each, where its header is), in a store
// big enough for branch pages and values over several pages: whatever
// happens, OpenBolt and every read either work or fail with ErrDamaged,
// and nothing read is other than what was written.
func TestRandomDamage(t *testing.T) {
	ctx := context.Background()
	orig := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, orig)
	r := rand.New(rand.NewPCG(1, 2))
	// want[n] is every config as of revision n.
	want := map[int64]map[string]string{}
	cur := map[string]string{}
	for n := int64(1); n <= 6; n++ {
		var cs []ConfigVersion
		for i := range 60 {
			if r.IntN(3) > 0 && n > 1 {
				continue
			}
			name := fmt.Sprintf("svc%d/config%03d", i%7, i)
			data := strings.Repeat(fmt.Sprintf("%d-%d;", n, i), 1+r.IntN(2000)/(1+r.IntN(40)))
			if n > 1 && r.IntN(10) == 0 {
				data = ""
			}
			cs = append(cs, cv(name, data))
			if data == "" {
				delete(cur, name)
			} else {
				cur[name] = data
			}
		}
		mustAppend(t, s, newRev(n, cs...))
		want[n] = maps.Clone(cur)
	}
	s.Close()
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(orig)
	c := &checker{f: f, size: int64(len(data))}
	if problem, err := c.readMeta(); problem != "" || err != nil {
		t.Fatal(problem, err)
	}
	if problem, err := c.walk(); problem != "" || err != nil {
		t.Fatal(problem, err)
	}
	f.Close()
	var offsets []int64
	for pg, used := range c.used {
		if used {
			start := int64(pg) * c.ps
			offsets = append(offsets, start, start+16+r.Int64N(c.ps-80), start+c.ps-64)
		}
	}

	opened := 0
	for _, off := range offsets {
		path := filepath.Join(t.TempDir(), "cfg.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		copyFile(t, orig+".identity", path+".identity")
		junk := make([]byte, 64)
		for i := range junk {
			junk[i] = byte(r.Uint32())
		}
		overwrite(t, path, off, junk)
		s, err := OpenBolt(path)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("offset %d: OpenBolt: %v, want ErrDamaged", off, err)
			}
			continue
		}
		opened++
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, ErrDamaged) {
				t.Errorf("offset %d: %s: %v, want nil or ErrDamaged", off, what, err)
			}
		}
		latest, err := s.Latest(ctx)
		check("Latest", err)
		w, ok := want[latest.Number]
		if err == nil && (!ok || latest.Number < 5) {
			t.Errorf("offset %d: latest revision %d, want 6 (or 5, with the last meta page damaged)", off, latest.Number)
		}
		_, err = s.Snapshot(ctx, All(), func(c ConfigVersion) error {
			if string(c.Data) != w[c.Name] {
				t.Errorf("offset %d: snapshot gives %s=%.20q, want %.20q", off, c.Name, c.Data, w[c.Name])
			}
			return nil
		})
		check("Snapshot", err)
		check("Since", s.Since(ctx, 0, All(), func(ConfigVersion) error { return nil }))
		for name, data := range w {
			c, err := s.Get(ctx, name)
			check("Get", err)
			if err == nil && string(c.Data) != data {
				t.Errorf("offset %d: Get(%s) = %.20q, want %.20q", off, name, c.Data, data)
			}
		}
		check("Close", s.Close())
	}
	t.Logf("%d of %d files damaged in a used page opened", opened, len(offsets))
}

// TestDamageWhileOpen damages the file under an open store: a flipped
// value byte is an error, counted, never the data; a truncated file is an
// error, not a fault.
func TestDamageWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := buildStore(t, t.TempDir())
	s := openTest(t, path)
	overwriteAll(t, path, marker, 3, []byte{'U' ^ 1})
	want := `config "a" at revision 1: store damaged: value fails its checksum`
	if c, err := s.Get(ctx, "a"); err == nil || err.Error() != want {
		t.Errorf("Get of a flipped value = %q, %v; want error %s", c.Data, err, want)
	}
	if _, err := s.Snapshot(ctx, Select("a", "b"), func(ConfigVersion) error { return nil }); err == nil || err.Error() != want {
		t.Errorf("Snapshot of a flipped value: %v, want %s", err, want)
	}
	if err := s.Since(ctx, 0, All(), func(ConfigVersion) error { return nil }); err == nil || err.Error() != want {
		t.Errorf("Since over a flipped value: %v, want %s", err, want)
	}
	if c, err := s.Get(ctx, "b"); err != nil || string(c.Data) != "b2" {
		t.Errorf("Get of an intact value = %q, %v", c.Data, err)
	}
	if got := s.DamagedReads(); got != 3 {
		t.Errorf("DamagedReads = %d, want 3", got)
	}

	if err := os.Truncate(path, 8192); err != nil {
		t.Fatal(err)
	}
	_, err := s.Latest(ctx)
	if !errors.Is(err, ErrDamaged) || !strings.HasPrefix(err.Error(), "reading the store: store damaged: ") {
		t.Errorf("Latest of a store truncated while open: %v, want ErrDamaged", err)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, ErrDamaged) {
		t.Errorf("Get from a store truncated while open: %v, want ErrDamaged", err)
	}
}

// TestIdentity checks that a store keeps its identity, recorded beside
// it, and that a store missing or replaced is refused.
func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	id := s.Identity()
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("identity %q, want 32 hex digits", id)
	}
	s.Close()
	if b, err := os.ReadFile(path + ".identity"); err != nil || string(b) != id+"\n" {
		t.Errorf("identity file: %q, %v; want %q", b, err, id)
	}
	if s = openTest(t, path); s.Identity() != id {
		t.Errorf("identity after reopening %q, want %q", s.Identity(), id)
	}
	s.Close()

	// A lost identity file is written again from the store.
	os.Remove(path + ".identity")
	if s = openTest(t, path); s.Identity() != id {
		t.Errorf("identity after losing the identity file %q, want %q", s.Identity(), id)
	}
	s.Close()
	if b, _ := os.ReadFile(path + ".identity"); string(b) != id+"\n" {
		t.Errorf("identity file written again: %q, want %q", b, id)
	}

	// Another store's file in its place.
	other := filepath.Join(t.TempDir(), "cfg.db")
	o := openTest(t, other)
	otherID := o.Identity()
	o.Close()
	saved, _ := os.ReadFile(path)
	data, _ := os.ReadFile(other)
	os.WriteFile(path, data, 0o600)
	_, err = OpenBolt(path)
	if want := fmt.Sprintf("store %s: holds store %s, but %s.identity records store %s", path, otherID, path, id) + remedy(path); err == nil || err.Error() != want {
		t.Errorf("OpenBolt of another store's file:\n got %v\nwant %s", err, want)
	}

	// The file gone: not made again.
	os.Remove(path)
	_, err = OpenBolt(path)
	if want := fmt.Sprintf("store %s: missing, but %s.identity records store %s", path, path, id) + remedy(path); err == nil || err.Error() != want {
		t.Errorf("OpenBolt of a missing store:\n got %v\nwant %s", err, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenBolt of a missing store made a file: %v", err)
	}
	os.WriteFile(path, saved, 0o600)
	if s = openTest(t, path); s.Identity() != id {
		t.Errorf("identity of the restored file %q, want %q", s.Identity(), id)
	}
	s.Close()

	// Moved aside, as the error says: a new store.
	os.Rename(path, path+".damaged")
	os.Rename(path+".identity", path+".identity.damaged")
	if s = openTest(t, path); s.Identity() == id {
		t.Errorf("a new store has the old identity %q", id)
	}
}

// TestMigrate opens a store written by the first layout (testdata/
// layout1.db, made by cfg before stores had an identity) and checks that
// everything in it is there, in the new layout, with an identity.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	for _, interrupted := range []bool{false, true} {
		t.Run(fmt.Sprintf("interrupted=%v", interrupted), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cfg.db")
			copyFile(t, "testdata/layout1.db", path)
			if interrupted {
				// What a migration cut short leaves: some of the new
				// buckets, partly filled.
				leaveMigrationHalfDone(t, path)
			}
			s := openTest(t, path)
			if len(s.Identity()) != 32 {
				t.Errorf("identity %q after migrating", s.Identity())
			}
			want := []string{
				`1 feed/cache_job "{\"memory_mb\":32768}" deleted=false`,
				`1 feed/old "{\"memory_mb\":1}" deleted=false`,
				`1 service/banner.txt "hello\n" deleted=false`,
				`2 feed/cache_job "{\"memory_mb\":40000}" deleted=false`,
				`3 feed/old "" deleted=true`,
				`3 service/empty.txt "" deleted=false`,
			}
			if diff := cmp.Diff(want, since(t, s, 0, All())); diff != "" {
				t.Errorf("revisions after migrating (-want +got):\n%s", diff)
			}
			c, err := s.Get(ctx, "feed/cache_job")
			if diff := cmp.Diff(ConfigVersion{Name: "feed/cache_job", Revision: 2, Commit: "c2", Type: "Job", Compiled: true, Data: []byte(`{"memory_mb":40000}`)}, c); err != nil || diff != "" {
				t.Errorf("Get after migrating: %v (-want +got):\n%s", err, diff)
			}
			r, err := s.Revision(ctx, 3)
			if diff := cmp.Diff(Revision{Number: 3, Commit: "c3", Time: t0.Add(3e9), Configs: 2}, r); err != nil || diff != "" {
				t.Errorf("Revision(3) after migrating: %v (-want +got):\n%s", err, diff)
			}
			if hosts, err := s.Hosts(ctx); err != nil || len(hosts) != 1 || hosts[0].Name != "web-1" || hosts[0].Applied != 3 {
				t.Errorf("Hosts after migrating: %+v, %v", hosts, err)
			}
			if os, err := s.Overrides(ctx); err != nil || len(os) != 1 || string(os[0].Data) != `{"memory_mb":1}` {
				t.Errorf("Overrides after migrating: %+v, %v", os, err)
			}
			if runs, err := s.Runs(ctx); err != nil || len(runs) != 1 || runs[0].Base != 2 {
				t.Errorf("Runs after migrating: %+v, %v", runs, err)
			}
			mustAppend(t, s, newRev(4, cv("feed/cache_job", "x")))
			id := s.Identity()
			s.Close()
			if err := CheckBolt(path); err != nil {
				t.Errorf("CheckBolt after migrating: %v", err)
			}
			if s := openTest(t, path); s.Identity() != id {
				t.Errorf("identity after reopening %q, want %q", s.Identity(), id)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

// leaveMigrationHalfDone adds to a file of the first layout what a
// migration cut short leaves: new buckets holding the first revision.
func leaveMigrationHalfDone(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRevs, bucketHistory, bucketChanges} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		hk := historyKey("feed/cache_job", 1)
		c := ConfigVersion{Name: "feed/cache_job", Revision: 1, Commit: "c1", Compiled: true, Data: []byte("stale")}
		if err := tx.Bucket(bucketHistory).Put(hk, encodeEntry(hk, &c)); err != nil {
			return err
		}
		k := revKey(1)
		return tx.Bucket(bucketRevs).Put(k, encodeRecord(k, Revision{Number: 1, Commit: "c1", Configs: 1}))
	})
	if err != nil {
		t.Fatal(err)
	}
}
