package gate

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Attribute keys are interned: every key a compiled gate finds in one pass
// (one with a slot) gets a small integer, the same in every gate and for
// the life of the process, so that a prepared unit (Prepared) can say
// where each of them is in the unit once, and a check of any gate read it
// from there. The registry only grows, up to maxKeys keys; keys beyond
// that have no number, and checks look them up in the unit as Check does.
// Its readers take no lock: they load the current table, which a writer
// (Compile) replaces whole.

// maxKeys bounds the attribute keys interned: at most maxKeys keys of at
// most maxKeyLen bytes.
const maxKeys = 1024

// noKey is the number of a key that has none (the registry is full).
const noKey = ^uint32(0)

// keyTable is the registry at one time: immutable once published.
type keyTable struct {
	ids map[string]uint32 // 0 to len(ids)-1
	// lens has bit n set when a key of n bytes is interned: most of a
	// unit's attributes that no gate reads are passed over on it.
	lens uint64
	// slots is ids as an open-addressed table of a power of two entries,
	// at least twice as many as keys, by the hash of a key's words
	// (slotOf), probed linearly: a key is looked up by its words, as a
	// check compares keys, without hashing it whole.
	slots []keySlot
}

type keySlot struct {
	w  word
	id uint32 // the key's number plus one; 0: empty
}

// slotOf returns where in slots, of mask+1 entries, probing for the key of
// words h and t and length n starts.
func slotOf(h, t uint64, n int, mask uint64) uint64 {
	x := (h ^ bits.RotateLeft64(t, 29) ^ uint64(n)) * 0x9e3779b97f4a7c15
	return (x >> 32) & mask
}

// lookup returns the number of the key k (of 1 to maxKeyLen bytes), whose
// words are h and t.
func (t *keyTable) lookup(k string, h, tl uint64) (uint32, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := slotOf(h, tl, len(k), mask); ; i = (i + 1) & mask {
		e := &t.slots[i]
		if e.id == 0 {
			return 0, false
		}
		if e.w.is(k, h, tl) {
			return e.id - 1, true
		}
	}
}

func newKeyTable(ids map[string]uint32) *keyTable {
	n := 8
	for n < 2*len(ids) {
		n *= 2
	}
	t := &keyTable{ids: ids, slots: make([]keySlot, n)}
	mask := uint64(n - 1)
	for k, id := range ids {
		t.lens |= 1 << len(k)
		w := newWord(k)
		i := slotOf(w.head, w.tail, len(k), mask)
		for t.slots[i].id != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = keySlot{w: w, id: id + 1}
	}
	return t
}

// keyRegistry numbers attribute keys, up to max of them.
type keyRegistry struct {
	mu  sync.Mutex // serializes writers
	cur atomic.Pointer[keyTable]
	max int
}

// registry is the process's.
var registry = newKeyRegistry(maxKeys)

func newKeyRegistry(max int) *keyRegistry {
	r := &keyRegistry{max: max}
	r.cur.Store(newKeyTable(map[string]uint32{}))
	return r
}

