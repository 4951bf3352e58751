package gitrepo

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// objectCacheBytes bounds the commits and trees an objects keeps, by
// their encoded size (decoded, they take two to three times as much).
const objectCacheBytes = 8 * cache.MiByte

// objects reads a repository's objects for History, the way the tailer
// reads a commit: the commits and trees read lately from a cache, decoded
// (a branch's last commit and the trees it shares with the next are read
// again at once), loose objects, which git commit writes, straight from
// their files, each checked against its hash, and the others (packed, or
// in an alternate object store) through go-git, which is told to look for
// new pack files when it does not find one. go-git opens a loose
// object's file, walking its path component by component, before it looks
// in its own cache; a commit of one config read that way costs more than
// appending it to the store.
type objects struct {
	dir   string // the objects directory
	st    storer.EncodedObjectStorer
	cache *cache.ObjectLRU // commits and trees
	// refresh makes st see the pack files written since, and reports
	// whether there were any.
	refresh func() bool
	zr      io.ReadCloser // inflates loose objects; nil until the first
}

func newObjects(dir string, st storer.EncodedObjectStorer, refresh func() bool) *objects {
	return &objects{dir: dir, st: st, cache: cache.NewObjectLRU(objectCacheBytes), refresh: refresh}
}

// commit returns commit h.
func (o *objects) commit(h plumbing.Hash) (*object.Commit, error) {
	return decoded(o, h, plumbing.CommitObject, object.DecodeCommit)
}

// tree returns tree h.
func (o *objects) tree(h plumbing.Hash) (*object.Tree, error) {
	return decoded(o, h, plumbing.TreeObject, object.DecodeTree)
}

// blob returns the data of blob h; blobs are not cached.
func (o *objects) blob(h plumbing.Hash) ([]byte, error) {
	data, err := o.loose(h, plumbing.BlobObject)
	if !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	obj, err := o.stored(h, plumbing.BlobObject)
	if err != nil {
		return nil, err
	}
	return contents(obj)
}

// blobData returns the data of blob h as go-git reads it.
func blobData(r *Repo, h plumbing.Hash) ([]byte, error) {
	obj, err := r.git.Storer.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, err
	}
	return contents(obj)
}

// contents reads obj's content whole.
func contents(obj plumbing.EncodedObject) ([]byte, error) {
	r, err := obj.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// decoded returns object h, of type t, as decode decodes it: from the
// cache, or read, decoded and kept there. Callers share what it returns,
// and must not change it.
func decoded[T any](o *objects, h plumbing.Hash, t plumbing.ObjectType, decode func(storer.EncodedObjectStorer, plumbing.EncodedObject) (T, error)) (T, error) {
	var none T
	if obj, ok := o.cache.Get(h); ok {
		c := obj.(*cachedObject)
		if v, ok := c.value.(T); ok && c.Type() == t {
			return v, nil
		}
		return none, fmt.Errorf("object %s: %w: a %s, not a %s", h, plumbing.ErrObjectNotFound, c.Type(), t)
	}
	var obj plumbing.EncodedObject
	data, err := o.loose(h, t)
	switch {
	case err == nil:
		m := &plumbing.MemoryObject{}
		m.SetType(t)
		m.Write(data) // sets its size
		obj = m
	case errors.Is(err, fs.ErrNotExist):
		if obj, err = o.stored(h, t); err != nil {
			return none, err
		}
	default:
		return none, err
	}
	c := &cachedObject{EncodedObject: obj, h: h}
	v, err := decode(o.st, c)
	if err != nil {
		return none, fmt.Errorf("object %s: %w", h, err)
	}
	c.value = v
	o.cache.Put(c)
	return v, nil
}

// stored reads object h, of type t, through go-git: from a pack or an
// alternate object store. If go-git fails (the object is in a pack it
// has not indexed, or in one a gc removed), it tries again once the packs
// changed.
func (o *objects) stored(h plumbing.Hash, t plumbing.ObjectType) (plumbing.EncodedObject, error) {
	obj, err := o.st.EncodedObject(t, h)
	if err != nil && o.refresh() {
		obj, err = o.st.EncodedObject(t, h)
	}
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", h, err)
	}
	return obj, nil
}

