package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// BenchmarkPublishOne times the tailer publishing a commit that changed
// one config, from the branch having moved to the revision being stored
// and handed to the hub: reading the ref, the new commit and the trees it
// changed, and appending the revision to the store. The commits are
// loose objects, as git commit writes them; the repository holds n
// compiled configs in 50 directories beside the changed one.
func BenchmarkPublishOne(b *testing.B) {
	for _, n := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("configs=%d", n), func(b *testing.B) {
			r, d := publishedLooseRepo(b, n, Config{})
			defer d.Close()
			ctx := context.Background()
			seen := r.parent.String()
			b.ReportAllocs()
			rev := int64(1)
			for b.Loop() {
				b.StopTimer()
				rev++
				r.change(fmt.Appendf(nil, "{\"seq\":%d}\n", rev))
				settle(b, d)
				b.StartTimer()
				var err error
				if seen, err = d.check(ctx, seen); err != nil {
					b.Fatal(err)
				}
			}
			if got := d.latest.Load(); got != rev {
				b.Fatalf("latest revision %d, want %d", got, rev)
			}
		})
	}
}

// BenchmarkCommitToWatcher times a change to one config, from the branch
// moving to its commit (the rename of the ref's lock file) to a watcher of
// the config reading the update, over HTTP on 127.0.0.1: the tailer woken
// by the file system notification, the publish (BenchmarkPublishOne) and
// the stream.
func BenchmarkCommitToWatcher(b *testing.B) {
	for _, n := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("configs=%d", n), func(b *testing.B) {
			r, d := publishedLooseRepo(b, n, Config{Poll: time.Hour, Heartbeat: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- d.Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					b.Error(err)
				}
				d.Close()
			}()
			c, err := wire.NewClient("http://"+ln.Addr().String(), "", nil)
			if err != nil {
				b.Fatal(err)
			}
			w, err := c.Watch(ctx, wire.WatchRequest{Configs: []string{hotDir + "/hot.json"}}, wire.WatchOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			next := func(want int64) {
				for {
					ev, err := w.Next()
					if err != nil {
						b.Fatal(err)
					}
					if ev.Type != wire.Heartbeat && ev.Revision >= want {
						if ev.Revision != want {
							b.Fatalf("revision %d, want %d", ev.Revision, want)
						}
						return
					}
				}
			}
			next(1) // the snapshot
			b.ReportAllocs()
			rev := int64(1)
			for b.Loop() {
				b.StopTimer()
				rev++
				r.lock(r.commit(fmt.Appendf(nil, "{\"seq\":%d}\n", rev)))
				settle(b, d)
				b.StartTimer()
				r.moveLocked()
				next(rev)
			}
		})
	}
}

// publishedLooseRepo returns newLooseRepo(n) and a daemon configured as
// cfg says, tailing its branch main, that published it as revision 1.
func publishedLooseRepo(b *testing.B, n int, cfg Config) (*looseRepo, *Daemon) {
	r := newLooseRepo(b, n)
	cfg.RepoPath, cfg.DataDir, cfg.Branch = r.dir, b.TempDir(), "main"
	d, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.check(context.Background(), ""); err != nil {
		d.Close()
		b.Fatal(err)
	}
	return r, d
}

// settle waits until d's store has written the last revision to its file
// (a read waits for it) and the page cache is on disk: each change is
// timed alone, not behind the writes of the one before or of its commit.
func settle(b *testing.B, d *Daemon) {
	if _, err := d.store.Get(context.Background(), hotDir+"/hot.json"); err != nil {
		b.Fatal(err)
	}
	syscall.Sync()
}

// looseRepo is a git work tree whose commits are written object by
// object, as loose objects, and whose branch main is moved as git
// update-ref moves it.
type looseRepo struct {
	tb     testing.TB
	dir    string
	st     storer.EncodedObjectStorer
	mat    []object.TreeEntry // the entries of repo.MaterializedDir but the changed directory
	parent plumbing.Hash
	when   time.Time
}

// hotDir is the directory of materialized configs holding the one config
// looseRepo.change changes: a raw JSON config, bench/hot.json.
const hotDir = "bench"

