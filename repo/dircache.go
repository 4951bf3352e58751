package repo

import (
	"container/list"
	"errors"
	"io/fs"
	"os"
	"sync"
)

// dirCache holds directories of one repository open as os.Root values, each
// checked not to be a link when opened, at most max of them at once (those
// in use may exceed it).
type dirCache struct {
	root *os.Root
	max  int

	mu     sync.Mutex
	m      map[string]*list.Element // of *openDir
	lru    list.List                // front: most recently used
	closed bool
}

type openDir struct {
	path string
	root *os.Root
	refs int
}

func newDirCache(root *os.Root, max int) *dirCache {
	return &dirCache{root: root, max: max, m: map[string]*list.Element{}}
}

var errClosed = errors.New("config repository closed")

// acquire returns the open directory at the repository path dir ("." is
// the root) and a function to call when done with it.
func (c *dirCache) acquire(dir string) (*os.Root, func(), error) {
	if dir == "." {
		return c.root, func() {}, nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, errClosed
	}
	if e, ok := c.m[dir]; ok {
		od := e.Value.(*openDir)
		od.refs++
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return od.root, c.releaser(od), nil
	}
	c.mu.Unlock()

	parentPath, base := splitPath(dir)
	parent, release, err := c.acquire(parentPath)
	if err != nil {
		return nil, nil, err
	}
	fi, err := lstatIn(parent, parentPath, base)
	if err != nil {
		release()
		return nil, nil, err
	}
	if !fi.IsDir() {
		release()
		return nil, nil, &fs.PathError{Op: "open", Path: dir, Err: errors.New("not a directory")}
	}
	if testHookChecked != nil {
		testHookChecked(dir)
	}
	d, err := parent.OpenRoot(base)
	release()
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: dir, Err: unwrapPathError(err)}
	}
	if got, err := d.Stat("."); err != nil || !os.SameFile(fi, got) {
		d.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: dir, Err: errChanged}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		d.Close()
		return nil, nil, errClosed
	}
	if e, ok := c.m[dir]; ok { // opened meanwhile by another caller
		d.Close()
		od := e.Value.(*openDir)
		od.refs++
		c.lru.MoveToFront(e)
		return od.root, c.releaser(od), nil
	}
	od := &openDir{path: dir, root: d, refs: 1}
	c.m[dir] = c.lru.PushFront(od)
	c.evict()
	return d, c.releaser(od), nil
}

func (c *dirCache) releaser(od *openDir) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			od.refs--
			c.evict()
		})
	}
}

// evict closes the least recently used directories not in use while more
// than max are open. c.mu is held.
func (c *dirCache) evict() {
	for e := c.lru.Back(); e != nil && c.lru.Len() > c.max; {
		prev := e.Prev()
		if od := e.Value.(*openDir); od.refs == 0 {
			od.root.Close()
			delete(c.m, od.path)
			c.lru.Remove(e)
		}
		e = prev
	}
}

func (c *dirCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for e := c.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*openDir).root.Close()
	}
	c.m = nil
	c.lru.Init()
	return c.root.Close()
}

// openDirs reports how many directories are held open (for tests).
func (c *dirCache) openDirs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
