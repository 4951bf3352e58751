package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

// TestWritesSurvivePowerLoss checks what a power loss leaves of the
// cache, which a killed process (TestLoadAfterKilledWriter) cannot show:
// the page cache outlives the process. It drives the cache as the agent
// does (every config of a revision written, then state.json; tombstones
// removed, then state.json) through a file system that performs every
// operation and keeps a model of what would survive it, under the
// weakest assumptions: a file's content as of its last fsync (nothing,
// if never synced), a directory's entries as of its last fsync
// (creations, renames, removals and mkdirs since may be lost). Changes
// since the last fsync may also have reached the disk: the test checks
// the image with none of them, with those of each file or directory
// alone, and with all of them. It checks at every fsync and after every
// call: an image changes only at an fsync, or (changes not synced in
// place) at an operation the cache follows with an fsync of the same
// directory, or at the removal of a data file that ends a call; what
// the test demands changes only when a call returns. On each image, Load
// finds no damage; every config holds the version its last returned
// Write wrote or the one being written, whole, and is missing only if
// Remove removed it or is removing it; state.json holds the state last
// written or the one being written, and no config holds a revision
// older than the one it had at that state's revision; and Load leaves
// only the files of the versions it found. (Not parallel: it replaces
// fsys.)
func TestWritesSurvivePowerLoss(t *testing.T) {
	// The model holds the directory the cache is made in: a power loss
	// must not lose the cache directory itself.
	root := t.TempDir()
	dir := filepath.Join(root, "cache", "agent")
	img := t.TempDir()
	m := &powerLossFS{t: t, root: root, top: newModelDir()}
	w := &powerLossWant{held: map[string]ConfigVersion{}, asOf: map[int64]map[string]ConfigVersion{0: {}}}
	images := 0
	check := func(when string) {
		t.Helper()
		images += w.check(t, m, img, when)
	}
	m.onSync = func(what string) { check(what + ", " + w.doing) }
	fsys = m
	defer func() { fsys = osFS{} }()

	write := func(cv ConfigVersion) {
		t.Helper()
		w.doing = fmt.Sprintf("while writing %s at revision %d", cv.Name, cv.Revision)
		w.writing = &cv
		if err := Write(dir, cv); err != nil {
			t.Fatal(err)
		}
		w.held[cv.Name], w.writing = cv, nil
		check(fmt.Sprintf("after writing %s at revision %d", cv.Name, cv.Revision))
		m.matchesDisk()
	}
	writeState := func(rev int64) {
		t.Helper()
		st := State{Revision: rev, Commit: fmt.Sprint("c", rev), Store: "store-1", Configs: slices.Sorted(maps.Keys(w.held))}
		w.doing = fmt.Sprintf("while writing the state of revision %d", rev)
		w.newState = &st
		if err := WriteState(dir, st); err != nil {
			t.Fatal(err)
		}
		w.state, w.newState = st, nil
		check(fmt.Sprintf("after writing the state of revision %d", rev))
		m.matchesDisk()
	}
	revision := func(rev int64, cvs ...ConfigVersion) {
		t.Helper()
		w.asOf[rev] = maps.Clone(w.asOf[rev-1])
		for i := range cvs {
			cvs[i].Revision, cvs[i].Commit = rev, fmt.Sprint("c", rev)
			w.asOf[rev][cvs[i].Name] = cvs[i]
		}
		for _, cv := range cvs {
			write(cv)
		}
		writeState(rev)
	}
	remove := func(name string) {
		t.Helper()
		w.doing = "while removing " + name
		w.removing = name
		if err := Remove(dir, name); err != nil {
			t.Fatal(err)
		}
		delete(w.held, name)
		w.removing = ""
		check("after removing " + name)
		m.matchesDisk()
	}
	job := func(name, data string) ConfigVersion {
		return ConfigVersion{Name: name, Type: "Job", Compiled: true, Data: []byte(data)}
	}
	raw := func(name, data string) ConfigVersion { return ConfigVersion{Name: name, Data: []byte(data)} }
	deleted := func(name string) ConfigVersion { return ConfigVersion{Name: name, Deleted: true} }

	w.doing = "while making the cache directory"
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	check("after making the cache directory")
	m.matchesDisk()
	revision(1, raw("top", "top 1\n"), job("a/b/c", `{"v": 1}`+"\n"), raw("a/x", "x 1\n"), raw("empty", ""))
	revision(2, job("a/b/c", `{"v": 2}`+"\n"), deleted("top"), raw("a/b/d", "d 2\n"), raw("a", "a 2\n"))
	// a/x's data as at revision 1: a new file renamed over its data file.
	revision(3, raw("a/x", "x 1\n"), job("e/f/g/h", `{"h": 3}`+"\n"), deleted("a/b/c"))
	revision(4, raw("top", "top 4\n"), raw("a/b/d", "d 4\n"), raw("e/f/g/i", "i 4\n"))
	// The agent drops a tombstone from its subscription: Remove, then
	// the state without it.
	remove("a/b/c")
	writeState(4)
	// A config with data removed, then a write beside it: its data file's
	// removal, made durable by that write, must not come before its
	// metadata's.
	remove("e/f/g/h")
	revision(5, raw("e/f/g/i", "i 5\n"), job("a/b/c", `{"v": 5}`+"\n"), deleted("a/x"))
	if images < 200 {
		t.Errorf("%d images checked, want 200 or more", images)
	}
	t.Logf("%d images checked", images)
}