// intern returns the number of key (of 1 to maxKeyLen bytes), numbering it
// if it has none, or noKey if the registry is full.
func (r *keyRegistry) intern(key string) uint32 {
	if id, ok := r.cur.Load().ids[key]; ok {
		return id
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.cur.Load()
	if id, ok := t.ids[key]; ok {
		return id
	}
	if len(t.ids) >= r.max {
		return noKey
	}
	ids := make(map[string]uint32, len(t.ids)+1)
	for k, id := range t.ids {
		ids[k] = id
	}
	id := uint32(len(t.ids))
	// The key must not keep the gate's JSON alive.
	ids[string([]byte(key))] = id
	r.cur.Store(newKeyTable(ids))
	return id
}

// Prepared is a unit prepared for checking many gates: where each
// attribute that compiled gates read is in the unit (by the key's
// interned number), and its value parsed as a version when it is a
// string. A check of a prepared unit (Gate.CheckPrepared, Live.CheckPrepared)
// reads them from there instead of finding and parsing them again, and
// decides exactly as Check of the unit. A gate compiled after the unit was
// prepared, reading keys no gate read before, is checked alike: those
// attributes are looked up as Check does.
//
// Prepare a unit once per request, or keep a Prepared per goroutine and
// Reset it for each unit: once its buffers have grown to the unit's size,
// Reset allocates nothing. Checks only read a Prepared: several goroutines
// may check one at the same time, but not while it is being Reset. It
// keeps the unit's attributes (not a copy): do not change them while it is
// in use. The zero Prepared is the unit with no ID and no attributes.
type Prepared struct {
	u Unit
	// at[id] is, for the key numbered id, the index of its first
	// attribute in u.Attrs plus one, or 0; it covers the keys numbered
	// when the unit was prepared.
	at []uint32
	// vers[i] is u.Attrs[i] parsed as a version, for the string
	// attributes at holds.
	vers []parsedVersion
}

// parsedVersion is an attribute parsed as a version, or not parsed
// (state 0).
type parsedVersion struct {
	v     version
	state uint8 // 0: not parsed; verParsed; verBad
}

const (
	verParsed = 1 + iota
	verBad
)

// Prepare prepares u for checking gates (Prepared).
func Prepare(u Unit) *Prepared {
	p := new(Prepared)
	p.Reset(u)
	return p
}

// Reset prepares u in p, reusing p's buffers.
func (p *Prepared) Reset(u Unit) { p.reset(registry, u) }

func (p *Prepared) reset(r *keyRegistry, u Unit) {
	t := r.cur.Load()
	p.u = u
	n := len(t.ids)
	if cap(p.at) < n {
		p.at = make([]uint32, n, n+n/2)
	} else {
		p.at = p.at[:n]
		clear(p.at)
	}
	if cap(p.vers) < len(u.Attrs) {
		p.vers = make([]parsedVersion, len(u.Attrs))
	} else {
		p.vers = p.vers[:len(u.Attrs)]
	}
	for i := range u.Attrs {
		a := &u.Attrs[i]
		p.vers[i].state = 0
		k := a.Key
		n := len(k)
		if n > maxKeyLen || t.lens&(1<<n) == 0 { // no key is empty
			continue
		}
		var h, tl uint64
		if n >= 8 { // words(k), written out
			h, tl = le64(k), le64(k[n-8:])
		} else if n >= 4 {
			h, tl = uint64(le32(k)), uint64(le32(k[n-4:]))
		} else {
			h = uint64(k[0]) | uint64(k[n/2])<<8 | uint64(k[n-1])<<16
		}
		id, ok := t.lookup(k, h, tl)
		if !ok || p.at[id] != 0 {
			continue
		}
		p.at[id] = uint32(i) + 1
		if a.kind == String {
			pv := &p.vers[i]
			pv.state = verBad
			if pv.v.parse(a.s) {
				pv.state = verParsed
			}
		}
	}
}

// Unit returns the unit prepared.
func (p *Prepared) Unit() Unit { return p.u }

// CheckPrepared decides whether the gate passes for the prepared unit:
// the same decision as Check(p.Unit()), with the attributes found and
// versions parsed when the unit was prepared. A nil p is the zero
// Prepared.
func (g *Gate) CheckPrepared(p *Prepared) Decision {
	if p == nil {
		p = &zeroPrepared
	}
	return g.check(p.u, p)
}

// zeroPrepared is the zero Prepared, which checks only read.
var zeroPrepared Prepared

// fromPrepared finds the gate's attributes in the prepared unit (into
// e.at), by their keys' numbers; those numbered after the unit was
// prepared, or not at all, it looks up.
func (e *env) fromPrepared() {
	g, p := e.g, e.p
	for s := 0; s < g.nkeys && s < maxSlots; s++ {
		if id := g.ids[s]; id < uint32(len(p.at)) {
			e.at[s] = p.at[id]
		} else if i := find(e.u.Attrs, &g.keys[s]); i >= 0 {
			e.at[s] = uint32(i) + 1
		}
	}
}

// CheckPrepared decides the gate for the prepared unit with the version in
// effect (Gate.CheckPrepared), as Check does for the unit.
func (l *Live) CheckPrepared(p *Prepared) Decision {
	s := l.cur.Load()
	if s == nil {
		return Decision{Rule: -1, Err: l.notLoaded}
	}
	if s.gate == nil {
		return Decision{Rule: -1, Err: s.err, Version: s.latest}
	}
	d := s.gate.CheckPrepared(p)
	d.Version = s.version
	return d
}