// newLooseRepo makes a repository of n compiled configs, svcNN/configNNNNN,
// recorded in the record of types, and the raw config bench/hot.json, on
// branch main.
func newLooseRepo(tb testing.TB, n int) *looseRepo {
	tb.Helper()
	dir := tb.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		tb.Fatal(err)
	}
	r := &looseRepo{tb: tb, dir: dir, st: g.Storer, when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	dirs := map[string][]object.TreeEntry{}
	types := map[string]string{}
	for i := range n {
		svc, name := fmt.Sprintf("svc%02d", i%50), fmt.Sprintf("config%05d", i)
		types[svc+"/"+name] = "bench.Config"
		blob := r.object(plumbing.BlobObject, fmt.Appendf(nil, "{\n  \"n\": %d,\n  \"name\": %q\n}\n", i, name))
		dirs[svc] = append(dirs[svc], object.TreeEntry{Name: name + ".json", Mode: filemode.Regular, Hash: blob})
	}
	for svc, entries := range dirs {
		r.mat = append(r.mat, object.TreeEntry{Name: svc, Mode: filemode.Dir, Hash: r.tree(entries)})
	}
	typesFile := strings.TrimPrefix(repo.TypesFile, repo.MaterializedDir+"/")
	r.mat = append(r.mat, object.TreeEntry{Name: typesFile, Mode: filemode.Regular, Hash: r.object(plumbing.BlobObject, repo.EncodeTypes(types))})
	r.change([]byte("{\"seq\":0}\n"))
	return r
}

// change commits data as bench/hot.json and moves branch main to the
// commit.
func (r *looseRepo) change(data []byte) {
	r.tb.Helper()
	r.move(r.commit(data))
}

// commit commits data as bench/hot.json, a child of the last commit.
func (r *looseRepo) commit(data []byte) plumbing.Hash {
	r.tb.Helper()
	hot := r.tree([]object.TreeEntry{{Name: "hot.json", Mode: filemode.Regular, Hash: r.object(plumbing.BlobObject, data)}})
	mat := r.tree(append(slices.Clone(r.mat), object.TreeEntry{Name: hotDir, Mode: filemode.Dir, Hash: hot}))
	root := r.tree([]object.TreeEntry{{Name: repo.MaterializedDir, Mode: filemode.Dir, Hash: mat}})
	r.when = r.when.Add(time.Minute)
	sig := object.Signature{Name: "t", Email: "t@example.com", When: r.when}
	c := &object.Commit{Author: sig, Committer: sig, Message: "change\n", TreeHash: root}
	if !r.parent.IsZero() {
		c.ParentHashes = []plumbing.Hash{r.parent}
	}
	obj := r.st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		r.tb.Fatal(err)
	}
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		r.tb.Fatal(err)
	}
	r.parent = h
	return h
}

// move moves branch main to commit h as git update-ref does.
func (r *looseRepo) move(h plumbing.Hash) {
	r.tb.Helper()
	r.lock(h)
	r.moveLocked()
}

// lock writes commit h to the lock file of branch main, as git
// update-ref does before it moves the branch.
func (r *looseRepo) lock(h plumbing.Hash) {
	r.tb.Helper()
	if err := os.WriteFile(r.ref()+".lock", []byte(h.String()+"\n"), 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// moveLocked moves branch main to the commit of its lock file: it renames
// the lock file over the ref.
func (r *looseRepo) moveLocked() {
	r.tb.Helper()
	if err := os.Rename(r.ref()+".lock", r.ref()); err != nil {
		r.tb.Fatal(err)
	}
}

// ref is the file of branch main.
func (r *looseRepo) ref() string { return filepath.Join(r.dir, ".git", "refs", "heads", "main") }

// object stores an object of type t holding data.
func (r *looseRepo) object(t plumbing.ObjectType, data []byte) plumbing.Hash {
	r.tb.Helper()
	obj := r.st.NewEncodedObject()
	obj.SetType(t)
	w, err := obj.Writer()
	if err != nil {
		r.tb.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		r.tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		r.tb.Fatal(err)
	}
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		r.tb.Fatal(err)
	}
	return h
}

// tree stores a tree of entries, sorted as git sorts them (a directory as
// if its name ended in a slash).
func (r *looseRepo) tree(entries []object.TreeEntry) plumbing.Hash {
	r.tb.Helper()
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	obj := r.st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		r.tb.Fatal(err)
	}
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		r.tb.Fatal(err)
	}
	return h
}
