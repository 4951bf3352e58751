package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/cfg-dev/cfg/internal/durable"
	"github.com/cfg-dev/cfg/wire"
)

// Buckets of the bolt file (the package documentation gives the layout).
var (
	bucketMeta      = []byte("meta")
	bucketRevs      = []byte("revs")
	bucketHistory   = []byte("history")
	bucketChanges   = []byte("changes")
	bucketHosts     = []byte("hosts")
	bucketOverrides = []byte("overrides")
	bucketRuns      = []byte("runs")
	// bucketRetired holds the retired override IDs (DeleteOverride). A
	// file made before it has none until an ID is first retired: an
	// older cfg opening the file ignores the bucket.
	bucketRetired = []byte("retired-overrides")

	buckets = [][]byte{bucketMeta, bucketRevs, bucketHistory, bucketChanges, bucketHosts, bucketOverrides, bucketRuns, bucketRetired}

	keyIdentity = []byte("identity")
	keyLayout   = []byte("layout")
	// keyCompacted: the revision the history starts after, once compacted.
	keyCompacted = []byte("compacted")
)

// layout is the version of the layout this package writes, kept under
// meta/layout. Files without it are of the first layout, which kept each
// revision as one JSON value; OpenBolt migrates them.
const layout = "2"

// IdentitySuffix names the file beside a bolt store (PATH plus the
// suffix) where OpenBolt records the store's identity: a store whose file
// is gone while that record is there is refused, not made again.
const IdentitySuffix = ".identity"

// stageBytes is about how much config data one write transaction of
// Append holds: a bigger revision is written in several, and made visible
// by the last.
var stageBytes = 16 << 20

// readBatch is the most entries, and readBatchBytes about the most config
// data, that one read transaction of Snapshot or Since reads; they hand
// the entries to their caller between transactions, so that a slow caller
// does not hold a transaction open, and let go of each entry as they hand
// it over, so that a slow caller holds at most one batch.
const (
	readBatch      = 256
	readBatchBytes = 1 << 20
)

// Bolt is a Store in one bbolt file, with its identity recorded beside it
// (IdentitySuffix) and a log of revisions (WALSuffix). A revision is
// durable once Append returns: one of at most walBytes of config data once
// its record in the log is synced to disk (one fdatasync), a bigger one
// once the write transactions that hold it are; every write transaction
// of the bolt file is synced before it ends. A crash (kill -9) in the
// middle of an Append leaves its revision whole or not at all.
type Bolt struct {
	path     string
	db       *bolt.DB
	identity string

	appendMu sync.Mutex   // serializes Appends
	latest   int64        // the number of the latest revision, set by replay and then by each Append; under appendMu
	wal      *wal         // where Append commits revisions of at most walBytes
	mu       sync.RWMutex // held for reading by every call, for writing by Close
	closed   bool
	damaged  atomic.Int64
	shared   *sharedData // the data of entries being read

	retiredPruned time.Time // when DeleteOverride last removed the ended retirements; in write transactions only
}

var _ Store = (*Bolt)(nil)

// DamagedError is OpenBolt's error for a store it refuses: damaged,
// missing while its identity is recorded, or another store than the one
// recorded.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("store %s: %s; restore the store from a backup, or move %s and %s aside to start a new, empty store (agents then resynchronise from it)",
		e.Path, e.Problem, e.Path, e.Path+IdentitySuffix)
}

// Unwrap makes a DamagedError match ErrDamaged.
func (e *DamagedError) Unwrap() error { return ErrDamaged }

