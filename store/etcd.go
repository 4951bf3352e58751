package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cfg-dev/cfg/wire"
)

// Limits of the etcd store's requests. etcd refuses a request of more
// than --max-request-bytes (1.5 MiB by default) or a transaction of more
// than --max-txn-ops operations (128 by default); the store keeps well
// below both.
var (
	// etcdTxnBytes is about the most keys and values one write
	// transaction holds: more is written in several.
	etcdTxnBytes = 1 << 20
	// etcdChunkBytes is the most bytes a history value holds; an entry
	// bigger than that is kept in chunks of that size.
	etcdChunkBytes = 256 << 10
	// etcdOverrideGrace is how long the lease of an override outlives its
	// Expires (see PutOverride).
	etcdOverrideGrace = time.Minute
	// etcdKeyPage is the most keys one read of an index returns.
	etcdKeyPage int64 = 1024
)

const (
	// etcdTxnOps is the most operations of one transaction.
	etcdTxnOps = 120
	// etcdReadOps is the most entries one read transaction reads: with
	// values of at most etcdChunkBytes, a read returns at most 8 MiB.
	etcdReadOps = 32
	// etcdReadDepth is the most read transactions of one Snapshot or
	// Since in flight at once: the next ones are sent while the caller
	// is handed the entries of the first.
	etcdReadDepth = 2
)

// entryChunked is the format of a history value that stands for an entry
// kept in chunks: the number of chunks and the entry's size follow.
const entryChunked = 2

// bucket names of the etcd layout besides those of the bolt file, and the
// key under meta/ of the claim of an Append in progress.
var (
	bucketChunks = []byte("chunks")
	keyAppend    = []byte("append")
)

// Etcd is a Store in an etcd cluster, under a key prefix, with the layout
// of the package documentation. Several processes may open the same
// store: every one reads it, and Appends from several are safe (each
// revision is appended once, by one of them), though one publisher at a
// time is what the layout is made for.
type Etcd struct {
	cli      *clientv3.Client
	prefix   string
	identity string

	mu      sync.RWMutex // held for reading by every call, for writing by Close
	closed  bool
	damaged atomic.Int64
	shared  *sharedData

	followReads atomic.Int64 // the reads of missed revisions by Follow
	rangeMisses atomic.Int64 // range reads of entries that found other keys among them
}

var _ Store = (*Etcd)(nil)

// OpenEtcd opens the store under prefix in the etcd cluster cli talks to,
// creating it, with a new identity, if the prefix holds none. Closing the
// store leaves cli open: it is the caller's.
func OpenEtcd(ctx context.Context, cli *clientv3.Client, prefix string) (*Etcd, error) {
	s := &Etcd{cli: cli, prefix: prefix, shared: newSharedData()}
	idKey, layoutKey := s.key(bucketMeta, keyIdentity), s.key(bucketMeta, keyLayout)
	identity := newIdentity()
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(idKey), "=", 0)).
		Then(clientv3.OpPut(idKey, string(sealed(keyIdentity, []byte(identity)))),
			clientv3.OpPut(layoutKey, string(sealed(keyLayout, []byte(layout))))).
		Else(clientv3.OpGet(idKey), clientv3.OpGet(layoutKey)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("opening store %s in etcd: %w", prefix, err)
	}
	refuse := func(format string, args ...any) (*Etcd, error) {
		return nil, fmt.Errorf("opening store %s in etcd: %w: %s", prefix, ErrDamaged, fmt.Sprintf(format, args...))
	}
	if !resp.Succeeded {
		got := map[string]string{}
		for i, k := range [][]byte{keyIdentity, keyLayout} {
			kvs := resp.Responses[i].GetResponseRange().Kvs
			if len(kvs) == 0 {
				return refuse("no meta/%s", k)
			}
			p, err := unseal(k, kvs[0].Value)
			if err != nil {
				return refuse("meta/%s: %v", k, err)
			}
			got[string(k)] = string(p)
		}
		if l := got[string(keyLayout)]; l != layout {
			return nil, fmt.Errorf("opening store %s in etcd: layout %q, want %q: written by a newer cfg", prefix, l, layout)
		}
		identity = got[string(keyIdentity)]
	}
	if len(identity) != 32 {
		return refuse("identity %q, want 32 hex digits", identity)
	}
	s.identity = identity
	return s, nil
}

// key returns the etcd key of key in bucket.
func (s *Etcd) key(bucket, key []byte) string {
	return s.prefix + string(bucket) + "/" + string(key)
}

// bucketStart and bucketEnd bound the keys of a bucket.
func (s *Etcd) bucketStart(bucket []byte) string { return s.prefix + string(bucket) + "/" }
func (s *Etcd) bucketEnd(bucket []byte) string   { return s.prefix + string(bucket) + "0" } // '0' follows '/'

// inner returns the key within bucket of the etcd key k.
func (s *Etcd) inner(bucket []byte, k []byte) []byte {
	return k[len(s.prefix)+len(bucket)+1:]
}

