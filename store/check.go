package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The checks below read a bbolt file with ReadAt, never through a memory
// map, so that no damage can make them fault: bbolt reads its file through
// a map, and a page it believes is there but the file lacks (a truncated
// file) is a SIGBUS or SIGSEGV, not an error. They follow bbolt's file
// format, version 2 (go.etcd.io/bbolt/internal/common): two meta pages,
// then pages of B+trees, one per bucket, and a freelist.

const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	metaSize        = 64 // magic, version, page size, flags u32; root, sequence, freelist, hwm, txid, checksum u64
	elementSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	freelistFlag    = 0x10
	bucketLeafFlag  = 0x01
	noFreelist      = ^uint64(0)
	maxTreeDepth    = 64
	maxFreelistSize = 0xFFFF
)

// boltMeta is the part of a meta page the checks use.
type boltMeta struct {
	pageSize uint32
	root     uint64 // the root bucket's page
	freelist uint64
	hwm      uint64 // the high water mark: pages below it are in use or free
	txid     uint64
}

// parseMeta decodes the meta page in b (a page header and a meta), or
// returns why it is not one.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("short page")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt meta page")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if ne.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}, errors.New("meta page fails its checksum")
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), hwm: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, nil
}

// checker checks one bbolt file.
type checker struct {
	f    *os.File
	size int64
	meta boltMeta
	ps   int64
	// used marks the pages found so far in a tree or the freelist.
	used []bool
	// value, if set, is called with every key and value of a top-level
	// bucket.
	value func(bucket, key, value []byte) error
	bufs  [maxTreeDepth + 1][]byte
}

// checkFile checks the bbolt file at path. The quick check reads the meta
// pages and the file's size: bbolt can then map every page it will ask
// for. The full check also reads every page of every tree and the
// freelist, checking their structure (types, bounds, key order, each page
// used once, every page used or free) and, with value set, every value of
// every top-level bucket. It returns the problem found, if any; an I/O
// error is returned as is.
func checkFile(path string, full bool, value func(bucket, key, value []byte) error) (problem string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	c := &checker{f: f, size: fi.Size(), value: value}
	if problem, err := c.readMeta(); problem != "" || err != nil {
		return problem, err
	}
	if !full {
		return "", nil
	}
	return c.walk()
}

// readMeta finds the meta page bbolt would use (the valid one with the
// higher transaction), and checks that the file holds every page it
// counts.
func (c *checker) readMeta() (string, error) {
	if c.size == 0 {
		return "empty file (0 bytes)", nil
	}
	buf := make([]byte, pageHeaderSize+metaSize)
	read := func(off int64) (boltMeta, bool, error) {
		if _, err := c.f.ReadAt(buf, off); errors.Is(err, io.EOF) {
			return boltMeta{}, false, nil
		} else if err != nil {
			return boltMeta{}, false, err
		}
		m, err := parseMeta(buf)
		return m, err == nil, nil
	}
	// The first meta page gives the page size, and the second is one
	// page on. If the first is damaged, look for the second at every
	// page size bbolt supports, as bbolt does.
	var metas []boltMeta
	m0, ok, err := read(0)
	if err != nil {
		return "", err
	}
	if ok {
		metas = append(metas, m0)
	}
	for ps := int64(1024); ps <= 16<<20 && ps < c.size; ps *= 2 {
		if ok && ps != int64(m0.pageSize) {
			continue
		}
		m1, ok1, err := read(ps)
		if err != nil {
			return "", err
		}
		if ok1 && int64(m1.pageSize) == ps {
			metas = append(metas, m1)
			break
		}
	}
	if len(metas) == 0 {
		return fmt.Sprintf("no valid meta page in its %d bytes", c.size), nil
	}
	best := metas[0]
	for _, m := range metas[1:] {
		if m.txid > best.txid {
			best = m
		}
	}
	c.meta, c.ps = best, int64(best.pageSize)
	if c.ps < 1024 || c.ps&(c.ps-1) != 0 || c.ps > 16<<20 {
		return fmt.Sprintf("page size %d", c.ps), nil
	}
	if best.hwm < 2 || best.hwm > uint64(c.size/c.ps) {
		return fmt.Sprintf("truncated: %d bytes, but its last transaction uses %d pages of %d bytes", c.size, best.hwm, c.ps), nil
	}
	if best.root < 2 || best.root >= best.hwm {
		return fmt.Sprintf("root page %d outside the file's %d pages", best.root, best.hwm), nil
	}
	if best.freelist != noFreelist && (best.freelist < 2 || best.freelist >= best.hwm) {
		return fmt.Sprintf("freelist page %d outside the file's %d pages", best.freelist, best.hwm), nil
	}
	return "", nil
}