// OpenBolt opens the bolt store at path, creating it, with a new identity,
// if neither it nor its identity record exists. Only one process may have
// it open; OpenBolt gives up after a second if another holds it.
//
// It refuses (DamagedError) a store that fails the checks of the file
// (CheckBolt), a store whose file is missing while its identity is
// recorded, and a store whose identity is not the one recorded. A store of
// the first layout is migrated, in place and atomically, and gets an
// identity. The revisions of the log (WALSuffix) that the file lacks are
// then written to it.
func OpenBolt(path string) (*Bolt, error) {
	idFile := path + IdentitySuffix
	recorded, err := readIdentityFile(idFile)
	if err != nil {
		return nil, err
	}
	refuse := func(format string, args ...any) (*Bolt, error) {
		return nil, &DamagedError{Path: path, Problem: fmt.Sprintf(format, args...)}
	}
	_, err = os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && recorded != "":
		return refuse("missing, but %s records store %s", idFile, recorded)
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	default:
		// Read the meta pages before bbolt maps the file.
		if err := check(path, false); err != nil {
			return nil, err
		}
	}
	var db *bolt.DB
	err = guard("opening the store", func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		return err
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: in use by another process", path)
	}
	if errors.Is(err, ErrDamaged) {
		return refuse("%v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &Bolt{path: path, db: db, shared: newSharedData()}
	// Every page and every value, before bbolt reads any.
	if err := check(path, true); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.start(recorded, idFile); err != nil {
		db.Close()
		return nil, err
	}
	// The revisions committed to the log that the file lacks.
	if s.wal, err = openWAL(path, s.identity); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.replay(); err != nil {
		s.wal.f.Close()
		db.Close()
		if isDamaged(err) {
			return refuse("%v", err)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return s, nil
}

// start checks the open file, migrates or creates the layout, and checks
// or records the identity.
func (s *Bolt) start(recorded, idFile string) error {
	refuse := func(format string, args ...any) error {
		return &DamagedError{Path: s.path, Problem: fmt.Sprintf(format, args...)}
	}
	var fileLayout, identity string
	var old, empty bool
	err := guard("reading the store", func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			k, _ := tx.Cursor().First()
			empty = k == nil
			old = tx.Bucket([]byte("revisions")) != nil
			if b := tx.Bucket(bucketMeta); b != nil {
				for k, dst := range map[string]*string{string(keyLayout): &fileLayout, string(keyIdentity): &identity} {
					if v := b.Get([]byte(k)); v != nil {
						p, err := unseal([]byte(k), v)
						if err != nil {
							return fmt.Errorf("meta/%s: %w", k, err)
						}
						*dst = string(p)
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return refuse("%v", err)
	}
	switch {
	case fileLayout == layout:
	case fileLayout != "":
		return fmt.Errorf("store %s: layout %q, want %q: written by a newer cfg", s.path, fileLayout, layout)
	case old:
		if identity, err = s.migrate(); err != nil {
			return fmt.Errorf("migrating store %s to layout %s: %w", s.path, layout, err)
		}
	case !empty:
		return refuse("not a cfg store: no layout")
	case recorded != "":
		return refuse("empty, but %s records store %s", idFile, recorded)
	default:
		if identity, err = s.create(); err != nil {
			return fmt.Errorf("creating store %s: %w", s.path, err)
		}
	}
	if len(identity) != 32 {
		return refuse("identity %q, want 32 hex digits", identity)
	}
	if recorded != "" && recorded != identity {
		return refuse("holds store %s, but %s records store %s", identity, idFile, recorded)
	}
	if recorded == "" {
		if err := writeIdentityFile(idFile, identity); err != nil {
			return err
		}
	}
	s.identity = identity
	return nil
}

// CheckBolt checks the bolt store at path: the structure of the whole
// file (every page is read, with ReadAt, so that no damage can fault) and
// the checksum of every value. OpenBolt runs it at every start. It
// returns a DamagedError describing the first problem found.
func CheckBolt(path string) error { return check(path, true) }

// check runs the quick checks of the file at path (its meta pages and
// size) or, with full, every check.
func check(path string, full bool) error {
	var sealedFile bool // a file of this layout, whose values are sealed
	var damaged error   // the first value that fails its checksum
	problem, err := checkFile(path, full, func(bucket, key, value []byte) error {
		if string(bucket) == string(bucketMeta) && string(key) == string(keyLayout) {
			p, err := unseal(key, value)
			sealedFile = err == nil && string(p) == layout
		}
		if damaged != nil {
			return nil
		}
		switch string(bucket) {
		case string(bucketHistory):
			_, damaged = parseEntry(key, value, nil)
		case string(bucketRevs):
			_, damaged = decodeRecord(key, value)
		default:
			if _, err := unseal(key, value); err != nil {
				damaged = fmt.Errorf("%s %q: %w", bucket, key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking store %s: %w", path, err)
	}
	if problem == "" && sealedFile && damaged != nil {
		problem = damaged.Error()
	}
	if problem != "" {
		return &DamagedError{Path: path, Problem: problem}
	}
	return nil
}

// create makes the buckets, the layout and a new identity of an empty
// file, in one transaction.
func (s *Bolt) create() (string, error) {
	identity := newIdentity()
	err := s.update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyIdentity, sealed(keyIdentity, []byte(identity))); err != nil {
			return err
		}
		return meta.Put(keyLayout, sealed(keyLayout, []byte(layout)))
	})
	return identity, err
}

func newIdentity() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readIdentityFile returns the identity recorded in file, or "" if there
// is no such file.
func readIdentityFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading store identity: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return "", fmt.Errorf("store identity %s: got %q, want 32 hex digits", file, id)
	}
	return id, nil
}

// writeIdentityFile records identity in file, atomically and durably.
func writeIdentityFile(file, identity string) error {
	tmp := file + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = f.WriteString(identity + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, file)
		}
		if err == nil {
			err = durable.OS.SyncDir(filepath.Dir(file))
		}
		return err
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recording store identity: %w", err)
	}
	return nil
}

// guard runs fn, turning a panic into an ErrDamaged error: a fault reading
// the mapped file (a page the file lacks), or bbolt's own panic on a page
// it cannot make sense of. Without it, either would end the process.
func guard(what string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", what, ErrDamaged, r)
		}
	}()
	return fn()
}

// view runs fn in a read transaction, guarded, counting damaged reads.
func (s *Bolt) view(fn func(tx *bolt.Tx) error) error {
	err := guard("reading the store", func() error { return s.db.View(fn) })
	if isDamaged(err) {
		s.damaged.Add(1)
	}
	return err
}

// update runs fn in a write transaction, guarded.
func (s *Bolt) update(fn func(tx *bolt.Tx) error) error {
	return guard("writing the store", func() error { return s.db.Update(fn) })
}

// begin guards a call against Close; callers defer the function it returns.
func (s *Bolt) begin(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

// beginRead is begin for a call that reads revisions: it waits until the
// bolt file holds every revision committed to the log.
func (s *Bolt) beginRead(ctx context.Context) (func(), error) {
	done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.settle(); err != nil {
		done()
		return nil, err
	}
	return done, nil
}

// Identity implements Store.
func (s *Bolt) Identity() string { return s.identity }

// DamagedReads implements Store.
func (s *Bolt) DamagedReads() int64 { return s.damaged.Load() }

// latestNumber returns the number of the latest revision.
func latestNumber(tx *bolt.Tx) (int64, error) {
	k, _ := tx.Bucket(bucketRevs).Cursor().Last()
	if k == nil {
		return 0, nil
	}
	n, ok := parseRevKey(k)
	if !ok {
		return 0, fmt.Errorf("%w: revision key %q", ErrDamaged, k)
	}
	return n, nil
}

// latest returns the latest revision.
func latest(tx *bolt.Tx) (Revision, error) {
	k, v := tx.Bucket(bucketRevs).Cursor().Last()
	if k == nil {
		return Revision{}, nil
	}
	return decodeRecord(k, v)
}

// Append implements Store. A revision is written in one transaction if
// its configs' data add up to less than stageBytes, and otherwise in
// several: the first ones write the configs' entries, which readers do not
// see (every read stops at the latest revision), and the last one adds the
// revision's record, which makes them visible. Entries that an Append
// which failed or was cut short left behind are removed by the next.
//
// A revision of at most walBytes of config data is committed to the log
// instead, with one fdatasync, and written to the bolt file in the
// background; every call that reads revisions waits until it is there.
func (s *Bolt) Append(ctx context.Context, r Revision, configs iter.Seq2[ConfigVersion, error]) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	next, stop := iter.Pull2(configs)
	defer stop()
	// The configs, held while they come to no more than walBytes.
	var held []ConfigVersion
	var size int64
	for size <= int64(walBytes) {
		c, err, ok := next()
		if !ok {
			return s.appendLogged(ctx, r, held, size)
		}
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		held = append(held, c)
		size += int64(len(c.Data))
	}
	// A big revision: after the logged ones, in write transactions of
	// its own.
	if err := s.settle(); err != nil {
		return err
	}
	err = s.writeRevision(ctx, r, func(yield func(ConfigVersion, error) bool) {
		for _, c := range held {
			if !yield(c, nil) {
				return
			}
		}
		held = nil
		for {
			c, err, ok := next()
			if !ok || !yield(c, err) {
				return
			}
		}
	})
	if err == nil {
		s.latest = r.Number
	}
	return err
}

// appendLogged checks revision r of configs, as writeRevision would, and
// commits it to the log.
func (s *Bolt) appendLogged(ctx context.Context, r Revision, configs []ConfigVersion, size int64) error {
	if r.Number != s.latest+1 {
		return fmt.Errorf("appending revision %d: %w: latest is %d", r.Number, ErrOutOfOrder, s.latest)
	}
	if len(configs) == 0 {
		return fmt.Errorf("appending revision %d: no configs", r.Number)
	}
	seen := make(map[string]bool, len(configs))
	for i := range configs {
		c := &configs[i]
		c.Revision, c.Commit = r.Number, r.Commit
		if err := checkConfig(r.Number, c); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("appending revision %d: config %q twice", r.Number, c.Name)
		}
		seen[c.Name] = true
	}
	r.Configs = len(configs)
	if err := s.commitLogged(ctx, r, configs, size); err != nil {
		return err
	}
	s.latest = r.Number
	return nil
}