// begin guards a call against Close; callers defer the function it returns.
func (s *Etcd) begin(ctx context.Context) (func(), error) {
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

// damage counts err if it says that something read was damaged.
func (s *Etcd) damage(err error) error {
	if isDamaged(err) {
		s.damaged.Add(1)
	}
	return err
}

// Identity implements Store.
func (s *Etcd) Identity() string { return s.identity }

// DamagedReads implements Store.
func (s *Etcd) DamagedReads() int64 { return s.damaged.Load() }

// Close implements Store. It waits for calls in progress (Follow and Lead
// among them: end their contexts first), and leaves the client open.
func (s *Etcd) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// txn runs a transaction of ops under the conditions cmps.
func (s *Etcd) txn(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	return s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
}

// latestOp reads the latest revision's record.
func (s *Etcd) latestOp() clientv3.Op {
	return clientv3.OpGet(s.bucketStart(bucketRevs), clientv3.WithRange(s.bucketEnd(bucketRevs)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
}

// decodeLatest decodes what latestOp read.
func (s *Etcd) decodeLatest(kvs []*mvccpb.KeyValue) (Revision, error) {
	if len(kvs) == 0 {
		return Revision{}, nil
	}
	return decodeRecord(s.inner(bucketRevs, kvs[0].Key), kvs[0].Value)
}

func (s *Etcd) latest(ctx context.Context) (Revision, error) {
	resp, err := s.cli.Do(ctx, s.latestOp())
	if err != nil {
		return Revision{}, err
	}
	r, err := s.decodeLatest(resp.Get().Kvs)
	return r, s.damage(err)
}

// Append implements Store. An Append first claims the revision: one
// transaction, which succeeds only if the revision before r exists and r
// does not, records a claim of its own (meta/append) and thereby ends any
// other Append's claim. It then removes what earlier Appends of r left
// (found through changes/), writes the configs' entries in transactions
// of at most about a MiB, and makes them visible by a last one that adds
// the record. Every one of these transactions succeeds only while the
// claim is still its own, and the last only if r does not exist yet: of
// Appends of one revision that race, at most one makes it visible, and
// nothing another wrote is ever part of it. An Append of one small
// revision is three transactions: claim, entries and record together.
func (s *Etcd) Append(ctx context.Context, r Revision, configs iter.Seq2[ConfigVersion, error]) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.append(ctx, r, configs)
}

func (s *Etcd) append(ctx context.Context, r Revision, configs iter.Seq2[ConfigVersion, error]) error {
	revsKey := s.key(bucketRevs, revKey(r.Number))
	claimKey := s.key(bucketMeta, keyAppend)
	claim := string(sealed(keyAppend, append(revKey(r.Number), newIdentity()...)))
	outOfOrder := func(latest int64) error {
		return fmt.Errorf("appending revision %d: %w: latest is %d", r.Number, ErrOutOfOrder, latest)
	}
	if r.Number < 1 {
		l, err := s.latest(ctx)
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		return outOfOrder(l.Number)
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(revsKey), "=", 0)}
	if r.Number > 1 {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.key(bucketRevs, revKey(r.Number-1))), ">", 0))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(claimKey, claim)).Else(s.latestOp()).Commit()
	if err != nil {
		return fmt.Errorf("appending revision %d: %w", r.Number, err)
	}
	if !resp.Succeeded {
		l, err := s.decodeLatest(resp.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, s.damage(err))
		}
		return outOfOrder(l.Number)
	}
	owned := clientv3.Compare(clientv3.Value(claimKey), "=", claim)
	// lost explains a transaction that failed its conditions.
	lost := func() error {
		l, err := s.latest(ctx)
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		if l.Number >= r.Number {
			return outOfOrder(l.Number)
		}
		return fmt.Errorf("appending revision %d: %w: another writer is appending it", r.Number, ErrOutOfOrder)
	}
	if err := s.dropStaged(ctx, r.Number, owned); err != nil {
		if errors.Is(err, errLost) {
			return lost()
		}
		return fmt.Errorf("appending revision %d: %w", r.Number, err)
	}

	var ops []clientv3.Op
	size := 0
	flush := func() error {
		resp, err := s.txn(ctx, []clientv3.Cmp{owned}, ops...)
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		if !resp.Succeeded {
			return lost()
		}
		ops, size = ops[:0], 0
		return nil
	}
	add := func(k []byte, bucket []byte, v []byte) error {
		if len(ops) > 0 && (len(ops) >= etcdTxnOps || size+len(k)+len(v) > etcdTxnBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.OpPut(s.key(bucket, k), string(v)))
		size += len(k) + len(v)
		return nil
	}
	seen := map[string]bool{}
	count := 0
	for c, err := range configs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		c.Revision, c.Commit = r.Number, r.Commit
		if err := checkConfig(r.Number, &c); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("appending revision %d: config %q twice", r.Number, c.Name)
		}
		seen[c.Name] = true
		hk := historyKey(c.Name, r.Number)
		ck := changeKey(r.Number, c.Name)
		v := encodeEntry(hk, &c)
		// The change first: whatever of the entry is written, the next
		// Append finds it through the change, and removes it.
		if err := add(ck, bucketChanges, sealed(ck, nil)); err != nil {
			return err
		}
		if len(v) <= etcdChunkBytes {
			if err := add(hk, bucketHistory, v); err != nil {
				return err
			}
		} else {
			n := (len(v) + etcdChunkBytes - 1) / etcdChunkBytes
			p := []byte{entryChunked}
			p = binary.AppendUvarint(p, uint64(n))
			p = binary.AppendUvarint(p, uint64(len(v)))
			if err := add(hk, bucketHistory, sealed(hk, p)); err != nil {
				return err
			}
			for i := range n {
				chunk := v[i*etcdChunkBytes : min(len(v), (i+1)*etcdChunkBytes)]
				k := chunkKey(hk, i)
				if err := add(k, bucketChunks, sealed(k, chunk)); err != nil {
					return err
				}
			}
		}
		count++
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if count == 0 {
		return fmt.Errorf("appending revision %d: no configs", r.Number)
	}
	if len(ops) > etcdTxnOps-2 {
		if err := flush(); err != nil {
			return err
		}
	}
	r.Configs = count
	k := revKey(r.Number)
	ops = append(ops, clientv3.OpPut(revsKey, string(encodeRecord(k, r))), clientv3.OpDelete(claimKey))
	resp, err = s.txn(ctx, []clientv3.Cmp{owned, clientv3.Compare(clientv3.CreateRevision(revsKey), "=", 0)}, ops...)
	if err != nil {
		return fmt.Errorf("appending revision %d: %w", r.Number, err)
	}
	if !resp.Succeeded {
		return lost()
	}
	return nil
}