// powerLossWant is what a power loss must leave, as the test drives the
// cache.
type powerLossWant struct {
	held     map[string]ConfigVersion           // the versions whose Write returned, of the configs not removed since
	writing  *ConfigVersion                     // the version a Write in progress writes
	removing string                             // the config a Remove in progress removes
	state    State                              // the state whose WriteState returned last
	newState *State                             // the state a WriteState in progress writes
	asOf     map[int64]map[string]ConfigVersion // the configs' versions as of each revision
	doing    string                             // the call in progress, for messages
}

// check writes what a power loss could leave now into img and checks
// it, once for each image: the one where every change not synced is
// lost, one for each file or directory with changes not synced where
// those (a write-back got there first) and no others are in place, and
// one with them all in place. It returns how many images it checked.
func (w *powerLossWant) check(t *testing.T, m *powerLossFS, img, when string) int {
	t.Helper()
	pending := m.pending()
	variants := []map[*modelNode]bool{nil}
	for _, p := range pending {
		variants = append(variants, map[*modelNode]bool{p.n: true})
	}
	if len(pending) > 1 {
		all := map[*modelNode]bool{}
		for _, p := range pending {
			all[p.n] = true
		}
		variants = append(variants, all)
	}
	for i, landed := range variants {
		switch {
		case i == 0:
			w.checkImage(t, m, img, landed, when)
		case len(landed) == 1:
			w.checkImage(t, m, img, landed, when+", with the changes to "+pending[i-1].path+" since its last sync in place")
		default:
			w.checkImage(t, m, img, landed, when+", with every change since the last syncs in place")
		}
	}
	return len(variants)
}

// checkImage writes what a power loss would leave now into img, with
// the changes not synced of the nodes of landed in place, and checks it.
func (w *powerLossWant) checkImage(t *testing.T, m *powerLossFS, img string, landed map[*modelNode]bool, when string) {
	t.Helper()
	m.writeImage(img, landed)
	// The image of the cache directory, which a power loss may have lost.
	cache := filepath.Join(img, "cache", "agent")
	files := func() []string {
		if _, err := os.Stat(cache); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return cacheFiles(t, cache)
	}
	left := files()
	_, err := os.Stat(filepath.Join(cache, "state.json"))
	hasState := err == nil
	ld, err := Load(cache)
	if err != nil {
		t.Fatalf("power loss %s: Load: %v (files %q)", when, err, left)
	}
	if len(ld.Damaged) != 0 || ld.StateDamaged {
		t.Fatalf("power loss %s: Load found damage %+v (files %q)", when, ld.Damaged, left)
	}
	loaded := map[string]ConfigVersion{}
	for _, cv := range ld.Configs {
		loaded[cv.Name] = cv
	}
	names := slices.Collect(maps.Keys(loaded))
	names = slices.AppendSeq(names, maps.Keys(w.held))
	if w.writing != nil {
		names = append(names, w.writing.Name)
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		var ok []ConfigVersion
		held, isHeld := w.held[name]
		if isHeld {
			ok = append(ok, held)
		}
		if w.writing != nil && w.writing.Name == name {
			ok = append(ok, *w.writing)
		}
		got, present := loaded[name]
		switch {
		case !present && isHeld && w.removing != name:
			t.Fatalf("power loss %s: %s is missing, but Write returned for revision %d (files %q)", when, name, held.Revision, left)
		case present && len(ok) == 0:
			t.Fatalf("power loss %s: %s is there at revision %d, but was removed (files %q)", when, name, got.Revision, left)
		case present && !slices.ContainsFunc(ok, func(cv ConfigVersion) bool { return gocmp.Equal(cv, got) }):
			t.Fatalf("power loss %s: %s is %+v; want one of %+v (files %q)", when, name, got, ok, left)
		}
	}
	ok := []State{w.state}
	if w.newState != nil {
		ok = append(ok, *w.newState)
	}
	if !slices.ContainsFunc(ok, func(st State) bool { return gocmp.Equal(st, ld.State, equateEmptyConfigs) }) {
		t.Fatalf("power loss %s: state.json holds %+v; want one of %+v (files %q)", when, ld.State, ok, left)
	}
	for name, cv := range w.asOf[ld.State.Revision] {
		if got, present := loaded[name]; present && got.Revision < cv.Revision {
			t.Fatalf("power loss %s: state.json names revision %d, but %s holds revision %d, not %d (files %q)", when, ld.State.Revision, name, got.Revision, cv.Revision, left)
		}
	}
	var want []string
	if hasState {
		want = append(want, "state.json")
	}
	for _, cv := range ld.Configs {
		want = append(want, "meta/"+cv.Name+".json")
		if !cv.Deleted {
			want = append(want, "data/"+cv.Name+dataSuffix+checksum(cv.Data))
		}
	}
	slices.Sort(want)
	if got := files(); !slices.Equal(got, want) {
		t.Fatalf("power loss %s: files after Load %q, want %q (before Load: %q)", when, got, want, left)
	}
}

