package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The first layout kept each revision as one JSON value in "revisions"
// (under its number), the current version of every config in "configs",
// the latest revision's record in meta/latest, and hosts, overrides and
// runs as unsealed JSON; it had no identity.
var (
	bucketOldRevisions = []byte("revisions")
	bucketOldConfigs   = []byte("configs")
	keyOldLatest       = []byte("latest")
)

// oldRevision is a revision as the first layout stored it.
type oldRevision struct {
	Number  int64     `json:"revision"`
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Configs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Compiled bool   `json:"compiled"`
		Deleted  bool   `json:"deleted"`
		Data     []byte `json:"data"`
	} `json:"configs"`
}

// migrate rewrites a store of the first layout in this one and gives it
// an identity, which it returns. The revisions are copied one at a time,
// each written as Append writes it, into buckets the first layout does not
// have; a last transaction seals the hosts, overrides and runs, deletes
// what only the first layout used and writes the layout version. So the
// store changes layout at once or not at all, and a migration cut short
// starts again at the next open. It holds one revision in memory at a
// time.
func (s *Bolt) migrate() (string, error) {
	err := s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRevs, bucketHistory, bucketChanges} {
			if tx.Bucket(b) != nil {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	n := int64(1)
	for ; ; n++ {
		var old *oldRevision
		err := s.view(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketOldRevisions).Get(revKey(n))
			if v == nil {
				return nil
			}
			old = new(oldRevision)
			if err := json.Unmarshal(v, old); err != nil {
				return fmt.Errorf("decoding revision %d: %w", n, err)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if old == nil {
			break
		}
		if old.Number != n {
			return "", fmt.Errorf("revision %d: stored as revision %d", old.Number, n)
		}
		cs := make([]ConfigVersion, len(old.Configs))
		for i, c := range old.Configs {
			cs[i] = ConfigVersion{Name: c.Name, Type: c.Type, Compiled: c.Compiled, Deleted: c.Deleted, Data: c.Data}
		}
		if err := s.writeRevision(context.Background(), Revision{Number: n, Commit: old.Commit, Time: old.Time}, Entries(cs)); err != nil {
			return "", err
		}
	}
	identity := newIdentity()
	err = s.update(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketOldRevisions).Cursor().Last(); k != nil {
			if last, _ := parseRevKey(k); last != n-1 {
				return fmt.Errorf("revision %d missing, revision %d stored", n, last)
			}
		}
		for _, name := range [][]byte{bucketHosts, bucketOverrides, bucketRuns} {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			var keys, values [][]byte
			err = b.ForEach(func(k, v []byte) error {
				if !json.Valid(v) {
					return fmt.Errorf("%s %q: not JSON", name, k)
				}
				keys, values = append(keys, bytes.Clone(k)), append(values, sealed(k, v))
				return nil
			})
			if err != nil {
				return err
			}
			for i, k := range keys {
				if err := b.Put(k, values[i]); err != nil {
					return err
				}
			}
		}
		for _, b := range [][]byte{bucketOldRevisions, bucketOldConfigs} {
			if tx.Bucket(b) == nil {
				continue
			}
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Delete(keyOldLatest); err != nil {
			return err
		}
		if err := meta.Put(keyIdentity, sealed(keyIdentity, []byte(identity))); err != nil {
			return err
		}
		return meta.Put(keyLayout, sealed(keyLayout, []byte(layout)))
	})
	return identity, err
}