// errLost: an Append's claim was taken by another.
var errLost = errors.New("claim lost")

// dropStaged removes the entries of revisions from rev on: what Appends
// that did not finish wrote. Every removal holds only while owned does.
func (s *Etcd) dropStaged(ctx context.Context, rev int64, owned clientv3.Cmp) error {
	from := s.key(bucketChanges, revKey(rev))
	for {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(s.bucketEnd(bucketChanges)), clientv3.WithKeysOnly(), clientv3.WithLimit(etcdTxnOps/3))
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			ck := s.inner(bucketChanges, kv.Key)
			rev, name, ok := parseChangeKey(ck)
			if !ok {
				return s.damage(fmt.Errorf("%w: change key %q", ErrDamaged, ck))
			}
			hk := historyKey(name, rev)
			ops = append(ops, clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(s.key(bucketHistory, hk)),
				clientv3.OpDelete(s.key(bucketChunks, hk), clientv3.WithPrefix()))
		}
		tr, err := s.txn(ctx, []clientv3.Cmp{owned}, ops...)
		if err != nil {
			return err
		}
		if !tr.Succeeded {
			return errLost
		}
	}
}

// chunkKey is the key of chunk i of the entry of history key hk.
func chunkKey(hk []byte, i int) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(hk), uint32(i))
}

// decodeEntry decodes the history value v of key, reading its chunks if
// it is kept in chunks.
func (s *Etcd) decodeEntry(ctx context.Context, key, v []byte) (ConfigVersion, error) {
	p, err := unseal(key, v)
	if err == nil && len(p) > 0 && p[0] == entryChunked {
		v, err = s.readChunks(ctx, key, p[1:])
		if err != nil {
			name, rev, _ := parseHistoryKey(key)
			return ConfigVersion{}, s.damage(fmt.Errorf("config %q at revision %d: %w", name, rev, err))
		}
	}
	c, err := parseEntry(key, v, s.shared.copy)
	return c, s.damage(err)
}

// readChunks reads the entry of history key hk whose chunks p describes.
func (s *Etcd) readChunks(ctx context.Context, hk, p []byte) ([]byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 {
		return nil, errTruncated
	}
	size, m := binary.Uvarint(p[k:])
	// A chunk is one value, which etcd holds to its request limit.
	if m <= 0 || k+m != len(p) || n == 0 || n > 1<<20 || size > n*(2<<20) {
		return nil, errTruncated
	}
	buf := make([]byte, 0, size)
	end := s.key(bucketChunks, chunkKey(hk, int(n)))
	for i := 0; i < int(n); {
		resp, err := s.cli.Get(ctx, s.key(bucketChunks, chunkKey(hk, i)), clientv3.WithRange(end), clientv3.WithLimit(8))
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: chunk %d of %d missing", ErrDamaged, i, n)
		}
		for _, kv := range resp.Kvs {
			ck := s.inner(bucketChunks, kv.Key)
			if !bytes.Equal(ck, chunkKey(hk, i)) {
				return nil, fmt.Errorf("%w: chunk %d of %d missing", ErrDamaged, i, n)
			}
			q, err := unseal(ck, kv.Value)
			if err != nil {
				return nil, fmt.Errorf("chunk %d: %w", i, err)
			}
			if uint64(len(buf)+len(q)) > size {
				return nil, fmt.Errorf("%w: chunks longer than the entry", ErrDamaged)
			}
			buf = append(buf, q...)
			i++
		}
	}
	if uint64(len(buf)) != size {
		return nil, fmt.Errorf("%w: chunks shorter than the entry", ErrDamaged)
	}
	return buf, nil
}

// Latest implements Store.
func (s *Etcd) Latest(ctx context.Context) (Revision, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	return s.latest(ctx)
}

