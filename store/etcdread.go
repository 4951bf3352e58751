package store

import (
	"bytes"
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A pipeline reads the entries of a Snapshot or Since: its caller names
// them in the order it wants them handed over (by exact key, or by the
// read of a name's newest entry), the pipeline groups them in read
// transactions of at most etcdReadOps entries, keeps at most
// etcdReadDepth of those in flight, and hands the entries over in order,
// one transaction's at a time, between calls of its caller. Entries whose
// keys follow one another are read by one range read.
//
// So a pipeline holds at most etcdReadDepth transactions' entries: each
// at most etcdReadOps history values of at most etcdChunkBytes, besides
// the entries kept in chunks among them.
type pipeline struct {
	s      *Etcd
	ctx    context.Context
	cancel context.CancelFunc
	fn     func(ConfigVersion) error
	from   int64 // every read fails with ErrCompacted if the changes after it were compacted

	batch   []fetch
	entries int                // in batch
	flight  []chan fetchResult // in the order of the batches
}

// A fetch is one read operation of a batch: a range of history keys that
// follow one another, each of which must be there (want), or the read of
// a name's newest entry not after a revision (op), which may find none.
type fetch struct {
	want []wanted
	op   clientv3.Op
}

type wanted struct {
	key  string // the etcd key
	name string
}

type fetchResult struct {
	entries []ConfigVersion
	err     error
}

func (s *Etcd) newPipeline(ctx context.Context, from int64, fn func(ConfigVersion) error) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	return &pipeline{s: s, ctx: ctx, cancel: cancel, fn: fn, from: from}
}

// want reads the entry of etcd key key, the history entry of config name,
// which must exist; next says that no key lies between it and the
// entry wanted before, so that both can be read by one range read.
func (p *pipeline) want(key, name string, next bool) error {
	if p.entries == etcdReadOps {
		if err := p.send(); err != nil {
			return err
		}
	}
	p.entries++
	if n := len(p.batch); next && n > 0 && p.batch[n-1].want != nil {
		p.batch[n-1].want = append(p.batch[n-1].want, wanted{key, name})
		return nil
	}
	p.batch = append(p.batch, fetch{want: []wanted{{key, name}}})
	return nil
}

// current reads the entry op reads (currentOp), if there is one.
func (p *pipeline) current(op clientv3.Op) error {
	if p.entries == etcdReadOps {
		if err := p.send(); err != nil {
			return err
		}
	}
	p.entries++
	p.batch = append(p.batch, fetch{op: op})
	return nil
}

// send starts the read of the batch, first handing over the entries of
// the oldest read in flight if etcdReadDepth are.
func (p *pipeline) send() error {
	if len(p.batch) == 0 {
		return nil
	}
	if len(p.flight) == etcdReadDepth {
		if err := p.handOver(); err != nil {
			return err
		}
	}
	batch := p.batch
	p.batch, p.entries = nil, 0
	ch := make(chan fetchResult, 1)
	p.flight = append(p.flight, ch)
	go func() {
		entries, err := p.s.readBatch(p.ctx, p.from, batch)
		ch <- fetchResult{entries, err}
	}()
	return nil
}

// handOver waits for the oldest read in flight and hands its entries to fn.
func (p *pipeline) handOver() error {
	r := <-p.flight[0]
	p.flight = p.flight[1:]
	if r.err != nil {
		return r.err
	}
	for i := range r.entries {
		c := r.entries[i]
		r.entries[i] = ConfigVersion{} // what fn was given is fn's to keep or drop
		if err := p.fn(c); err != nil {
			return err
		}
	}
	return nil
}

// finish reads what is left and hands every entry over.
func (p *pipeline) finish() error {
	if err := p.send(); err != nil {
		return err
	}
	for len(p.flight) > 0 {
		if err := p.handOver(); err != nil {
			return err
		}
	}
	return nil
}

// stop ends the reads still in flight and waits for them; callers defer it.
func (p *pipeline) stop() {
	p.cancel()
	for _, ch := range p.flight {
		<-ch
	}
	p.flight = nil
}

// readBatch reads the entries of batch in one transaction, and those of a
// range read that found other keys among them in a second one; each reads
// the floor too, and fails with ErrCompacted if the changes after from
// were compacted (so that an entry a compaction removed is never taken
// for a damaged store, nor silently left out).
func (s *Etcd) readBatch(ctx context.Context, from int64, batch []fetch) ([]ConfigVersion, error) {
	ops := make([]clientv3.Op, len(batch))
	for i, f := range batch {
		switch {
		case f.want == nil:
			ops[i] = f.op
		case len(f.want) == 1:
			ops[i] = clientv3.OpGet(f.want[0].key)
		default:
			last := f.want[len(f.want)-1].key
			ops[i] = clientv3.OpGet(f.want[0].key, clientv3.WithRange(last+"\x00"), clientv3.WithLimit(int64(len(f.want))))
		}
	}
	resp, err := s.txn(ctx, nil, append(ops, s.floorOp())...)
	if err != nil {
		return nil, err
	}
	if err := s.checkFloor(resp.Responses[len(ops)], from); err != nil {
		return nil, err
	}
	var out []ConfigVersion
	for i, f := range batch {
		kvs := resp.Responses[i].GetResponseRange().Kvs
		if f.want == nil {
			if len(kvs) > 0 {
				c, err := s.decodeEntry(ctx, s.inner(bucketHistory, kvs[0].Key), kvs[0].Value)
				if err != nil {
					return nil, err
				}
				out = append(out, c)
			}
			continue
		}
		// The range holds the keys wanted, in order, unless keys were
		// added among them since they were listed (entries of an Append
		// in progress): those are skipped, and the keys the limit then
		// left out are read by themselves.
		j := 0
		for _, kv := range kvs {
			if j == len(f.want) || !bytes.Equal(kv.Key, []byte(f.want[j].key)) {
				continue
			}
			c, err := s.decodeEntry(ctx, s.inner(bucketHistory, kv.Key), kv.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
			j++
		}
		if j == len(f.want) {
			continue
		}
		s.rangeMisses.Add(1)
		rest := f.want[j:]
		ops := make([]clientv3.Op, len(rest))
		for i, w := range rest {
			ops[i] = clientv3.OpGet(w.key)
		}
		resp, err := s.txn(ctx, nil, append(ops, s.floorOp())...)
		if err != nil {
			return nil, err
		}
		if err := s.checkFloor(resp.Responses[len(ops)], from); err != nil {
			return nil, err
		}
		for i, w := range rest {
			kvs := resp.Responses[i].GetResponseRange().Kvs
			if len(kvs) == 0 {
				_, rev, _ := parseHistoryKey(s.inner(bucketHistory, []byte(w.key)))
				return nil, s.damage(fmt.Errorf("%w: config %q at revision %d: entry missing", ErrDamaged, w.name, rev))
			}
			c, err := s.decodeEntry(ctx, s.inner(bucketHistory, kvs[0].Key), kvs[0].Value)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}
