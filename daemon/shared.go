package daemon

import (
	"runtime"
	"sync"
	"unsafe"
	"weak"
)

// minShared is the size from which config data is shared (sharedData).
const minShared = 4 << 10

// sharedData lets every watch stream and request that writes one version
// of a config write the same bytes: the first to read a version from the
// store (or the tailer, which publishes it) keeps its copy, and the others
// take that copy and drop their own, so a hundred clients that do not read
// a 5 MB config hold 5 MB between them, not 500. It holds the copies
// weakly: a version nobody writes any more is collected as usual.
type sharedData struct {
	mu sync.Mutex
	m  map[versionKey]sharedEntry
}

// versionKey names a version of a config: its data never changes.
type versionKey struct {
	name string
	rev  int64
}

type sharedEntry struct {
	p weak.Pointer[byte] // the first byte of the data
	n int
}

func newSharedData() *sharedData {
	return &sharedData{m: map[versionKey]sharedEntry{}}
}

// share returns the data of config name as revision rev set it: a copy
// someone else is writing, if there is one, or else data itself, which
// others then share.
func (s *sharedData) share(name string, rev int64, data []byte) []byte {
	if len(data) < minShared {
		return data
	}
	k := versionKey{name, rev}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok && e.n == len(data) {
		if p := e.p.Value(); p != nil {
			return unsafe.Slice(p, e.n)
		}
	}
	p := unsafe.SliceData(data)
	s.m[k] = sharedEntry{weak.Make(p), len(data)}
	runtime.AddCleanup(p, s.forget, k)
	return data
}

// forget removes the entry of k once its data is collected (and not
// shared again since).
func (s *sharedData) forget(k versionKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok && e.p.Value() == nil {
		delete(s.m, k)
	}
}

// len returns how many versions are shared.
func (s *sharedData) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