// loose returns the data of the loose object h, which must be of type t,
// read whole and checked against its hash; an error wraps fs.ErrNotExist
// when there is no such loose object. Its data grows as it is read, not
// as its header announces.
func (o *objects) loose(h plumbing.Hash, t plumbing.ObjectType) (data []byte, err error) {
	hex := h.String()
	raw, err := readFile(filepath.Join(o.dir, hex[:2], hex[2:]))
	if err != nil {
		return nil, err
	}
	typ, data, sum, err := o.inflate(raw)
	switch {
	case err != nil:
	case typ != t:
		err = fmt.Errorf("%w: a %s, not a %s", plumbing.ErrObjectNotFound, typ, t)
	case sum != h:
		err = fmt.Errorf("its content hashes to %s", sum)
	}
	if err != nil {
		return nil, fmt.Errorf("loose object %s: %w", h, err)
	}
	return data, nil
}

// maxHeader bounds the header of a loose object: its type, a space, its
// size in decimal and a NUL byte.
const maxHeader = 32

// inflate returns the type, the content and the hash of the loose object
// whose file holds raw: the zlib-compressed header ("TYPE SIZE", NUL) and
// content, whose SHA-1 is the object's hash. It reuses one zlib reader,
// reset for each object: go-git's pooled readers copy a 32 KiB
// dictionary into their window at each reset, which costs more than
// inflating a commit.
func (o *objects) inflate(raw []byte) (plumbing.ObjectType, []byte, plumbing.Hash, error) {
	fail := func(err error) (plumbing.ObjectType, []byte, plumbing.Hash, error) {
		return 0, nil, plumbing.ZeroHash, err
	}
	var err error
	if o.zr == nil {
		o.zr, err = zlib.NewReader(bytes.NewReader(raw))
	} else {
		err = o.zr.(zlib.Resetter).Reset(bytes.NewReader(raw), nil)
	}
	if err != nil {
		return fail(err)
	}
	var head []byte
	for b := make([]byte, 1); ; {
		if _, err := io.ReadFull(o.zr, b); err != nil {
			return fail(fmt.Errorf("reading its header: %w", err))
		}
		if head = append(head, b[0]); b[0] == 0 {
			break
		}
		if len(head) > maxHeader {
			return fail(fmt.Errorf("a header longer than %d bytes", maxHeader))
		}
	}
	name, digits, _ := strings.Cut(string(head[:len(head)-1]), " ")
	typ, err := plumbing.ParseObjectType(name)
	if err != nil {
		return fail(fmt.Errorf("its header %q: %w", head, err))
	}
	size, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || size < 0 {
		return fail(fmt.Errorf("its header %q: not a size", head))
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size, 1<<20)))
	if _, err := buf.ReadFrom(io.LimitReader(o.zr, size+1)); err != nil {
		return fail(err)
	}
	if int64(buf.Len()) != size {
		return fail(fmt.Errorf("%d bytes where its header says %d", buf.Len(), size))
	}
	sum := sha1.New()
	sum.Write(head)
	sum.Write(buf.Bytes())
	var h plumbing.Hash
	sum.Sum(h[:0])
	return typ, buf.Bytes(), h, nil
}

// cachedObject is an object of the cache: its encoded form, which the
// cache counts, with its hash (a plumbing.MemoryObject would hash its
// content again each time it is asked) and its decoded value.
type cachedObject struct {
	plumbing.EncodedObject
	h     plumbing.Hash
	value any // *object.Commit or *object.Tree
}

func (o *cachedObject) Hash() plumbing.Hash { return o.h }