// writeRevision writes revision r to the bolt file.
func (s *Bolt) writeRevision(ctx context.Context, r Revision, configs iter.Seq2[ConfigVersion, error]) error {
	next, stop := iter.Pull2(configs)
	defer stop()
	count := 0
	for first, last := true, false; !last; first = false {
		err := s.update(func(tx *bolt.Tx) error {
			if first {
				n, err := latestNumber(tx)
				if err != nil {
					return err
				}
				if r.Number != n+1 {
					return fmt.Errorf("appending revision %d: %w: latest is %d", r.Number, ErrOutOfOrder, n)
				}
				if err := dropStaged(tx, n); err != nil {
					return err
				}
			}
			history, changes := tx.Bucket(bucketHistory), tx.Bucket(bucketChanges)
			for size := 0; size < stageBytes; {
				if err := ctx.Err(); err != nil {
					return err
				}
				c, err, ok := next()
				if !ok {
					last = true
					break
				}
				if err != nil {
					return fmt.Errorf("appending revision %d: %w", r.Number, err)
				}
				c.Revision, c.Commit = r.Number, r.Commit
				if err := checkConfig(r.Number, &c); err != nil {
					return err
				}
				hk := historyKey(c.Name, r.Number)
				if history.Get(hk) != nil {
					return fmt.Errorf("appending revision %d: config %q twice", r.Number, c.Name)
				}
				if err := history.Put(hk, encodeEntry(hk, &c)); err != nil {
					return fmt.Errorf("storing config %q: %w", c.Name, err)
				}
				ck := changeKey(r.Number, c.Name)
				if err := changes.Put(ck, sealed(ck, nil)); err != nil {
					return fmt.Errorf("storing config %q: %w", c.Name, err)
				}
				count++
				size += len(c.Data) + len(hk)
			}
			if !last {
				return nil
			}
			if count == 0 {
				return fmt.Errorf("appending revision %d: no configs", r.Number)
			}
			r.Configs = count
			k := revKey(r.Number)
			return tx.Bucket(bucketRevs).Put(k, encodeRecord(k, r))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// dropStaged removes the entries of revisions after latest: what an
// Append that did not finish wrote.
func dropStaged(tx *bolt.Tx, latest int64) error {
	changes, history := tx.Bucket(bucketChanges), tx.Bucket(bucketHistory)
	c := changes.Cursor()
	for k, _ := c.Seek(revKey(latest + 1)); k != nil; k, _ = c.Seek(revKey(latest + 1)) {
		rev, name, ok := parseChangeKey(k)
		if !ok {
			return fmt.Errorf("%w: change key %q", ErrDamaged, k)
		}
		if err := history.Delete(historyKey(name, rev)); err != nil {
			return err
		}
		if err := changes.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Latest implements Store.
//
// A revision committed to the log and not yet in the file is answered
// from memory: Latest does not wait for the file, so that publishing the
// next revision does not wait for the last one to be written there.
func (s *Bolt) Latest(ctx context.Context) (Revision, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	if r, ok := s.wal.latest(); ok {
		return r, nil
	}
	if err := s.settle(); err != nil {
		return Revision{}, err
	}
	var r Revision
	err = s.view(func(tx *bolt.Tx) error {
		r, err = latest(tx)
		return err
	})
	return r, err
}

// Revision implements Store.
func (s *Bolt) Revision(ctx context.Context, n int64) (Revision, error) {
	done, err := s.beginRead(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	var r Revision
	err = s.view(func(tx *bolt.Tx) error {
		k := revKey(n)
		v := tx.Bucket(bucketRevs).Get(k)
		if v == nil {
			return fmt.Errorf("revision %d: %w", n, ErrNotFound)
		}
		r, err = decodeRecord(k, v)
		return err
	})
	return r, err
}

// Changed implements Store.
func (s *Bolt) Changed(ctx context.Context, n int64, fn func(string) error) error {
	done, err := s.beginRead(ctx)
	if err != nil {
		return err
	}
	defer done()
	var names []string
	err = s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRevs).Get(revKey(n)) == nil {
			return fmt.Errorf("revision %d: %w", n, ErrNotFound)
		}
		if err := checkCompacted(tx, n-1); err != nil {
			return err
		}
		prefix := revKey(n)
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if _, err := unseal(k, v); err != nil {
				return fmt.Errorf("revision %d: change %q: %w", n, k[8:], err)
			}
			names = append(names, string(k[8:]))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

// current returns the entry of name as of revision at (the newest entry
// not after it), or nil.
func current(c *bolt.Cursor, name string, at int64) (k, v []byte) {
	if k, _ = c.Seek(historyKey(name, at+1)); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, historyPrefix(name)) {
		return nil, nil
	}
	return k, v
}

// decodeEntry decodes the history value v of key, with a copy of its data
// shared with every other reader of the entry (sharedData).
func (s *Bolt) decodeEntry(key, v []byte) (ConfigVersion, error) {
	return parseEntry(key, v, s.shared.copy)
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, name string) (ConfigVersion, error) {
	done, err := s.beginRead(ctx)
	if err != nil {
		return ConfigVersion{}, err
	}
	defer done()
	var c ConfigVersion
	err = s.view(func(tx *bolt.Tx) error {
		at, err := latestNumber(tx)
		if err != nil {
			return err
		}
		k, v := current(tx.Bucket(bucketHistory).Cursor(), name, at)
		if k != nil {
			if c, err = s.decodeEntry(k, v); err != nil {
				return err
			}
		}
		if k == nil || c.Deleted {
			return fmt.Errorf("config %q: %w", name, ErrNotFound)
		}
		return nil
	})
	return c, err
}

// Snapshot implements Store. The revision is fixed by the first read
// transaction; later ones read the entries as of it, which Appends do not
// change, so a snapshot read in batches is still one point in time.
func (s *Bolt) Snapshot(ctx context.Context, sel Selection, fn func(ConfigVersion) error) (Revision, error) {
	done, err := s.beginRead(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	var at Revision
	err = s.view(func(tx *bolt.Tx) error {
		at, err = latest(tx)
		return err
	})
	if err != nil || at.Number == 0 {
		return at, err
	}
	names := sel.Names()
	var after []byte // with every config: the key to look for the next name from
	for {
		if err := ctx.Err(); err != nil {
			return Revision{}, err
		}
		var batch []ConfigVersion
		size := 0 // bytes of data in batch
		more := false
		err := s.view(func(tx *bolt.Tx) error {
			if err := checkCompacted(tx, at.Number); err != nil {
				return err
			}
			c := tx.Bucket(bucketHistory).Cursor()
			add := func(name string) error {
				k, v := current(c, name, at.Number)
				if k == nil {
					return nil
				}
				cv, err := s.decodeEntry(k, v)
				if err == nil && !cv.Deleted {
					batch = append(batch, cv)
					size += len(cv.Data)
				}
				return err
			}
			if !sel.IsAll() {
				n := 0
				for n < len(names) && n < readBatch && size < readBatchBytes {
					if err := add(names[n]); err != nil {
						return err
					}
					n++
				}
				names, more = names[n:], len(names) > n
				return nil
			}
			for range readBatch {
				if size >= readBatchBytes {
					break
				}
				k, _ := c.Seek(after)
				if k == nil {
					return nil
				}
				name, _, ok := parseHistoryKey(k)
				if !ok {
					return fmt.Errorf("%w: history key %q", ErrDamaged, k)
				}
				// The next name's entries start after every entry of
				// this one: NAME, then a byte above the zero byte.
				after = append(append(after[:0], name...), 1)
				if err := add(name); err != nil {
					return err
				}
			}
			more = true
			return nil
		})
		if err != nil {
			return Revision{}, err
		}
		for i := range batch {
			cv := batch[i]
			batch[i] = ConfigVersion{} // what fn was given is fn's to keep or drop
			if err := fn(cv); err != nil {
				return Revision{}, err
			}
		}
		if !more {
			return at, nil
		}
	}
}

// change names one entry of the history: a config and a revision.
type change struct {
	rev  int64
	name string
}

// sortChanges sorts changes by revision and then name.
func sortChanges(todo []change) {
	slices.SortFunc(todo, func(a, b change) int {
		return cmp.Or(cmp.Compare(a.rev, b.rev), strings.Compare(a.name, b.name))
	})
}

// Since implements Store. With every config it reads the changes index
// from the revision after from on; with named configs, each one's history
// from there. Either way it stops at the latest revision when it starts.
func (s *Bolt) Since(ctx context.Context, from int64, sel Selection, fn func(ConfigVersion) error) error {
	done, err := s.beginRead(ctx)
	if err != nil {
		return err
	}
	defer done()
	var to int64
	var todo []change // with named configs: every change to read, in order
	err = s.view(func(tx *bolt.Tx) error {
		if err := checkCompacted(tx, from); err != nil {
			return err
		}
		if to, err = latestNumber(tx); err != nil || sel.IsAll() {
			return err
		}
		c := tx.Bucket(bucketHistory).Cursor()
		for _, name := range sel.Names() {
			prefix := historyPrefix(name)
			for k, _ := c.Seek(historyKey(name, from+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				_, rev, ok := parseHistoryKey(k)
				if !ok {
					return fmt.Errorf("%w: history key %q", ErrDamaged, k)
				}
				if rev > to {
					break
				}
				todo = append(todo, change{rev, name})
			}
		}
		sortChanges(todo)
		return nil
	})
	if err != nil {
		return err
	}
	after := revKey(from + 1) // with every config: the changes key to read from
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch []ConfigVersion
		size := 0 // bytes of data in batch
		more := false
		err := s.view(func(tx *bolt.Tx) error {
			if err := checkCompacted(tx, from); err != nil {
				return err
			}
			history := tx.Bucket(bucketHistory)
			read := func(ch change) error {
				k := historyKey(ch.name, ch.rev)
				v := history.Get(k)
				if v == nil {
					return fmt.Errorf("%w: config %q at revision %d: entry missing", ErrDamaged, ch.name, ch.rev)
				}
				cv, err := s.decodeEntry(k, v)
				batch = append(batch, cv)
				size += len(cv.Data)
				return err
			}
			if !sel.IsAll() {
				n := 0
				for n < len(todo) && n < readBatch && size < readBatchBytes {
					if err := read(todo[n]); err != nil {
						return err
					}
					n++
				}
				todo, more = todo[n:], len(todo) > n
				return nil
			}
			c := tx.Bucket(bucketChanges).Cursor()
			k, v := c.Seek(after)
			for range readBatch {
				if size >= readBatchBytes {
					break
				}
				if k == nil {
					return nil
				}
				rev, name, ok := parseChangeKey(k)
				if !ok {
					return fmt.Errorf("%w: change key %q", ErrDamaged, k)
				}
				if rev > to {
					return nil
				}
				if _, err := unseal(k, v); err != nil {
					return fmt.Errorf("revision %d: change %q: %w", rev, name, err)
				}
				if err := read(change{rev, name}); err != nil {
					return err
				}
				after = append(append(after[:0], k...), 0) // the next key
				k, v = c.Next()
			}
			more = true
			return nil
		})
		if err != nil {
			return err
		}
		for i := range batch {
			cv := batch[i]
			batch[i] = ConfigVersion{} // what fn was given is fn's to keep or drop
			if err := fn(cv); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
	}
}

// PutHosts implements Store.
// The records hold when they expire; expired ones stay in the file until
// the host is recorded again, and Hosts leaves them out.
func (s *Bolt) PutHosts(ctx context.Context, hosts []Host, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	expires := time.Now().Add(ttl)
	rs := make([]hostRecord, len(hosts))
	for i, h := range hosts {
		rs[i] = hostRecord{h, expires}
	}
	return putRecords(s, ctx, bucketHosts, rs, func(r hostRecord) string { return r.Name }, nil)
}

// Hosts implements Store.
func (s *Bolt) Hosts(ctx context.Context) ([]Host, error) {
	rs, err := records[hostRecord](s, ctx, bucketHosts, "host")
	if err != nil {
		return nil, err
	}
	return liveHosts(rs, time.Now()), nil
}

// PutOverride implements Store.
func (s *Bolt) PutOverride(ctx context.Context, o wire.Override) error {
	return putRecords(s, ctx, bucketOverrides, []wire.Override{o}, func(o wire.Override) string { return o.ID },
		func(tx *bolt.Tx, _ *bolt.Bucket, k []byte, _ wire.Override) error {
			return checkRetired(tx, k, time.Now())
		})
}

// checkRetired fails with ErrRetired if override ID k is retired at now,
// and removes its retirement if it ended.
func checkRetired(tx *bolt.Tx, k []byte, now time.Time) error {
	b := tx.Bucket(bucketRetired)
	if b == nil {
		return nil
	}
	v := b.Get(k)
	if v == nil {
		return nil
	}
	until, err := retiredUntil(k, v)
	if err != nil {
		return err
	}
	if until.After(now) {
		return retiredError(k, until)
	}
	return b.Delete(k)
}

// retiredError is the error of a PutOverride of override ID k, retired
// until until.
func retiredError(k []byte, until time.Time) error {
	return fmt.Errorf("override %q: %w until %s", k, ErrRetired, until.UTC().Format(time.RFC3339))
}

// retiredUntil decodes the value of a retired override ID: when its
// retirement ends.
func retiredUntil(k, v []byte) (time.Time, error) {
	p, err := unseal(k, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("retired override %q: %w", k, err)
	}
	until, err := time.Parse(time.RFC3339Nano, string(p))
	if err != nil {
		return time.Time{}, fmt.Errorf("retired override %q: %w", k, err)
	}
	return until, nil
}

// RenewOverride implements Store: it updates the override's record, whose
// data is in the same value.
func (s *Bolt) RenewOverride(ctx context.Context, id string, expires time.Time) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOverrides)
		k := []byte(id)
		v := b.Get(k)
		if v == nil {
			return fmt.Errorf("override %q: %w", id, ErrNotFound)
		}
		p, err := unseal(k, v)
		if err != nil {
			return fmt.Errorf("override %q: %w", id, err)
		}
		var o wire.Override
		if err := json.Unmarshal(p, &o); err != nil {
			return fmt.Errorf("decoding override %q: %w", id, err)
		}
		o.Expires = expires
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		return b.Put(k, sealed(k, data))
	})
}

// DeleteOverride implements Store. Retired IDs whose retirement ended
// are removed as they are met (PutOverride), and all of them by a
// DeleteOverride that retires an ID, at most once a minute: the file
// holds about one small record per ID retired in the last retirement
// period, and a minute.
func (s *Bolt) DeleteOverride(ctx context.Context, id string, retire time.Time) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	k := []byte(id)
	return s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOverrides).Delete(k); err != nil || retire.IsZero() {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketRetired)
		if err != nil {
			return err
		}
		now := time.Now()
		if now.Sub(s.retiredPruned) >= time.Minute {
			if err := pruneRetired(b, now); err != nil {
				return err
			}
			s.retiredPruned = now
		}
		return b.Put(k, sealed(k, []byte(retire.UTC().Format(time.RFC3339Nano))))
	})
}

