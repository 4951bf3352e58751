package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/cfg-dev/cfg/wire"
)

// Every value the store writes is sealed: its payload followed by a
// CRC-32C (Castagnoli) of the value's key and payload, 4 bytes little
// endian. Covering the key too means that a value moved under another key
// fails as surely as one whose bytes changed.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const sealSize = 4

func checksum(key, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, payload)
}

// seal appends the checksum of key and buf[start:] to buf, whose bytes
// from start are a value's payload.
func seal(buf []byte, start int, key []byte) []byte {
	return binary.LittleEndian.AppendUint32(buf, checksum(key, buf[start:]))
}

// sealed returns payload sealed under key, in a new slice.
func sealed(key, payload []byte) []byte {
	buf := make([]byte, 0, len(payload)+sealSize)
	return seal(append(buf, payload...), 0, key)
}

// unseal returns the payload of value, stored under key, or an error if
// it fails its checksum. The payload aliases value.
func unseal(key, value []byte) ([]byte, error) {
	if len(value) < sealSize {
		return nil, fmt.Errorf("%w: %d-byte value, shorter than its checksum", ErrDamaged, len(value))
	}
	payload := value[:len(value)-sealSize]
	if binary.LittleEndian.Uint32(value[len(payload):]) != checksum(key, payload) {
		return nil, fmt.Errorf("%w: value fails its checksum", ErrDamaged)
	}
	return payload, nil
}

// runEnded reports whether value, a run's record stored under key (or
// nil), records a run that ended. A damaged record records nothing.
func runEnded(key, value []byte) bool {
	if value == nil {
		return false
	}
	payload, err := unseal(key, value)
	if err != nil {
		return false
	}
	var run struct{ Status string }
	return json.Unmarshal(payload, &run) == nil && run.Status != "" && run.Status != wire.RunRunning
}

// Keys. Revision numbers are 8 bytes big endian, so that byte order is
// numeric order.

func revKey(n int64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n)) }

func parseRevKey(k []byte) (int64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k)), true
}

// historyKey is NAME, a zero byte (which no name holds), and the
// revision: a config's entries are adjacent and in revision order, and
// every name's entries sort before those of a longer name it prefixes.
func historyKey(name string, rev int64) []byte {
	k := make([]byte, 0, len(name)+9)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(rev))
}

// historyPrefix is the start of every history key of name.
func historyPrefix(name string) []byte {
	return append([]byte(name), 0)
}

func parseHistoryKey(k []byte) (name string, rev int64, ok bool) {
	if len(k) < 10 || k[len(k)-9] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-9]), int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// changeKey is the revision and then the name: a revision's changes are
// adjacent and in name order.
func changeKey(rev int64, name string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(name)), uint64(rev))
	return append(k, name...)
}

func parseChangeKey(k []byte) (rev int64, name string, ok bool) {
	if len(k) < 9 {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k)), string(k[8:]), true
}

// Entries (history values): a format byte, flags, the commit and the type
// (each a uvarint length and bytes), then the data.

const entryFormat = 1

const (
	flagCompiled = 1 << iota
	flagDeleted
)

// encodeEntry returns the sealed history value of c under key.
func encodeEntry(key []byte, c *ConfigVersion) []byte {
	buf := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(c.Commit)+len(c.Type)+len(c.Data)+sealSize)
	var flags byte
	if c.Compiled {
		flags |= flagCompiled
	}
	if c.Deleted {
		flags |= flagDeleted
	}
	buf = append(buf, entryFormat, flags)
	buf = appendString(buf, c.Commit)
	buf = appendString(buf, c.Type)
	buf = append(buf, c.Data...)
	return seal(buf, 0, key)
}