// equateEmptyConfigs takes no subscription written (nil) and an empty
// one read back (empty) as the same.
var equateEmptyConfigs = gocmp.Transformer("configs", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

// powerLossFS is a fileSystem that performs every operation and keeps a
// model of the directory root: of each file its content, as it is and as
// at its last sync, and of each directory its entries, as they are and
// as at its last sync. Operations outside root are performed only (Load
// of an image goes through it too).
type powerLossFS struct {
	t      *testing.T
	root   string
	top    *modelNode
	onSync func(what string) // called after every sync in root
}

// modelNode is a file or a directory of the model.
type modelNode struct {
	dir     bool
	data    []byte                // a file's content
	synced  []byte                // a file's content at its last sync
	entries map[string]*modelNode // a directory's entries
	durable map[string]*modelNode // a directory's entries at its last sync
}

func newModelDir() *modelNode {
	return &modelNode{dir: true, entries: map[string]*modelNode{}, durable: map[string]*modelNode{}}
}

// elems returns the path of name under root, split, and whether name is
// in root at all; root itself is no elements.
func (m *powerLossFS) elems(name string) ([]string, bool) {
	rel, err := filepath.Rel(m.root, name)
	switch {
	case err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)):
		return nil, false
	case rel == ".":
		return nil, true
	}
	return strings.Split(rel, string(filepath.Separator)), true
}

// node returns the node at elems, failing the test if the model lacks it.
func (m *powerLossFS) node(elems []string) *modelNode {
	n := m.top
	for i, e := range elems {
		if !n.dir || n.entries[e] == nil {
			m.t.Fatalf("power-loss model: no %s", filepath.Join(elems[:i+1]...))
		}
		n = n.entries[e]
	}
	return n
}

// parent returns the directory holding the entry at elems, and the
// entry's name.
func (m *powerLossFS) parent(elems []string) (*modelNode, string) {
	if len(elems) == 0 {
		m.t.Fatalf("power-loss model: an entry of the cache directory's parent changed")
	}
	p := m.node(elems[:len(elems)-1])
	if !p.dir {
		m.t.Fatalf("power-loss model: %s is not a directory", filepath.Join(elems[:len(elems)-1]...))
	}
	return p, elems[len(elems)-1]
}

func (m *powerLossFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := osFS{}.OpenFile(name, flag, perm)
	elems, in := m.elems(name)
	if err != nil || !in {
		return f, err
	}
	if flag&(os.O_CREATE|os.O_EXCL) != os.O_CREATE|os.O_EXCL {
		m.t.Fatalf("power-loss model: OpenFile(%s, %#x): the model only creates new files", name, flag)
	}
	p, base := m.parent(elems)
	n := &modelNode{}
	p.entries[base] = n
	return &modelFile{f, m, n, name}, nil
}

func (m *powerLossFS) Open(name string) (file, error) {
	f, err := osFS{}.Open(name)
	elems, in := m.elems(name)
	if err != nil || !in {
		return f, err
	}
	return &modelFile{f, m, m.node(elems), name}, nil
}

func (m *powerLossFS) Rename(oldpath, newpath string) error {
	err := osFS{}.Rename(oldpath, newpath)
	from, in := m.elems(oldpath)
	to, toIn := m.elems(newpath)
	if in != toIn {
		m.t.Fatalf("power-loss model: Rename(%s, %s) crosses the cache directory", oldpath, newpath)
	}
	if err != nil || !in {
		return err
	}
	fp, fb := m.parent(from)
	n := m.node(from)
	delete(fp.entries, fb)
	tp, tb := m.parent(to)
	tp.entries[tb] = n
	return nil
}

func (m *powerLossFS) Remove(name string) error {
	err := osFS{}.Remove(name)
	elems, in := m.elems(name)
	if err != nil || !in {
		return err
	}
	p, base := m.parent(elems)
	delete(p.entries, base)
	return nil
}