// pruneRetired removes from b the retired IDs whose retirement ended by
// now.
func pruneRetired(b *bolt.Bucket, now time.Time) error {
	var ended [][]byte
	err := b.ForEach(func(k, v []byte) error {
		until, err := retiredUntil(k, v)
		if err != nil {
			return err
		}
		if !until.After(now) {
			ended = append(ended, k)
		}
		return nil
	})
	for _, k := range ended {
		if err == nil {
			err = b.Delete(k)
		}
	}
	return err
}

// Overrides implements Store.
func (s *Bolt) Overrides(ctx context.Context) ([]wire.Override, error) {
	return records[wire.Override](s, ctx, bucketOverrides, "override")
}

// PutRun implements Store.
func (s *Bolt) PutRun(ctx context.Context, r wire.Run) error {
	return putRecords(s, ctx, bucketRuns, []wire.Run{r}, func(r wire.Run) string { return r.ID },
		func(_ *bolt.Tx, b *bolt.Bucket, k []byte, r wire.Run) error {
			if r.Status == wire.RunRunning && runEnded(k, b.Get(k)) {
				return fmt.Errorf("run %q: %w", r.ID, ErrRunEnded)
			}
			return nil
		})
}

// Runs implements Store.
func (s *Bolt) Runs(ctx context.Context) ([]wire.Run, error) {
	return records[wire.Run](s, ctx, bucketRuns, "run")
}

