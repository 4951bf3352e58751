package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cfg-dev/cfg/gitrepo"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/store"
)

// tail publishes the tailed branch until ctx is done: at once, whenever a
// file system notification says a ref may have moved, and every Poll.
func (d *Daemon) tail(ctx context.Context) {
	refs := d.watchRefs()
	defer refs.close()
	poll := time.NewTicker(d.cfg.Poll)
	defer poll.Stop()
	var seen, lastErr string
	for {
		head, err := d.check(ctx, seen)
		switch {
		case err == nil:
			seen, lastErr = head, ""
		case ctx.Err() != nil:
			return
		default:
			// Not healthy while publishing fails (a full disk, a damaged
			// store, a repository it cannot read), until it works again.
			d.reason.Store(err.Error())
			d.ready.Store(false)
			if !errors.Is(err, gitrepo.ErrNoCommits) {
				d.metrics.tailerErrors.Inc()
			}
			if err.Error() != lastErr { // log each new problem once
				d.log.Error("tailing", "branch", d.cfg.Branch, "err", err)
				lastErr = err.Error()
			}
		}
		if !refs.wait(ctx, poll.C) {
			return
		}
	}
}

// refWatch is the file system notifications of the files where git keeps
// a branch head (gitrepo.History.BranchFiles): its ref file and
// packed-refs, each watched in its directory. The tailer reads them itself, rather than
// through a goroutine of its own, so that a branch moving wakes it after
// one hand-off, not two.
type refWatch struct {
	w           *fsnotify.Watcher // nil: polling only
	ref, packed string            // the files whose notifications count
	log         *slog.Logger
}

// watchRefs watches the directories of the files where git keeps the
// branch's head. Notifications are unavailable if it cannot watch either;
// polling still works.
func (d *Daemon) watchRefs() *refWatch {
	rw := &refWatch{log: d.log}
	rw.ref, rw.packed = d.hist.BranchFiles(d.cfg.Branch)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("watching refs: polling only", "err", err)
		return &refWatch{}
	}
	dirs := []string{filepath.Dir(rw.packed)}
	if rw.ref != "" {
		dirs = append(dirs, filepath.Dir(rw.ref))
	}
	added := 0
	for _, dir := range dirs {
		if err := w.Add(dir); err != nil {
			d.log.Debug("watching refs", "dir", dir, "err", err)
			continue
		}
		added++
	}
	if added == 0 {
		w.Close()
		return &refWatch{}
	}
	rw.w = w
	return rw
}

// wait waits until a notification says the branch head may have moved (a
// change of its ref file or of packed-refs; those of git's lock files, its
// index and the rest of the git directory are passed over), or one may
// have been lost (the kernel's queue overflowed), or tick ticks. It
// returns false once ctx is done.
func (rw *refWatch) wait(ctx context.Context, tick <-chan time.Time) bool {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if rw.w != nil {
		events, errs = rw.w.Events, rw.w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			return true
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Name == rw.ref || ev.Name == rw.packed {
				return true
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			rw.log.Debug("watching refs", "err", err)
			return true
		}
	}
}

// close stops watching.
func (rw *refWatch) close() {
	if rw.w != nil {
		rw.w.Close()
	}
}

// check publishes the branch head if it is not seen, and returns it.
func (d *Daemon) check(ctx context.Context, seen string) (string, error) {
	head, err := d.hist.BranchHead(d.cfg.Branch)
	if err != nil {
		return "", err
	}
	if head == seen {
		return head, nil
	}
	if err := d.publishUpTo(ctx, head); err != nil {
		return "", err
	}
	d.compact(ctx)
	d.ready.Store(true)
	return head, nil
}