// Revision implements Store.
func (s *Etcd) Revision(ctx context.Context, n int64) (Revision, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	k := revKey(n)
	resp, err := s.cli.Get(ctx, s.key(bucketRevs, k))
	if err != nil {
		return Revision{}, err
	}
	if len(resp.Kvs) == 0 {
		return Revision{}, fmt.Errorf("revision %d: %w", n, ErrNotFound)
	}
	r, err := decodeRecord(k, resp.Kvs[0].Value)
	return r, s.damage(err)
}

// Changed implements Store.
func (s *Etcd) Changed(ctx context.Context, n int64, fn func(string) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	prefix := s.key(bucketChanges, revKey(n))
	resp, err := s.txn(ctx, nil, clientv3.OpGet(s.key(bucketRevs, revKey(n)), clientv3.WithCountOnly()),
		clientv3.OpGet(prefix, clientv3.WithPrefix()), s.floorOp())
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseRange().Count == 0 {
		return fmt.Errorf("revision %d: %w", n, ErrNotFound)
	}
	if err := s.checkFloor(resp.Responses[2], n-1); err != nil {
		return err
	}
	var names []string
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		k := s.inner(bucketChanges, kv.Key)
		if _, err := unseal(k, kv.Value); err != nil {
			return s.damage(fmt.Errorf("revision %d: change %q: %w", n, k[8:], err))
		}
		names = append(names, string(k[8:]))
	}
	for _, name := range names {
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

// currentOp reads the newest entry of name not after revision at.
func (s *Etcd) currentOp(name string, at int64) clientv3.Op {
	return clientv3.OpGet(s.key(bucketHistory, historyPrefix(name)), clientv3.WithRange(s.key(bucketHistory, historyKey(name, at+1))),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
}

// Get implements Store.
func (s *Etcd) Get(ctx context.Context, name string) (ConfigVersion, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return ConfigVersion{}, err
	}
	defer done()
	at, err := s.latest(ctx)
	if err != nil {
		return ConfigVersion{}, err
	}
	var c ConfigVersion
	found := false
	if at.Number > 0 {
		resp, err := s.cli.Do(ctx, s.currentOp(name, at.Number))
		if err != nil {
			return ConfigVersion{}, err
		}
		if kvs := resp.Get().Kvs; len(kvs) > 0 {
			if c, err = s.decodeEntry(ctx, s.inner(bucketHistory, kvs[0].Key), kvs[0].Value); err != nil {
				return ConfigVersion{}, err
			}
			found = !c.Deleted
		}
	}
	if !found {
		return ConfigVersion{}, fmt.Errorf("config %q: %w", name, ErrNotFound)
	}
	return c, nil
}

// Snapshot implements Store. With named configs it reads each one's
// newest entry not after the latest revision; with every config, it
// lists the keys of history/, a page at a time, and reads the newest
// entry of each name not after the latest revision by exact key, the
// entries whose keys follow one another in one range read. A name whose
// keys go on past the end of a page is read by its newest entry instead,
// and the next page starts after its keys.
func (s *Etcd) Snapshot(ctx context.Context, sel Selection, fn func(ConfigVersion) error) (Revision, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer done()
	at, err := s.latest(ctx)
	if err != nil || at.Number == 0 {
		return at, err
	}
	p := s.newPipeline(ctx, at.Number, func(c ConfigVersion) error {
		if c.Deleted {
			return nil
		}
		return fn(c)
	})
	defer p.stop()
	if !sel.IsAll() {
		for _, name := range sel.Names() {
			if err := p.current(s.currentOp(name, at.Number)); err != nil {
				return Revision{}, err
			}
		}
		return at, p.finish()
	}
	// The name whose keys are being listed, its newest key not after at
	// (if any yet), and whether it has keys before or after that one:
	// entries follow one another when neither they nor what lies
	// between them has other keys.
	var (
		name      string
		best      []byte
		before    bool
		after     bool
		broken    = true // the last entry read has keys after it
		emit      func() error
		from, end = s.bucketStart(bucketHistory), s.bucketEnd(bucketHistory)
		started   bool
	)
	emit = func() error {
		if !started {
			return nil
		}
		if best == nil {
			broken = true
			return nil
		}
		err := p.want(string(best), name, !broken && !before)
		broken = after
		return err
	}
	for {
		resp, err := s.page(ctx, at.Number, clientv3.OpGet(from, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(etcdKeyPage)))
		if err != nil {
			return Revision{}, err
		}
		for _, kv := range resp.Kvs {
			k := s.inner(bucketHistory, kv.Key)
			n, rev, ok := parseHistoryKey(k)
			if !ok {
				return Revision{}, s.damage(fmt.Errorf("%w: history key %q", ErrDamaged, k))
			}
			if !started || n != name {
				if err := emit(); err != nil {
					return Revision{}, err
				}
				name, best, before, after, started = n, nil, false, false, true
			}
			switch {
			case rev > at.Number:
				after = true
			case best != nil:
				before = true // best is not the name's first key
				best = kv.Key
			default:
				best = kv.Key
			}
		}
		if !resp.More {
			if err := emit(); err != nil {
				return Revision{}, err
			}
			return at, p.finish()
		}
		// The page may end within name's keys: its newest entry is read
		// by itself, and the next page starts after every key of it
		// (NAME, then a byte above the zero byte).
		if err := p.current(s.currentOp(name, at.Number)); err != nil {
			return Revision{}, err
		}
		started, broken = false, true
		from = s.key(bucketHistory, append([]byte(name), 1))
	}
}

// Since implements Store. With every config it reads the changes index
// from the revision after from on, a page at a time; with named configs,
// the keys of each one's history from there. Either way it stops at the
// latest revision when it starts, and reads each entry by its exact key.
func (s *Etcd) Since(ctx context.Context, from int64, sel Selection, fn func(ConfigVersion) error) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	at, err := s.latest(ctx)
	if err != nil {
		return err
	}
	to := at.Number
	if from >= to {
		return nil
	}
	p := s.newPipeline(ctx, from, fn)
	defer p.stop()
	if !sel.IsAll() {
		var todo []change
		names := sel.Names()
		for len(names) > 0 {
			n := min(len(names), etcdReadOps)
			ops := make([]clientv3.Op, n)
			for i, name := range names[:n] {
				ops[i] = clientv3.OpGet(s.key(bucketHistory, historyKey(name, from+1)), clientv3.WithRange(s.key(bucketHistory, historyKey(name, to+1))), clientv3.WithKeysOnly())
			}
			resp, err := s.txn(ctx, nil, append(ops, s.floorOp())...)
			if err != nil {
				return err
			}
			if err := s.checkFloor(resp.Responses[n], from); err != nil {
				return err
			}
			for _, r := range resp.Responses[:n] {
				for _, kv := range r.GetResponseRange().Kvs {
					k := s.inner(bucketHistory, kv.Key)
					name, rev, ok := parseHistoryKey(k)
					if !ok {
						return s.damage(fmt.Errorf("%w: history key %q", ErrDamaged, k))
					}
					todo = append(todo, change{rev, name})
				}
			}
			names = names[n:]
		}
		sortChanges(todo)
		for _, ch := range todo {
			if err := p.want(s.key(bucketHistory, historyKey(ch.name, ch.rev)), ch.name, false); err != nil {
				return err
			}
		}
		return p.finish()
	}
	start, end := s.key(bucketChanges, revKey(from+1)), s.key(bucketChanges, revKey(to+1))
	for {
		resp, err := s.page(ctx, from, clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(etcdKeyPage)))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			k := s.inner(bucketChanges, kv.Key)
			rev, name, ok := parseChangeKey(k)
			if !ok {
				return s.damage(fmt.Errorf("%w: change key %q", ErrDamaged, k))
			}
			if _, err := unseal(k, kv.Value); err != nil {
				return s.damage(fmt.Errorf("revision %d: change %q: %w", rev, name, err))
			}
			if err := p.want(s.key(bucketHistory, historyKey(name, rev)), name, false); err != nil {
				return err
			}
		}
		if !resp.More {
			return p.finish()
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// floorOp reads meta/compacted, the revision the history starts after.
func (s *Etcd) floorOp() clientv3.Op { return clientv3.OpGet(s.key(bucketMeta, keyCompacted)) }

// checkFloor fails with ErrCompacted if the changes after revision from
// were compacted, according to what floorOp read.
func (s *Etcd) checkFloor(r *etcdserverpb.ResponseOp, from int64) error {
	kvs := r.GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil
	}
	floor, err := decodeFloor(kvs[0].Value)
	if err != nil {
		return s.damage(err)
	}
	return compactedError(from, floor)
}

