package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// WALSuffix names the file beside a bolt store (PATH plus the suffix)
// where Append commits a revision of at most walBytes of config data: the
// revision is durable once its record there is, with one fdatasync, and
// is then written to the bolt file in the background. The package
// documentation describes it.
const WALSuffix = ".wal"

// walBytes is the most config data of a revision that Append commits
// through the log; a bigger one (the first, which holds every config) is
// written to the bolt file directly.
var walBytes = 4 << 20

// syncLog makes what was written to the log durable: syncData, which a
// test replaces to see what a power loss would leave of the log.
var syncLog = syncData

// walPending is the most config data of logged revisions waiting to be
// written to the bolt file: an Append above it waits.
const walPending = 16 << 20

// wal is the log of a bolt store: the records of revisions committed, from
// the start of the file, each
//
//	length (4 bytes little endian) | payload | CRC-32C of the store's identity, the length and the payload (4 bytes little endian)
//
// with the payload the revision's number (8 bytes big endian), its record
// (revs/REV's sealed value, as in the file) and, for each config, its name
// and its history entry (the sealed value of history/NAME 0x00 REV), each
// a uvarint length and bytes. A record that is cut short or fails its
// checksum ends the log: it was not committed.
//
// Once the bolt file holds every revision of the log, the next record is
// written at the start of the file again, over the old ones: the file is
// neither truncated nor, once as big as the records it held, extended,
// so that syncing a record syncs its data only, not the file's size.
// Records of the old ones that follow it are of revisions the bolt file
// holds, which a start skips.
type wal struct {
	f        *os.File
	identity []byte

	mu      sync.Mutex
	cond    *sync.Cond // signalled when pending shrinks or applying ends
	size    int64      // where the next record goes
	pending []walRecord
	bytes   int64 // config data of pending
	busy    bool  // the applier goroutine runs
	err     error // the last error writing the bolt file, until one works
}

// walRecord is a logged revision.
type walRecord struct {
	rev     Revision
	configs []ConfigVersion
	size    int64
}

// openWAL opens the log of the store at path, creating it if missing.
func openWAL(path, identity string) (*wal, error) {
	f, err := os.OpenFile(path+WALSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the store's log: %w", err)
	}
	w := &wal{f: f, identity: []byte(identity)}
	w.cond = sync.NewCond(&w.mu)
	return w, nil
}

// records returns the revisions the log holds, up to the first record
// cut short or failing its checksum.
func (w *wal) records() ([]walRecord, error) {
	data, err := io.ReadAll(io.NewSectionReader(w.f, 0, 1<<62))
	if err != nil {
		return nil, fmt.Errorf("reading the store's log: %w", err)
	}
	var out []walRecord
	for len(data) >= 8 {
		n := int(binary.LittleEndian.Uint32(data))
		if n > len(data)-8 {
			break
		}
		framed := data[:4+n]
		if binary.LittleEndian.Uint32(data[4+n:]) != checksum(w.identity, framed) {
			break
		}
		r, err := decodeWALRecord(data[4 : 4+n])
		if err != nil {
			return nil, fmt.Errorf("reading the store's log: %w", err)
		}
		out = append(out, r)
		data = data[8+n:]
	}
	return out, nil
}

// encode returns the framed record of revision r with configs.
func (w *wal) encode(r Revision, configs []ConfigVersion) []byte {
	buf := make([]byte, 4, 4096)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Number))
	k := revKey(r.Number)
	buf = appendBytes(buf, encodeRecord(k, r))
	for i := range configs {
		c := &configs[i]
		hk := historyKey(c.Name, r.Number)
		buf = appendBytes(buf, []byte(c.Name))
		buf = appendBytes(buf, encodeEntry(hk, c))
	}
	binary.LittleEndian.PutUint32(buf, uint32(len(buf)-4))
	return binary.LittleEndian.AppendUint32(buf, checksum(w.identity, buf))
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func readBytes(p []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, fmt.Errorf("%w: a log record cut short", ErrDamaged)
	}
	return p[k : k+int(n)], p[k+int(n):], nil
}

// decodeWALRecord decodes a record's payload, checking every value's
// checksum.
func decodeWALRecord(p []byte) (walRecord, error) {
	if len(p) < 8 {
		return walRecord{}, fmt.Errorf("%w: a log record cut short", ErrDamaged)
	}
	n := int64(binary.BigEndian.Uint64(p))
	k := revKey(n)
	v, p, err := readBytes(p[8:])
	if err != nil {
		return walRecord{}, err
	}
	r := walRecord{}
	if r.rev, err = decodeRecord(k, v); err != nil {
		return walRecord{}, fmt.Errorf("revision %d in the log: %w", n, err)
	}
	for len(p) > 0 {
		var name, entry []byte
		if name, p, err = readBytes(p); err != nil {
			return walRecord{}, err
		}
		if entry, p, err = readBytes(p); err != nil {
			return walRecord{}, err
		}
		c, err := parseEntry(historyKey(string(name), n), entry, func(_, d []byte) []byte { return bytes.Clone(d) })
		if err != nil {
			return walRecord{}, fmt.Errorf("revision %d in the log: %w", n, err)
		}
		r.configs = append(r.configs, c)
		r.size += int64(len(c.Data))
	}
	if len(r.configs) != r.rev.Configs {
		return walRecord{}, fmt.Errorf("%w: revision %d in the log: %d configs, its record says %d", ErrDamaged, n, len(r.configs), r.rev.Configs)
	}
	return r, nil
}