func (m *powerLossFS) Mkdir(name string, perm fs.FileMode) error {
	err := osFS{}.Mkdir(name, perm)
	elems, in := m.elems(name)
	if err != nil || !in {
		return err
	}
	p, base := m.parent(elems)
	p.entries[base] = newModelDir()
	return nil
}

// writeImage makes dir hold what a power loss would leave of root: every
// file and directory as at its last sync, but those of landed as they
// are. It writes only what differs from what dir holds (an image differs
// from the one before in a file or two), which leaves Load the same names
// and bytes as a directory written afresh, at a fraction of the cost.
func (m *powerLossFS) writeImage(dir string, landed map[*modelNode]bool) {
	m.t.Helper()
	want := m.tree(func(n *modelNode) bool { return landed[n] })
	have := diskTree(m.t, dir)
	for _, p := range slices.Backward(slices.Sorted(maps.Keys(have))) {
		if _, ok := want[p]; !ok {
			if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
				m.t.Fatal(err)
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		data, had := have[p]
		var err error
		switch {
		case had && data == want[p]:
		case strings.HasSuffix(p, "/"):
			err = os.Mkdir(filepath.Join(dir, p), 0o755)
		default:
			err = os.WriteFile(filepath.Join(dir, p), []byte(want[p]), 0o644)
		}
		if err != nil {
			m.t.Fatal(err)
		}
	}
	if diff := gocmp.Diff(want, diskTree(m.t, dir)); diff != "" {
		m.t.Fatalf("power-loss model: the image differs from the model (-model +image):\n%s", diff)
	}
}

// tree returns the model's files and directories as diskTree gives
// those of a directory: each node as it is if current says so, else as
// at its last sync.
func (m *powerLossFS) tree(current func(*modelNode) bool) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, n *modelNode)
	walk = func(prefix string, n *modelNode) {
		entries := n.durable
		if current(n) {
			entries = n.entries
		}
		for name, c := range entries {
			switch {
			case c.dir:
				out[prefix+name+"/"] = ""
				walk(prefix+name+"/", c)
			case current(c):
				out[prefix+name] = string(c.data)
			default:
				out[prefix+name] = string(c.synced)
			}
		}
	}
	walk("", m.top)
	return out
}

// diskTree returns the files under dir, by path relative to it with
// slashes, and their content, and its directories, by path with a slash
// at the end.
func diskTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			tree[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		tree[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// pendingNode is a file or directory with changes since its last sync.
type pendingNode struct {
	n    *modelNode
	path string
}

// pending returns the files and directories, as they are or as at the
// last syncs, that changed since their last sync, sorted by path.
func (m *powerLossFS) pending() []pendingNode {
	var out []pendingNode
	seen := map[*modelNode]bool{}
	var walk func(path string, n *modelNode)
	walk = func(path string, n *modelNode) {
		if seen[n] {
			return
		}
		seen[n] = true
		if n.dir && !maps.Equal(n.entries, n.durable) || !n.dir && !bytes.Equal(n.data, n.synced) {
			out = append(out, pendingNode{n, path})
		}
		for _, entries := range []map[string]*modelNode{n.entries, n.durable} {
			for name, c := range entries {
				walk(strings.TrimPrefix(path+"/"+name, "./"), c)
			}
		}
	}
	walk(".", m.top)
	slices.SortFunc(out, func(a, b pendingNode) int { return strings.Compare(a.path, b.path) })
	return out
}

// matchesDisk checks that the model's files and directories, as they
// are, are those on disk: every change to the cache went through fsys.
func (m *powerLossFS) matchesDisk() {
	m.t.Helper()
	model := m.tree(func(*modelNode) bool { return true })
	if diff := gocmp.Diff(model, diskTree(m.t, m.root)); diff != "" {
		m.t.Fatalf("power-loss model: the model differs from the disk (-model +disk):\n%s", diff)
	}
}

// modelFile is a file or directory of the model, open.
type modelFile struct {
	file
	m    *powerLossFS
	n    *modelNode
	path string
}

func (f *modelFile) Write(b []byte) (int, error) {
	n, err := f.file.Write(b)
	f.n.data = append(f.n.data, b[:n]...)
	return n, err
}

func (f *modelFile) Sync() error {
	if err := f.file.Sync(); err != nil {
		return err
	}
	rel, _ := filepath.Rel(f.m.root, f.path)
	what := "file " + filepath.ToSlash(rel)
	switch {
	case f.n.dir:
		f.n.durable = maps.Clone(f.n.entries)
		what = "directory " + filepath.ToSlash(rel)
		if rel == "." {
			what = "the directory the cache is made in"
		}
	default:
		f.n.synced = slices.Clone(f.n.data)
	}
	f.m.onSync("at the sync of " + what)
	return nil
}