// page runs op, a read of a page of an index, with a read of the floor:
// ErrCompacted if the changes after revision from were compacted.
func (s *Etcd) page(ctx context.Context, from int64, op clientv3.Op) (*etcdserverpb.RangeResponse, error) {
	resp, err := s.txn(ctx, nil, op, s.floorOp())
	if err != nil {
		return nil, err
	}
	if err := s.checkFloor(resp.Responses[1], from); err != nil {
		return nil, err
	}
	return resp.Responses[0].GetResponseRange(), nil
}

// Compact implements Store. It records the new floor first, in a
// transaction of its own, so that every read that could miss what is then
// removed sees it (every read of Snapshot, Since and Changed reads the
// floor in the same transaction); then it goes through the changes of the
// compacted revisions, a page at a time. The removed keys' space is
// etcd's to reclaim, with its own compaction and defragmentation.
func (s *Etcd) Compact(ctx context.Context, keep int64) (int64, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if keep < 1 {
		return 0, fmt.Errorf("compacting: keep %d revisions, want at least 1", keep)
	}
	floorKey := s.key(bucketMeta, keyCompacted)
	var floor int64
	for {
		resp, err := s.txn(ctx, nil, s.latestOp(), clientv3.OpGet(floorKey))
		if err != nil {
			return 0, fmt.Errorf("compacting: %w", err)
		}
		latest, err := s.decodeLatest(resp.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return 0, s.damage(err)
		}
		var old, mod int64
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			if old, err = decodeFloor(kvs[0].Value); err != nil {
				return 0, s.damage(err)
			}
			mod = kvs[0].ModRevision
		}
		floor = max(old, latest.Number-keep)
		if floor == old {
			return floor, nil
		}
		tr, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(floorKey), "=", mod)},
			clientv3.OpPut(floorKey, string(sealed(keyCompacted, revKey(floor)))))
		if err != nil {
			return 0, fmt.Errorf("compacting: %w", err)
		}
		if tr.Succeeded {
			break
		}
	}
	// What compactions cut short left is found from the start.
	start, end := s.key(bucketChanges, revKey(1)), s.key(bucketChanges, revKey(floor+1))
	for {
		resp, err := s.cli.Get(ctx, start, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(etcdTxnOps/4))
		if err != nil {
			return floor, fmt.Errorf("compacting: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return floor, nil
		}
		var reads []clientv3.Op
		var hks [][]byte
		for _, kv := range resp.Kvs {
			ck := s.inner(bucketChanges, kv.Key)
			rev, name, ok := parseChangeKey(ck)
			if !ok {
				return floor, s.damage(fmt.Errorf("%w: change key %q", ErrDamaged, ck))
			}
			hk := historyKey(name, rev)
			hks = append(hks, hk)
			reads = append(reads,
				clientv3.OpGet(s.key(bucketHistory, historyKey(name, rev+1)), clientv3.WithRange(s.key(bucketHistory, historyKey(name, floor+1))), clientv3.WithKeysOnly(), clientv3.WithLimit(1)),
				clientv3.OpGet(s.key(bucketHistory, hk)))
		}
		rr, err := s.txn(ctx, nil, reads...)
		if err != nil {
			return floor, fmt.Errorf("compacting: %w", err)
		}
		var ops []clientv3.Op
		for i, kv := range resp.Kvs {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			later, entry := rr.Responses[2*i].GetResponseRange().Kvs, rr.Responses[2*i+1].GetResponseRange().Kvs
			if len(entry) == 0 {
				continue // gone already
			}
			// Superseded by a later entry not after floor, the entry
			// goes; otherwise it is the current one as of floor, and
			// every earlier entry of its config goes, and it too if it
			// is a deletion.
			hk := hks[i]
			drop := func(from, to []byte) {
				ops = append(ops, clientv3.OpDelete(s.key(bucketHistory, from), clientv3.WithRange(s.key(bucketHistory, to))),
					clientv3.OpDelete(s.key(bucketChunks, from), clientv3.WithRange(s.key(bucketChunks, to))))
			}
			name, rev, _ := parseHistoryKey(hk)
			next := historyKey(name, rev+1) // the end of hk and its chunks
			switch deleted, err := entryDeleted(hk, entry[0].Value); {
			case len(later) > 0:
				drop(hk, next)
			case err != nil:
				return floor, s.damage(fmt.Errorf("compacting: %w", err))
			case deleted:
				drop(historyPrefix(name), next)
			default:
				drop(historyPrefix(name), hk)
			}
		}
		if _, err := s.txn(ctx, nil, ops...); err != nil {
			return floor, fmt.Errorf("compacting: %w", err)
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// PutHosts implements Store. The records live under one etcd lease of
// ttl (in whole seconds, rounded up), which etcd ends, removing them; each
// record also holds when it expires, which Hosts checks.
func (s *Etcd) PutHosts(ctx context.Context, hosts []Host, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if len(hosts) == 0 {
		return nil
	}
	lease, err := s.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return fmt.Errorf("storing hosts: %w", err)
	}
	expires := time.Now().Add(ttl)
	var ops []clientv3.Op
	size := 0
	for i, h := range hosts {
		data, err := json.Marshal(hostRecord{h, expires})
		if err != nil {
			return err
		}
		k := []byte(h.Name)
		ops = append(ops, clientv3.OpPut(s.key(bucketHosts, k), string(sealed(k, data)), clientv3.WithLease(lease.ID)))
		size += len(k) + len(data)
		if len(ops) == etcdTxnOps || size > etcdTxnBytes || i == len(hosts)-1 {
			if _, err := s.txn(ctx, nil, ops...); err != nil {
				return fmt.Errorf("storing hosts: %w", err)
			}
			ops, size = ops[:0], 0
		}
	}
	return nil
}

// Hosts implements Store.
func (s *Etcd) Hosts(ctx context.Context) ([]Host, error) {
	rs, err := etcdRecords[hostRecord](s, ctx, bucketHosts, "host")
	if err != nil {
		return nil, err
	}
	return liveHosts(rs, time.Now()), nil
}

// PutOverride implements Store. The override's key lives under an etcd
// lease that ends etcdOverrideGrace after o.Expires, and a renewal (a
// later PutOverride of the same ID) moves it to a new lease and revokes
// the old one: the daemon removes expired overrides itself, and the lease
// removes those that no daemon is left to remove.
func (s *Etcd) PutOverride(ctx context.Context, o wire.Override) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	lease, err := s.cli.Grant(ctx, overrideTTL(o.Expires))
	if err != nil {
		return fmt.Errorf("storing override %q: %w", o.ID, err)
	}
	k := []byte(o.ID)
	retired := s.key(bucketRetired, k)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(retired), "=", 0)).
		Then(clientv3.OpPut(s.key(bucketOverrides, k), string(sealed(k, data)), clientv3.WithLease(lease.ID), clientv3.WithPrevKV())).
		Else(clientv3.OpGet(retired)).Commit()
	if err != nil {
		s.revoke(ctx, lease.ID)
		return fmt.Errorf("storing override %q: %w", o.ID, err)
	}
	if !resp.Succeeded {
		s.revoke(ctx, lease.ID)
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 { // the compare and the read see one revision
			return fmt.Errorf("override %q: %w: %d retirement records", o.ID, ErrRetired, len(kvs))
		}
		until, err := retiredUntil(k, kvs[0].Value)
		if err != nil {
			return s.damage(err)
		}
		return retiredError(k, until)
	}
	if prev := resp.Responses[0].GetResponsePut().PrevKv; prev != nil && prev.Lease != 0 {
		s.revoke(ctx, clientv3.LeaseID(prev.Lease))
	}
	return nil
}