// putRecords stores each of vs as sealed JSON in bucket, under the key
// key gives it, in one transaction, unless check (if not nil) fails for
// one of them, in which case it stores none and returns check's error.
func putRecords[T any](s *Bolt, ctx context.Context, bucket []byte, vs []T, key func(T) string, check func(tx *bolt.Tx, b *bolt.Bucket, k []byte, v T) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	// Encoded before the write transaction, which holds the file's writer.
	datas := make([][]byte, len(vs))
	for i, v := range vs {
		if datas[i], err = json.Marshal(v); err != nil {
			return err
		}
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i, v := range vs {
			data := datas[i]
			k := []byte(key(v))
			if check != nil {
				if err := check(tx, b, k, v); err != nil {
					return err
				}
			}
			if err := b.Put(k, sealed(k, data)); err != nil {
				return fmt.Errorf("storing %s %q: %w", bucket, k, err)
			}
		}
		return nil
	})
}

// records returns every record of bucket, in key order; what names a
// record in errors.
func records[T any](s *Bolt, ctx context.Context, bucket []byte, what string) ([]T, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var out []T
	err = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			p, err := unseal(k, v)
			if err != nil {
				return fmt.Errorf("%s %q: %w", what, k, err)
			}
			var r T
			if err := json.Unmarshal(p, &r); err != nil {
				return fmt.Errorf("decoding %s %q: %w", what, k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// compactedFloor returns the revision the history starts after (0 if it
// was never compacted).
func compactedFloor(tx *bolt.Tx) (int64, error) {
	v := tx.Bucket(bucketMeta).Get(keyCompacted)
	if v == nil {
		return 0, nil
	}
	return decodeFloor(v)
}

// checkCompacted fails with ErrCompacted if the changes after revision
// from were compacted.
func checkCompacted(tx *bolt.Tx, from int64) error {
	floor, err := compactedFloor(tx)
	if err != nil {
		return err
	}
	return compactedError(from, floor)
}

// Compact implements Store. It records the new floor first, in a
// transaction of its own, so that every read that could miss what is then
// removed sees it; then it goes through the changes of the compacted
// revisions, compactBatch of them to a write transaction.
func (s *Bolt) Compact(ctx context.Context, keep int64) (int64, error) {
	done, err := s.beginRead(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if keep < 1 {
		return 0, fmt.Errorf("compacting: keep %d revisions, want at least 1", keep)
	}
	var old, floor int64
	err = s.update(func(tx *bolt.Tx) error {
		latest, err := latestNumber(tx)
		if err != nil {
			return err
		}
		if old, err = compactedFloor(tx); err != nil {
			return err
		}
		floor = max(old, latest-keep)
		if floor == old {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyCompacted, sealed(keyCompacted, revKey(floor)))
	})
	if err != nil || floor == old {
		return floor, err
	}
	// What compactions cut short left is found from the start.
	after := revKey(1)
	for {
		if err := ctx.Err(); err != nil {
			return floor, err
		}
		more := false
		err := s.update(func(tx *bolt.Tx) error {
			history := tx.Bucket(bucketHistory)
			changes := tx.Bucket(bucketChanges)
			var drop, dropHistory [][]byte
			c := changes.Cursor()
			k, _ := c.Seek(after)
			more = true
			for range compactBatch {
				if k == nil {
					more = false
					break
				}
				rev, name, ok := parseChangeKey(k)
				if !ok {
					return fmt.Errorf("%w: change key %q", ErrDamaged, k)
				}
				if rev > floor {
					more = false
					break
				}
				ks, err := compacted(history.Cursor(), historyKey(name, rev), name, floor)
				if err != nil {
					return err
				}
				dropHistory = append(dropHistory, ks...)
				drop = append(drop, bytes.Clone(k))
				after = append(bytes.Clone(k), 0)
				k, _ = c.Next()
			}
			for _, k := range drop {
				if err := changes.Delete(k); err != nil {
					return err
				}
			}
			for _, k := range dropHistory {
				if err := history.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return floor, s.damage(err)
		}
		if !more {
			return floor, nil
		}
	}
}

// damage counts err if it says that something read was damaged.
func (s *Bolt) damage(err error) error {
	if isDamaged(err) {
		s.damaged.Add(1)
	}
	return err
}

// compacted returns the history keys a Compact to floor removes for the
// change of name at the revision of hk (not after floor): hk itself if a
// later entry not after floor supersedes it; otherwise (hk is the current
// entry as of floor) every earlier entry of name, and hk too if it is a
// deletion.
func compacted(c *bolt.Cursor, hk []byte, name string, floor int64) ([][]byte, error) {
	k, v := c.Seek(hk)
	if !bytes.Equal(k, hk) {
		return nil, nil // gone already
	}
	if k, _ := c.Next(); k != nil && bytes.HasPrefix(k, historyPrefix(name)) {
		if _, rev, ok := parseHistoryKey(k); ok && rev <= floor {
			return [][]byte{hk}, nil
		}
	}
	var out [][]byte
	for k, _ := c.Seek(historyPrefix(name)); k != nil && bytes.Compare(k, hk) < 0; k, _ = c.Next() {
		out = append(out, bytes.Clone(k))
	}
	deleted, err := entryDeleted(hk, v)
	if deleted {
		out = append(out, hk)
	}
	return out, err
}

// Close implements Store. It waits for calls in progress.
func (s *Bolt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// Every logged revision into the file, so that the next start
	// need not replay any; it would if this failed.
	err := s.settle()
	s.wal.f.Close()
	return errors.Join(err, s.db.Close())
}