// errProblem carries a problem found in the file up the walk.
type errProblem struct{ msg string }

func (e errProblem) Error() string { return e.msg }

func problemf(format string, args ...any) error { return errProblem{fmt.Sprintf(format, args...)} }

// walk checks every tree and the freelist.
func (c *checker) walk() (string, error) {
	c.used = make([]bool, c.meta.hwm)
	c.used[0], c.used[1] = true, true
	err := c.tree(c.meta.root, nil, nil, nil, 0)
	if err == nil {
		err = c.freelist()
	}
	var p errProblem
	if errors.As(err, &p) {
		return p.msg, nil
	}
	return "", err
}

// page reads the page run starting at id (the page and its overflow) at
// tree depth depth, marking its pages used.
func (c *checker) page(id uint64, depth int) ([]byte, error) {
	if id < 2 || id >= c.meta.hwm {
		return nil, problemf("page %d: outside the file's %d pages", id, c.meta.hwm)
	}
	// One read for the page, one more for its overflow, if any.
	buf := c.buf(depth, int(c.ps))
	if _, err := c.f.ReadAt(buf, int64(id)*c.ps); err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(buf); got != id {
		return nil, problemf("page %d: header names page %d", id, got)
	}
	overflow := uint64(ne.Uint32(buf[12:]))
	if id+overflow >= c.meta.hwm {
		return nil, problemf("page %d: %d overflow pages run past the file's %d pages", id, overflow, c.meta.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.used[p] {
			return nil, problemf("page %d: used twice", p)
		}
		c.used[p] = true
	}
	if overflow > 0 {
		buf = c.buf(depth, int((overflow+1)*uint64(c.ps)))
		if _, err := c.f.ReadAt(buf[c.ps:], (int64(id)+1)*c.ps); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// buf returns the buffer of depth, of n bytes, keeping what it held.
func (c *checker) buf(depth, n int) []byte {
	if cap(c.bufs[depth]) < n {
		b := make([]byte, n)
		copy(b, c.bufs[depth])
		c.bufs[depth] = b
	}
	return c.bufs[depth][:n]
}

// tree checks the B+tree rooted at page id, of bucket (nil for the root
// bucket), whose keys are all at least lo and below hi (when not nil).
func (c *checker) tree(id uint64, bucket, lo, hi []byte, depth int) error {
	if depth >= maxTreeDepth {
		return problemf("page %d: tree deeper than %d pages", id, maxTreeDepth)
	}
	p, err := c.page(id, depth)
	if err != nil {
		return err
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	switch flags {
	case branchPageFlag:
		if count == 0 {
			return problemf("page %d: branch page without elements", id)
		}
		keys, err := elements(p, count, false)
		if err != nil {
			return problemf("page %d: %s", id, err.msg)
		}
		if err := inOrder(keys, lo, hi); err != "" {
			return problemf("page %d: %s", id, err)
		}
		// The children are read at the next depth, so keys, which alias
		// this page's buffer, stay valid.
		for i, k := range keys {
			next := hi
			if i+1 < len(keys) {
				next = keys[i+1].key
			}
			if err := c.tree(k.child, bucket, k.key, next, depth+1); err != nil {
				return err
			}
		}
		return nil
	case leafPageFlag:
		return c.leaf(p, id, count, bucket, lo, hi, depth)
	default:
		return problemf("page %d: type %#x, want a branch or leaf page", id, flags)
	}
}

// leaf checks the leaf page p (id 0 for a bucket stored inline).
func (c *checker) leaf(p []byte, id uint64, count int, bucket, lo, hi []byte, depth int) error {
	where := fmt.Sprintf("page %d", id)
	if id == 0 {
		where = fmt.Sprintf("bucket %q (inline)", bucket)
	}
	elems, perr := elements(p, count, true)
	if perr != nil {
		return problemf("%s: %s", where, perr.msg)
	}
	if err := inOrder(elems, lo, hi); err != "" {
		return problemf("%s: %s", where, err)
	}
	for _, e := range elems {
		if e.flags&bucketLeafFlag != 0 {
			if bucket != nil {
				return problemf("bucket %q: nested bucket %q", bucket, e.key)
			}
			if err := c.bucket(e.key, e.value, depth); err != nil {
				return err
			}
			continue
		}
		if bucket == nil {
			return problemf("key %q outside every bucket", e.key)
		}
		if c.value != nil {
			if err := c.value(bucket, e.key, e.value); err != nil {
				return problemf("bucket %q: key %q: %v", bucket, e.key, err)
			}
		}
	}
	return nil
}

// bucket checks the bucket name whose header (and inline page) is v.
func (c *checker) bucket(name, v []byte, depth int) error {
	if len(v) < 16 {
		return problemf("bucket %q: %d-byte header", name, len(v))
	}
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		return c.tree(root, name, nil, nil, depth+1)
	}
	inline := v[16:]
	if len(inline) < pageHeaderSize {
		return problemf("bucket %q: short inline page", name)
	}
	ne := binary.NativeEndian
	if flags := ne.Uint16(inline[8:]); flags != leafPageFlag {
		return problemf("bucket %q: inline page of type %#x, want a leaf page", name, flags)
	}
	return c.leaf(inline, 0, int(ne.Uint16(inline[10:])), name, nil, nil, depth)
}

// element is one element of a branch or leaf page.
type element struct {
	key, value []byte
	child      uint64 // branch elements
	flags      uint32 // leaf elements
}

// elements decodes the count elements of the page p, checking that each
// lies within it.
func elements(p []byte, count int, leaf bool) ([]element, *errProblem) {
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, &errProblem{fmt.Sprintf("%d elements do not fit in %d bytes", count, len(p))}
	}
	ne := binary.NativeEndian
	out := make([]element, count)
	for i := range out {
		off := pageHeaderSize + i*elementSize
		el := p[off : off+elementSize]
		var pos, ksize, vsize uint64
		if leaf {
			out[i].flags = ne.Uint32(el)
			pos, ksize, vsize = uint64(ne.Uint32(el[4:])), uint64(ne.Uint32(el[8:])), uint64(ne.Uint32(el[12:]))
		} else {
			pos, ksize = uint64(ne.Uint32(el)), uint64(ne.Uint32(el[4:]))
			out[i].child = ne.Uint64(el[8:])
		}
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(p)) {
			return nil, &errProblem{fmt.Sprintf("element %d runs past the page", i)}
		}
		out[i].key = p[start : start+ksize]
		out[i].value = p[start+ksize : start+ksize+vsize]
	}
	return out, nil
}

// inOrder checks that the keys of elems increase and lie in [lo, hi).
func inOrder(elems []element, lo, hi []byte) string {
	for i, e := range elems {
		switch {
		case i == 0 && lo != nil && bytes.Compare(e.key, lo) < 0:
			return fmt.Sprintf("key %q below its parent's %q", e.key, lo)
		case i > 0 && bytes.Compare(elems[i-1].key, e.key) >= 0:
			return fmt.Sprintf("key %q not above the previous key %q", e.key, elems[i-1].key)
		case hi != nil && bytes.Compare(e.key, hi) >= 0:
			return fmt.Sprintf("key %q not below its parent's next key %q", e.key, hi)
		}
	}
	return ""
}

// freelist checks the freelist page and that every page is used by a
// tree or free, and none both.
func (c *checker) freelist() error {
	if c.meta.freelist == noFreelist {
		return nil
	}
	id := c.meta.freelist
	p, err := c.page(id, 0)
	if err != nil {
		return err
	}
	ne := binary.NativeEndian
	if flags := ne.Uint16(p[8:]); flags != freelistFlag {
		return problemf("freelist page %d: type %#x", id, flags)
	}
	count, ids := uint64(ne.Uint16(p[10:])), p[pageHeaderSize:]
	if count == maxFreelistSize {
		if len(ids) < 8 {
			return problemf("freelist page %d: short", id)
		}
		count, ids = ne.Uint64(ids), ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return problemf("freelist page %d: %d ids do not fit", id, count)
	}
	free := make([]bool, c.meta.hwm)
	for i := range count {
		pg := ne.Uint64(ids[i*8:])
		switch {
		case pg < 2 || pg >= c.meta.hwm:
			return problemf("freelist page %d: free page %d outside the file's %d pages", id, pg, c.meta.hwm)
		case free[pg]:
			return problemf("page %d: freed twice", pg)
		case c.used[pg]:
			return problemf("page %d: both used and free", pg)
		}
		free[pg] = true
	}
	for pg := uint64(2); pg < c.meta.hwm; pg++ {
		if !c.used[pg] && !free[pg] {
			return problemf("page %d: neither used nor free", pg)
		}
	}
	return nil
}