// overrideTTL is the TTL of the lease of an override that expires at
// expires: etcdOverrideGrace later.
func overrideTTL(expires time.Time) int64 { return ttlUntil(expires.Add(etcdOverrideGrace)) }

// ttlUntil is the TTL of a lease that ends at end: the time until then,
// in whole seconds, rounded up, and at least one.
func ttlUntil(end time.Time) int64 {
	return max(int64((time.Until(end)+time.Second-1)/time.Second), 1)
}

// RenewOverride implements Store. A renewal that keeps the override's
// lease as long as before (the same lease seconds) is one keep-alive of
// its lease; another gives the key a new lease with a put that keeps its
// value (etcd's ignore_value), and revokes the old lease. Either way the
// override's data is read (to find its lease) but not written again.
func (s *Etcd) RenewOverride(ctx context.Context, id string, expires time.Time) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	key := s.key(bucketOverrides, []byte(id))
	notFound := fmt.Errorf("override %q: %w", id, ErrNotFound)
	for {
		// A read of the key only (WithKeysOnly) does not give its lease.
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("renewing override %q: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return notFound
		}
		kv := resp.Kvs[0]
		ttl := overrideTTL(expires)
		if kv.Lease != 0 {
			ka, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(kv.Lease))
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return notFound // the lease ran out: the key went with it
			}
			if err != nil {
				return fmt.Errorf("renewing override %q: %w", id, err)
			}
			// The lease's TTL was rounded up to the second when
			// granted: one second more is the same lease seconds.
			if ka.TTL == ttl || ka.TTL == ttl+1 {
				return s.renewed(ctx, id, clientv3.LeaseID(kv.Lease), expires)
			}
		}
		lease, err := s.cli.Grant(ctx, ttl)
		if err != nil {
			return fmt.Errorf("renewing override %q: %w", id, err)
		}
		tr, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)},
			clientv3.OpPut(key, "", clientv3.WithIgnoreValue(), clientv3.WithLease(lease.ID)))
		if err != nil {
			s.revoke(ctx, lease.ID)
			return fmt.Errorf("renewing override %q: %w", id, err)
		}
		if !tr.Succeeded {
			s.revoke(ctx, lease.ID) // the override changed meanwhile: again
			continue
		}
		if kv.Lease != 0 {
			s.revoke(ctx, clientv3.LeaseID(kv.Lease))
		}
		return s.renewed(ctx, id, lease.ID, expires)
	}
}

