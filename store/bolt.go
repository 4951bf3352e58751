package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/cfg-dev/cfg/wire"
)

// Buckets of the bolt file.
var (
	bucketRevisions = []byte("revisions") // big-endian revision number → Revision (JSON)
	bucketConfigs   = []byte("configs")   // config name → current ConfigVersion (JSON); deleted configs are absent
	bucketMeta      = []byte("meta")      // keyLatest → RevisionInfo of the latest revision (JSON)
	bucketHosts     = []byte("hosts")     // host name → Host (JSON)
	bucketOverrides = []byte("overrides") // override ID → wire.Override (JSON)
	bucketRuns      = []byte("runs")      // run ID → wire.Run (JSON)

	keyLatest = []byte("latest")
)

// sinceBatch is how many revisions Since reads per read transaction: a
// long-lived read transaction would hold up appends that grow the file.
const sinceBatch = 64

// Bolt is a Store in one bbolt file. Each Append is one write
// transaction, which bbolt syncs to disk before it returns: a revision is
// durable once Append returns, and a crash (kill -9) in the middle of one
// leaves no trace of it.
type Bolt struct {
	db *bolt.DB

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating it if needed) the bolt store at path. Only one
// process may have it open; OpenBolt gives up after a second if another
// holds it.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRevisions, bucketConfigs, bucketMeta, bucketHosts, bucketOverrides, bucketRuns} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func revKey(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

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

func latest(tx *bolt.Tx) (RevisionInfo, error) {
	var info RevisionInfo
	v := tx.Bucket(bucketMeta).Get(keyLatest)
	if v == nil {
		return info, nil
	}
	if err := json.Unmarshal(v, &info); err != nil {
		return info, fmt.Errorf("decoding latest revision: %w", err)
	}
	return info, nil
}

// Append implements Store.
func (s *Bolt) Append(ctx context.Context, r *Revision) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.db.Update(func(tx *bolt.Tx) error {
		last, err := latest(tx)
		if err != nil {
			return err
		}
		if err := r.check(last.Number); err != nil {
			return err
		}
		rev, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketRevisions).Put(revKey(r.Number), rev); err != nil {
			return err
		}
		configs := tx.Bucket(bucketConfigs)
		for _, c := range r.Configs {
			if c.Deleted {
				err = configs.Delete([]byte(c.Name))
			} else {
				var v []byte
				if v, err = json.Marshal(c); err == nil {
					err = configs.Put([]byte(c.Name), v)
				}
			}
			if err != nil {
				return fmt.Errorf("storing config %q: %w", c.Name, err)
			}
		}
		info, err := json.Marshal(r.Info())
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyLatest, info)
	})
}

// Latest implements Store.
func (s *Bolt) Latest(ctx context.Context) (RevisionInfo, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return RevisionInfo{}, err
	}
	defer done()
	var info RevisionInfo
	err = s.db.View(func(tx *bolt.Tx) error {
		info, err = latest(tx)
		return err
	})
	return info, err
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, name string) (ConfigVersion, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return ConfigVersion{}, err
	}
	defer done()
	var c ConfigVersion
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketConfigs).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("config %q: %w", name, ErrNotFound)
		}
		return json.Unmarshal(v, &c)
	})
	return c, err
}

// Snapshot implements Store.
func (s *Bolt) Snapshot(ctx context.Context, m Match) (Snapshot, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer done()
	var snap Snapshot
	err = s.db.View(func(tx *bolt.Tx) error {
		if snap.Latest, err = latest(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketConfigs).ForEach(func(k, v []byte) error {
			if m != nil && !m(string(k)) {
				return nil
			}
			var c ConfigVersion
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decoding config %q: %w", k, err)
			}
			snap.Configs = append(snap.Configs, c)
			return nil
		})
	})
	return snap, err // bolt iterates keys in byte order: sorted by name
}

// Revision implements Store.
func (s *Bolt) Revision(ctx context.Context, n int64) (*Revision, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var r *Revision
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRevisions).Get(revKey(n))
		if v == nil {
			return fmt.Errorf("revision %d: %w", n, ErrNotFound)
		}
		r = new(Revision)
		return json.Unmarshal(v, r)
	})
	return r, err
}

// Since implements Store. It reads revisions in batches, each in its own
// read transaction, and calls fn outside them, so that a slow fn does not
// hold up appends.
func (s *Bolt) Since(ctx context.Context, from int64, m Match, fn func(*Revision) error) error {
	next := max(from+1, 1)
	for {
		batch, err := s.readBatch(ctx, next, m)
		if err != nil {
			return err
		}
		if len(batch.revs) == 0 && batch.next == next {
			return nil
		}
		for _, r := range batch.revs {
			if err := fn(r); err != nil {
				return err
			}
		}
		next = batch.next
	}
}

type batch struct {
	revs []*Revision // the matching revisions
	next int64       // the revision to read next
}

// readBatch reads up to sinceBatch revisions from revision next on.
func (s *Bolt) readBatch(ctx context.Context, next int64, m Match) (batch, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return batch{}, err
	}
	defer done()
	b := batch{next: next}
	err = s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketRevisions).Cursor()
		read := 0
		for k, v := cur.Seek(revKey(next)); k != nil && read < sinceBatch; k, v = cur.Next() {
			read++
			r := new(Revision)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("decoding revision %d: %w", binary.BigEndian.Uint64(k), err)
			}
			b.next = r.Number + 1
			if r = r.filter(m); r != nil {
				b.revs = append(b.revs, r)
			}
		}
		return nil
	})
	return b, err
}

// PutHosts implements Store.
func (s *Bolt) PutHosts(ctx context.Context, hosts []Host) error {
	return putRecords(s, ctx, bucketHosts, hosts, func(h Host) string { return h.Name })
}

// Hosts implements Store.
func (s *Bolt) Hosts(ctx context.Context) ([]Host, error) {
	return records[Host](s, ctx, bucketHosts, "host")
}

// PutOverride implements Store.
func (s *Bolt) PutOverride(ctx context.Context, o wire.Override) error {
	return putRecords(s, ctx, bucketOverrides, []wire.Override{o}, func(o wire.Override) string { return o.ID })
}

// DeleteOverride implements Store.
func (s *Bolt) DeleteOverride(ctx context.Context, id string) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOverrides).Delete([]byte(id)) })
}

// Overrides implements Store.
func (s *Bolt) Overrides(ctx context.Context) ([]wire.Override, error) {
	return records[wire.Override](s, ctx, bucketOverrides, "override")
}

// PutRun implements Store.
func (s *Bolt) PutRun(ctx context.Context, r wire.Run) error {
	return putRecords(s, ctx, bucketRuns, []wire.Run{r}, func(r wire.Run) string { return r.ID })
}

// Runs implements Store.
func (s *Bolt) Runs(ctx context.Context) ([]wire.Run, error) {
	return records[wire.Run](s, ctx, bucketRuns, "run")
}

// putRecords stores each of vs as JSON in bucket, under the key key
// gives it, in one transaction.
func putRecords[T any](s *Bolt, ctx context.Context, bucket []byte, vs []T, key func(T) string) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, v := range vs {
			data, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(key(v)), data); err != nil {
				return fmt.Errorf("storing %s %q: %w", bucket, key(v), err)
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
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding %s %q: %w", what, k, err)
			}
			out = append(out, r)
			return nil
		})
	})
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
	return s.db.Close()
}