// publishUpTo publishes one revision for each first-parent commit up to
// head, after the commit of the latest revision, that changed materialized
// files. An empty store gets a first revision holding every materialized
// file at head.
func (d *Daemon) publishUpTo(ctx context.Context, head string) error {
	latest, err := d.store.Latest(ctx)
	if err != nil {
		return err
	}
	if latest.Number == 0 {
		// Every file of the head, read one at a time as it is stored.
		files := func(yield func(gitrepo.File, error) bool) {
			err := d.hist.WalkFiles(head, repo.MaterializedDir, func(f gitrepo.File) error {
				if !yield(f, nil) {
					return errStopped
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStopped) {
				yield(gitrepo.File{}, err)
			}
		}
		// Added files only: naming them reads nothing from the store,
		// which Append is writing.
		_, err = d.publish(ctx, 1, head, d.distributed(ctx, head, files))
		return err
	}
	if latest.Commit == head {
		return nil
	}
	if d.cluster != nil {
		// Another daemon may have published from a repository ahead of
		// this one's: wait for this one to catch up rather than take
		// its branch for rewritten.
		if _, err := d.hist.CommitInfo(latest.Commit); err != nil {
			return fmt.Errorf("the published commit %.12s is not in the repository (%v): waiting for the repository to have it", latest.Commit, err)
		}
		if _, err := d.hist.FirstParentsSince(head, latest.Commit); err == nil {
			return fmt.Errorf("branch %q is at %.12s, behind the published commit %.12s: waiting for the repository to catch up", d.cfg.Branch, head, latest.Commit)
		}
	}
	commits, err := d.hist.FirstParentsSince(latest.Commit, head)
	if errors.Is(err, gitrepo.ErrNotAncestor) {
		return d.resync(ctx, latest, head)
	}
	if err != nil {
		return err
	}
	n := latest.Number + 1
	for _, c := range commits {
		files, err := d.hist.CommitChanges(c, repo.MaterializedDir)
		if err != nil {
			return err
		}
		configs, err := collect(d.distributed(ctx, c, fileSeq(files)))
		if err != nil {
			return err
		}
		published, err := d.publish(ctx, n, c, store.Entries(configs))
		if err != nil {
			return err
		}
		if published {
			n++
		}
	}
	return nil
}

// resync publishes, when the branch was rewritten and no longer holds the
// latest revision's commit, one revision that brings every config to its
// state at head.
func (d *Daemon) resync(ctx context.Context, latest store.Revision, head string) error {
	d.log.Warn("branch rewritten: publishing the differences with its head", "branch", d.cfg.Branch, "published", latest.Commit, "head", head)
	// What the store holds, by a hash of the data rather than the data.
	type held struct {
		compiled bool
		sum      [sha256.Size]byte
	}
	current := map[string]held{}
	_, err := d.store.Snapshot(ctx, store.All(), func(c store.ConfigVersion) error {
		current[c.Name] = held{c.Compiled, sha256.Sum256(c.Data)}
		return nil
	})
	if err != nil {
		return err
	}
	// The head's files, read one at a time: only those that differ are
	// kept.
	var changes []gitrepo.File
	atHead := map[string]bool{}
	types := d.types(head)
	err = d.hist.WalkFiles(head, repo.MaterializedDir, func(f gitrepo.File) error {
		name, compiled, ok := d.configName(ctx, f, types)
		if !ok {
			return nil
		}
		atHead[name] = true
		if c, ok := current[name]; !ok || c.compiled != compiled || c.sum != sha256.Sum256(f.Data) {
			changes = append(changes, f)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(changes, func(a, b gitrepo.File) int { return strings.Compare(a.Path, b.Path) })
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if !atHead[name] {
			p := repo.MaterializedDir + "/" + name
			if current[name].compiled {
				p += ".json"
			}
			changes = append(changes, gitrepo.File{Path: p, Kind: gitrepo.Deleted})
		}
	}
	configs, err := collect(d.distributed(ctx, head, fileSeq(changes)))
	if err != nil {
		return err
	}
	_, err = d.publish(ctx, latest.Number+1, head, store.Entries(configs))
	return err
}

// errStopped stops a walk whose consumer stopped.
var errStopped = errors.New("stopped")

// hubBytes is the most config data of a revision that the hub holds for
// the watch streams: the configs of a revision that changed more (the
// first, which holds every config) are read by each stream from the store,
// as it writes them.
const hubBytes = 4 << 20

// fileSeq yields files.
func fileSeq(files []gitrepo.File) iter.Seq2[gitrepo.File, error] {
	return func(yield func(gitrepo.File, error) bool) {
		for _, f := range files {
			if !yield(f, nil) {
				return
			}
		}
	}
}

// collect returns what configs yields, or its error.
func collect(configs iter.Seq2[store.ConfigVersion, error]) ([]store.ConfigVersion, error) {
	var out []store.ConfigVersion
	for c, err := range configs {
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// distributed yields the configs that the materialized files of commit
// give, as files yields them; files that are not distributed configs are
// left out. Naming a deleted file may read the store (configName).
func (d *Daemon) distributed(ctx context.Context, commit string, files iter.Seq2[gitrepo.File, error]) iter.Seq2[store.ConfigVersion, error] {
	return func(yield func(store.ConfigVersion, error) bool) {
		types := d.types(commit)
		seen := map[string]string{}
		for f, err := range files {
			if err != nil {
				yield(store.ConfigVersion{}, err)
				return
			}
			name, compiled, ok := d.configName(ctx, f, types)
			if !ok {
				continue
			}
			if err := repo.CheckName(name); err != nil {
				d.log.Warn("not distributing", "path", f.Path, "commit", commit, "err", err)
				continue
			}
			if other, dup := seen[name]; dup {
				d.log.Warn("not distributing: two files give one config name", "path", f.Path, "other", other, "name", name, "commit", commit)
				continue
			}
			seen[name] = f.Path
			cv := store.ConfigVersion{Name: name, Compiled: compiled, Deleted: f.Kind == gitrepo.Deleted, Data: f.Data}
			if compiled && !cv.Deleted {
				cv.Type = types[name]
			}
			if !yield(cv, nil) {
				return
			}
		}
	}
}

// publish appends revision n of commit holding configs, and broadcasts
// it; nothing is published if configs yields none. It reports whether it
// published. The configs go to the store as configs yields them:
// publishing holds at most hubBytes of their data for the hub, and the
// store its batch, whatever the revision holds.
func (d *Daemon) publish(ctx context.Context, n int64, commit string, configs iter.Seq2[store.ConfigVersion, error]) (bool, error) {
	r := &published{Revision: store.Revision{Number: n, Commit: commit, Time: time.Now().UTC()}}
	next, stop := iter.Pull2(configs)
	defer stop()
	c, err, ok := next()
	if !ok {
		return false, nil // no revision without a config
	}
	if err != nil {
		return false, fmt.Errorf("publishing commit %.12s: %w", commit, err)
	}
	// What Append stores, kept for the hub while it comes to no more
	// than hubBytes; held is -1 once it came to more.
	var held int64
	kept := func(yield func(store.ConfigVersion, error) bool) {
		for ; ok; c, err, ok = next() {
			if err == nil {
				c.Revision, c.Commit = n, commit
				r.Configs++
				if held >= 0 {
					if held += int64(len(c.Data)); held > hubBytes {
						r.configs, held = nil, -1 // the streams read the store
					} else {
						r.configs = append(r.configs, c)
					}
				}
			}
			if !yield(c, err) || err != nil {
				return
			}
		}
		// Every config is known, and the store is committing them.
		r.stored, r.size = held < 0, max(held, 0)
		if len(r.configs) == 1 {
			// The update event that every stream watching the one
			// config writes: encoded meanwhile, on another thread.
			go d.sharedUpdate(r, d.store.Identity(), []byte{1})
		}
	}
	storing := time.Now()
	if err := d.store.Append(ctx, r.Revision, kept); err != nil {
		return false, fmt.Errorf("publishing commit %.12s: %w", commit, err)
	}
	stored := time.Now()
	d.metrics.published.Inc()
	if d.cluster == nil {
		d.announce(r)
	} else {
		// The follower announces it, as it does the revisions of the
		// other daemons, without reading it again.
		d.cluster.handoff.Store(r)
	}
	d.log.Info("published", "revision", n, "commit", commit, "configs", r.Configs,
		"store_ms", ms(stored.Sub(storing)), "broadcast_ms", ms(time.Since(stored)))
	return true, nil
}

// ms returns d in milliseconds, as logs give durations.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// compact drops the history of the revisions before the
// Config.KeepRevisions latest, if it is set.
func (d *Daemon) compact(ctx context.Context) {
	if d.cfg.KeepRevisions <= 0 {
		return
	}
	floor, err := d.store.Compact(ctx, d.cfg.KeepRevisions)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("compacting the store", "keep", d.cfg.KeepRevisions, "err", err)
		}
		return
	}
	d.log.Debug("compacted the store", "floor", floor)
}

// configName names the config that the materialized file f holds, as
// repo.MaterializedConfig does with the commit's record of types; a deleted
// ".json" file is the raw config if the store holds that.
func (d *Daemon) configName(ctx context.Context, f gitrepo.File, types map[string]string) (name string, compiled, ok bool) {
	if f.Kind != gitrepo.Deleted {
		return repo.MaterializedConfig(f.Path, types)
	}
	name, compiled, ok = repo.MaterializedName(f.Path)
	if compiled {
		if c, err := d.store.Get(ctx, name+".json"); err == nil && !c.Compiled && !c.Deleted {
			return c.Name, false, true
		}
	}
	return name, compiled, ok
}

// typesCache holds the record of types (repo.TypesFile) the tailer read
// last, by the hash of its file: commits that leave the record as it was
// (most change a config's value, not its type) are published without
// reading it again, so that publishing one config costs as much in a
// repository of 20,000 configs as in one of ten.
type typesCache struct {
	hash  string
	types map[string]string
}

// types reads the Thrift types of the compiled configs that the compile
// recorded in commit (repo.TypesFile); a commit without the record gives
// no types.
func (d *Daemon) types(commit string) map[string]string {
	hash, err := d.hist.FileHash(commit, repo.TypesFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("reading config types", "commit", commit, "err", err)
		}
		return nil
	}
	if hash == d.typesSeen.hash {
		return d.typesSeen.types
	}
	data, err := d.hist.ReadFile(commit, repo.TypesFile)
	if err != nil {
		d.log.Warn("reading config types", "commit", commit, "err", err)
		return nil
	}
	types, err := repo.DecodeTypes(data)
	if err != nil {
		d.log.Warn("reading config types", "commit", commit, "err", err)
		return types
	}
	d.typesSeen = typesCache{hash, types}
	return types
}
