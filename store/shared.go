package store

import (
	"bytes"
	"runtime"
	"sync"
	"unsafe"
	"weak"
)

// minShared is the size from which the data of an entry is shared.
const minShared = 4 << 10

// sharedData lets every read of one history entry return the same copy of
// its data, for as long as any reader holds it: a hundred watch streams
// writing a 5 MB config to clients that take their time hold 5 MB between
// them, not 500, and reading it again costs no copy. Entries never change
// once visible, so a copy read once is the entry's data for good. The
// copies are held weakly: one nobody holds any more is collected as usual.
type sharedData struct {
	mu sync.Mutex
	m  map[string]sharedEntry // by history key
}

type sharedEntry struct {
	p weak.Pointer[byte] // the first byte of the copy
	n int
}

func newSharedData() *sharedData {
	return &sharedData{m: map[string]sharedEntry{}}
}

// copy returns a copy of p, the data of the history entry of key: the
// copy someone holds already, if there is one.
func (s *sharedData) copy(key, p []byte) []byte {
	if len(p) < minShared {
		if len(p) == 0 {
			return []byte{}
		}
		return bytes.Clone(p)
	}
	if data := s.get(key, len(p)); data != nil {
		return data
	}
	data := bytes.Clone(p) // outside the lock: big values take a while
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[string(key)]; ok && e.n == len(p) {
		if q := e.p.Value(); q != nil {
			return unsafe.Slice(q, e.n) // another reader's, made meanwhile
		}
	}
	q := unsafe.SliceData(data)
	k := string(key)
	s.m[k] = sharedEntry{weak.Make(q), len(data)}
	runtime.AddCleanup(q, s.forget, k)
	return data
}

// get returns the copy of the data of key that someone holds, if any.
func (s *sharedData) get(key []byte, n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[string(key)]; ok && e.n == n {
		if q := e.p.Value(); q != nil {
			return unsafe.Slice(q, n)
		}
	}
	return nil
}

// forget removes the entry of key once its copy is collected (and not
// made again since).
func (s *sharedData) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && e.p.Value() == nil {
		delete(s.m, key)
	}
}

// len returns how many copies are shared.
func (s *sharedData) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