// renewed records that override id was renewed until expires, under its
// lease, for FollowOverrides: a keep-alive changes no key.
func (s *Etcd) renewed(ctx context.Context, id string, lease clientv3.LeaseID, expires time.Time) error {
	k := []byte(id)
	v := sealed(k, []byte(expires.UTC().Format(time.RFC3339Nano)))
	if _, err := s.cli.Put(ctx, s.key(bucketRenewed, k), string(v), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("renewing override %q: %w", id, err)
	}
	return nil
}

// revoke revokes a lease no key needs any more. It may be gone already;
// if revoking fails, the lease runs out by itself.
func (s *Etcd) revoke(ctx context.Context, id clientv3.LeaseID) {
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return
	}
}

// DeleteOverride implements Store. A retired ID is a key under its own
// lease, which ends with the retirement (rounded up to the second), in
// the same transaction as the removal of the override.
func (s *Etcd) DeleteOverride(ctx context.Context, id string, retire time.Time) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	k := []byte(id)
	ops := []clientv3.Op{clientv3.OpDelete(s.key(bucketOverrides, k), clientv3.WithPrevKV())}
	var lease clientv3.LeaseID
	if !retire.IsZero() {
		l, err := s.cli.Grant(ctx, ttlUntil(retire))
		if err != nil {
			return fmt.Errorf("removing override %q: %w", id, err)
		}
		lease = l.ID
		v := sealed(k, []byte(retire.UTC().Format(time.RFC3339Nano)))
		ops = append(ops, clientv3.OpPut(s.key(bucketRetired, k), string(v), clientv3.WithLease(lease), clientv3.WithPrevKV()))
	}
	resp, err := s.txn(ctx, nil, ops...)
	if err != nil {
		if lease != 0 {
			s.revoke(ctx, lease)
		}
		return fmt.Errorf("removing override %q: %w", id, err)
	}
	// Revoking the override's lease removes the record of its renewals
	// too; that of an earlier retirement holds nothing any more.
	for _, kv := range resp.Responses[0].GetResponseDeleteRange().PrevKvs {
		if kv.Lease != 0 {
			s.revoke(ctx, clientv3.LeaseID(kv.Lease))
		}
	}
	if lease != 0 {
		if prev := resp.Responses[1].GetResponsePut().PrevKv; prev != nil && prev.Lease != 0 {
			s.revoke(ctx, clientv3.LeaseID(prev.Lease))
		}
	}
	return nil
}