// commitLogged writes the record of r with configs to the log, syncs it
// and hands the revision to the applier. It waits while the revisions waiting
// to be written to the bolt file hold walPending of config data or more.
func (s *Bolt) commitLogged(ctx context.Context, r Revision, configs []ConfigVersion, size int64) error {
	w := s.wal
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.bytes >= walPending && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rec := w.encode(r, configs)
	if _, err := w.f.WriteAt(rec, w.size); err != nil {
		return fmt.Errorf("appending revision %d: writing the store's log: %w", r.Number, err)
	}
	if err := syncLog(w.f); err != nil {
		// What was written may or may not be on disk: the next record
		// goes over it.
		return fmt.Errorf("appending revision %d: syncing the store's log: %w", r.Number, err)
	}
	w.size += int64(len(rec))
	w.pending = append(w.pending, walRecord{rev: r, configs: configs, size: size})
	w.bytes += size
	if !w.busy {
		w.busy = true
		go s.applyLogged()
	}
	return nil
}

// applyLogged writes the logged revisions to the bolt file, in order,
// until none is left; the next record then goes at the start of the log.
// It stops at an error, which later calls get (settle) until a write
// works.
func (s *Bolt) applyLogged() {
	w := s.wal
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 {
		r := w.pending[0]
		w.mu.Unlock()
		err := s.writeRevision(context.Background(), r.rev, Entries(r.configs))
		w.mu.Lock()
		if err != nil {
			w.err = fmt.Errorf("writing revision %d from the store's log: %w", r.rev.Number, err)
			break
		}
		w.err = nil
		w.pending[0] = walRecord{}
		w.pending = w.pending[1:]
		w.bytes -= r.size
		w.cond.Broadcast()
	}
	if len(w.pending) == 0 {
		w.clear()
	}
	w.busy = false
	w.cond.Broadcast()
}

// latest returns the latest revision of the log not yet in the bolt file,
// if there is one and writing the file has not failed.
func (w *wal) latest() (Revision, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 || w.err != nil {
		return Revision{}, false
	}
	return w.pending[len(w.pending)-1].rev, true
}

// settle waits until the bolt file holds every logged revision, writing
// them itself if the applier stopped at an error; it returns the error
// that keeps them from it.
func (s *Bolt) settle() error {
	w := s.wal
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if len(w.pending) == 0 {
			return nil
		}
		if !w.busy {
			if w.err == nil {
				return errors.New("store: logged revisions without an applier")
			}
			// Try again: the disk may have room now.
			w.busy = true
			w.mu.Unlock()
			s.applyLogged()
			w.mu.Lock()
			if len(w.pending) > 0 {
				return w.err
			}
			return nil
		}
		w.cond.Wait()
	}
}

// replay writes the revisions of the log that the bolt file lacks, in
// order, and sets s.latest; it runs at start, before any other call. From
// then on only Append adds revisions (one that fails commits none), and
// this process alone has the file open: Append numbers revisions from
// s.latest without reading the file.
func (s *Bolt) replay() error {
	recs, err := s.wal.records()
	if err != nil {
		return err
	}
	if err := s.view(func(tx *bolt.Tx) (err error) {
		s.latest, err = latestNumber(tx)
		return err
	}); err != nil {
		return err
	}
	for _, r := range recs {
		switch {
		case r.rev.Number <= s.latest:
			continue // in the file already
		case r.rev.Number > s.latest+1:
			// The log does not continue the file: a file restored from
			// an older copy of the store. Revisions are numbered densely
			// in a store, so a record that continues it would be of the
			// same history; this one is of revisions the copy never had.
			return s.resetLog()
		}
		if err := s.writeRevision(context.Background(), r.rev, Entries(r.configs)); err != nil {
			return fmt.Errorf("writing revision %d from the store's log: %w", r.rev.Number, err)
		}
		s.latest = r.rev.Number
	}
	return s.resetLog()
}

// resetLog empties the log (clear).
func (s *Bolt) resetLog() error {
	s.wal.mu.Lock()
	defer s.wal.mu.Unlock()
	s.wal.size = 1 // whatever the file holds
	return s.wal.clear()
}

// clear empties the log once the bolt file holds every revision in it:
// the next record goes at its start, and the length of the first record
// is overwritten with zero, so that a start reads no record (a file
// restored from a copy then opens as the copy was). The zero is not
// synced: a crash that loses it leaves records of revisions the file
// holds, which a start skips. w.mu is held.
func (w *wal) clear() error {
	if w.size == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(make([]byte, 4), 0); err != nil {
		return fmt.Errorf("emptying the store's log: %w", err)
	}
	w.size = 0
	return nil
}