// parseEntry decodes the history value v of key, with the data that
// copyData makes of v's (or without data, if copyData is nil).
func parseEntry(key, v []byte, copyData func(key, p []byte) []byte) (ConfigVersion, error) {
	name, rev, ok := parseHistoryKey(key)
	if !ok {
		return ConfigVersion{}, fmt.Errorf("%w: history key %q", ErrDamaged, key)
	}
	bad := func(err error) (ConfigVersion, error) {
		return ConfigVersion{}, fmt.Errorf("config %q at revision %d: %w", name, rev, err)
	}
	p, err := unseal(key, v)
	if err != nil {
		return bad(err)
	}
	if len(p) < 2 || p[0] != entryFormat {
		return bad(fmt.Errorf("%w: unknown entry format", ErrDamaged))
	}
	c := ConfigVersion{Name: name, Revision: rev, Compiled: p[1]&flagCompiled != 0, Deleted: p[1]&flagDeleted != 0}
	p = p[2:]
	if c.Commit, p, err = readString(p); err != nil {
		return bad(err)
	}
	if c.Type, p, err = readString(p); err != nil {
		return bad(err)
	}
	if !c.Deleted && copyData != nil {
		c.Data = copyData(key, p)
	}
	return c, nil
}

// Revision records (revs values): the commit, the publishing time in
// nanoseconds since 1970 (varint) and the number of configs (uvarint).

func encodeRecord(key []byte, r Revision) []byte {
	buf := make([]byte, 0, len(r.Commit)+3*binary.MaxVarintLen64+sealSize)
	buf = appendString(buf, r.Commit)
	buf = binary.AppendVarint(buf, r.Time.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(r.Configs))
	return seal(buf, 0, key)
}

func decodeRecord(key, v []byte) (Revision, error) {
	n, ok := parseRevKey(key)
	if !ok {
		return Revision{}, fmt.Errorf("%w: revision key %q", ErrDamaged, key)
	}
	bad := func(err error) (Revision, error) {
		return Revision{}, fmt.Errorf("revision %d: %w", n, err)
	}
	p, err := unseal(key, v)
	if err != nil {
		return bad(err)
	}
	r := Revision{Number: n}
	if r.Commit, p, err = readString(p); err != nil {
		return bad(err)
	}
	t, k := binary.Varint(p)
	if k <= 0 {
		return bad(errTruncated)
	}
	count, m := binary.Uvarint(p[k:])
	if m <= 0 || k+m != len(p) {
		return bad(errTruncated)
	}
	r.Time, r.Configs = time.Unix(0, t).UTC(), int(count)
	return r, nil
}

var errTruncated = fmt.Errorf("%w: truncated value", ErrDamaged)

func appendString(buf []byte, s string) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

func readString(p []byte) (string, []byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return "", nil, errTruncated
	}
	return string(p[k : k+int(n)]), p[k+int(n):], nil
}

// isDamaged reports whether err says that something read was damaged.
func isDamaged(err error) bool { return errors.Is(err, ErrDamaged) }

// entryDeleted reports whether the history value v of key is a deletion
// (v may stand for an entry kept in chunks, in the etcd store).
func entryDeleted(key, v []byte) (bool, error) {
	p, err := unseal(key, v)
	if err != nil {
		return false, err
	}
	if len(p) > 0 && p[0] == entryChunked {
		return false, nil // a deletion has no data to keep in chunks
	}
	if len(p) < 2 {
		return false, errTruncated
	}
	return p[1]&flagDeleted != 0, nil
}

// decodeFloor decodes the sealed value of meta/compacted.
func decodeFloor(v []byte) (int64, error) {
	p, err := unseal(keyCompacted, v)
	if err != nil {
		return 0, fmt.Errorf("meta/compacted: %w", err)
	}
	n, ok := parseRevKey(p)
	if !ok {
		return 0, fmt.Errorf("%w: meta/compacted %q", ErrDamaged, p)
	}
	return n, nil
}

// compactedError is ErrCompacted if the changes after revision from were
// compacted (from is before floor).
func compactedError(from, floor int64) error {
	if from < floor {
		return fmt.Errorf("revisions after %d: %w: history starts after revision %d", from, ErrCompacted, floor)
	}
	return nil
}