// Overrides implements Store. The Expires of a renewed override is that
// of its last renewal, which RenewOverride records beside it without
// writing the override again.
func (s *Etcd) Overrides(ctx context.Context) ([]wire.Override, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	list, _, err := s.overrides(ctx)
	return list, err
}

// overrides returns every override, and the etcd revision they were read
// at. One range read gets the overrides and the records of their
// renewals (bucketRenewed sorts just before overrides/): an override's
// Expires is that of its last renewal, if one was recorded after the
// override was put. An override renewed without a record (by an earlier
// cfg) whose Expires is past gets its lease's end less the grace, to the
// second.
func (s *Etcd) overrides(ctx context.Context) ([]wire.Override, int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+string(bucketOverrides)+"-", clientv3.WithRange(s.bucketEnd(bucketOverrides)))
	if err != nil {
		return nil, 0, err
	}
	type renewal struct {
		expires time.Time
		rev     int64
	}
	renewals := map[string]renewal{}
	renewedStart := s.bucketStart(bucketRenewed)
	var out []wire.Override
	for _, kv := range resp.Kvs {
		if bytes.HasPrefix(kv.Key, []byte(renewedStart)) {
			k := s.inner(bucketRenewed, kv.Key)
			p, err := unseal(k, kv.Value)
			if err != nil {
				return nil, 0, s.damage(fmt.Errorf("renewal of override %q: %w", k, err))
			}
			t, err := time.Parse(time.RFC3339Nano, string(p))
			if err != nil {
				return nil, 0, fmt.Errorf("decoding the renewal of override %q: %w", k, err)
			}
			renewals[string(k)] = renewal{t, kv.ModRevision}
			continue
		}
		if !bytes.HasPrefix(kv.Key, []byte(s.bucketStart(bucketOverrides))) {
			continue
		}
		k := s.inner(bucketOverrides, kv.Key)
		p, err := unseal(k, kv.Value)
		if err != nil {
			return nil, 0, s.damage(fmt.Errorf("override %q: %w", k, err))
		}
		var o wire.Override
		if err := json.Unmarshal(p, &o); err != nil {
			return nil, 0, fmt.Errorf("decoding override %q: %w", k, err)
		}
		if r, ok := renewals[string(k)]; ok && r.rev > kv.ModRevision {
			o.Expires = r.expires.UTC()
		} else if kv.Lease != 0 && !o.Expires.After(time.Now()) {
			ttl, err := s.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				return nil, 0, fmt.Errorf("reading the lease of override %q: %w", k, err)
			}
			if ttl.TTL < 0 {
				continue // ran out since it was read
			}
			// TTL is what is left of the lease, to the second below.
			o.Expires = time.Now().Add(time.Duration(ttl.TTL)*time.Second - etcdOverrideGrace).UTC()
		}
		out = append(out, o)
	}
	return out, resp.Header.Revision, nil
}

// PutRun implements Store.
func (s *Etcd) PutRun(ctx context.Context, r wire.Run) error {
	done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := []byte(r.ID)
	key, put := s.key(bucketRuns, k), clientv3.OpPut(s.key(bucketRuns, k), string(sealed(k, data)))
	if r.Status != wire.RunRunning {
		if _, err := s.cli.Do(ctx, put); err != nil {
			return fmt.Errorf("storing run %q: %w", r.ID, err)
		}
		return nil
	}
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("storing run %q: %w", r.ID, err)
		}
		unchanged := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(resp.Kvs) > 0 {
			if runEnded(k, resp.Kvs[0].Value) {
				return fmt.Errorf("run %q: %w", r.ID, ErrRunEnded)
			}
			unchanged = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		tr, err := s.txn(ctx, []clientv3.Cmp{unchanged}, put)
		if err != nil {
			return fmt.Errorf("storing run %q: %w", r.ID, err)
		}
		if tr.Succeeded {
			return nil
		}
		// The run was recorded meanwhile: check it again.
	}
}

// Runs implements Store.
func (s *Etcd) Runs(ctx context.Context) ([]wire.Run, error) {
	return etcdRecords[wire.Run](s, ctx, bucketRuns, "run")
}

// etcdRecords returns every record of bucket, in key order; what names a
// record in errors.
func etcdRecords[T any](s *Etcd, ctx context.Context, bucket []byte, what string) ([]T, error) {
	done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := s.cli.Get(ctx, s.bucketStart(bucket), clientv3.WithRange(s.bucketEnd(bucket)))
	if err != nil {
		return nil, err
	}
	var out []T
	for _, kv := range resp.Kvs {
		k := s.inner(bucket, kv.Key)
		p, err := unseal(k, kv.Value)
		if err != nil {
			return nil, s.damage(fmt.Errorf("%s %q: %w", what, k, err))
		}
		var r T
		if err := json.Unmarshal(p, &r); err != nil {
			return nil, fmt.Errorf("decoding %s %q: %w", what, k, err)
		}
		out = append(out, r)
	}
	return out, nil
}
