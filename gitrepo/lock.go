package gitrepo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// LockFile is the name of the commit lock, in the git common directory:
// one commit at a time per repository.
const LockFile = "cfg-commit.lock"

// DefaultLockWait is how long CommitFiles waits for the commit lock when
// its caller does not hold it.
const DefaultLockWait = time.Minute

// gitLockWait is how long cfg waits for a lock file of git's (index.lock,
// a ref's .lock) to go away: git holds them for a moment only; one that
// stays was left by a process that died, or belongs to a git command
// waiting for an editor.
const gitLockWait = time.Second

// Holder describes the process that holds, or held, the commit lock.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
	// GitLocks are the lock files of git's the holder has created and not
	// yet renamed into place or removed.
	GitLocks []LockedFile `json:"git_locks,omitempty"`
	// Temp is the file through which the holder is creating a lock file
	// of git's, if it is (see lockGitFile).
	Temp string `json:"temp,omitempty"`
}

// LockedFile identifies a lock file by path and by file identity (device
// and inode), so that a file of the same name created by someone else later
// is not taken for it.
type LockedFile struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
}

// Known reports whether h describes a process; a lock file being written
// or cut short describes none.
func (h Holder) Known() bool { return h.PID != 0 }

// String describes h: "pid 4242 on host build-7, since 15:04:05", or
// "unknown process".
func (h Holder) String() string {
	if !h.Known() {
		return "unknown process"
	}
	return fmt.Sprintf("pid %d on host %s, since %s", h.PID, h.Host, h.Started.Local().Format(time.TimeOnly))
}

// parenthesized returns " (String())" for a known holder, and "" for
// another.
func (h Holder) parenthesized() string {
	if !h.Known() {
		return ""
	}
	return " (" + h.String() + ")"
}

// LockedError is returned by Lock when another process kept the commit
// lock for the whole wait.
type LockedError struct {
	Holder Holder
	Waited time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("another cfg commit%s holds the repository's commit lock; waited %s", e.Holder.parenthesized(), e.Waited)
}

// GitLockedError is returned when a lock file of git's is in the way.
type GitLockedError struct {
	Path string // the lock file, absolute
}

func (e *GitLockedError) Error() string {
	return fmt.Sprintf("%s exists: another git process seems to be running in this repository; if none is, one ended without cleaning up: remove the file and try again", e.Path)
}

// Stale describes a commit lock left behind by a process that ended
// without releasing it (killed, or on a machine that crashed), which Lock
// took over.
type Stale struct {
	Holder Holder
	// Removed are git lock files the holder had created and left, which
	// Lock removed.
	Removed []string
	// Left are git lock files the holder had created that are still there
	// but were not removed, because the holder ran on another host (see
	// the README on NFS).
	Left []string
}

// Lock is the repository's commit lock, held. Only one Lock of a repository
// is held at a time, among all processes of the machine (and of every
// machine, on a network file system whose locks work across machines).
//
// The lock is an flock(2) lock on LockFile: the kernel releases it when its
// holder ends, however it ends, so a dead holder never blocks anyone. The
// file holds a description of its holder (Holder) while the lock is held,
// and is empty once it is released; a new holder that finds a description
// knows its predecessor ended without releasing the lock, and removes the
// git lock files the predecessor had created and left (Stale).
type Lock struct {
	r      *Repo
	f      *os.File
	sem    chan struct{}
	stale  *Stale
	mu     sync.Mutex
	holder Holder
}

// procLocks serializes the commit locks of one process by lock path: flock
// locks of one process exclude each other on a local file system, but are
// emulated with POSIX locks on NFS, where they do not.
var procLocks sync.Map // path -> chan struct{}

// Lock takes the repository's commit lock, waiting up to wait for another
// holder to release it (calling waiting once, with the holder, if it has
// to wait). It returns a *LockedError when the wait runs out. Until Unlock,
// CommitFiles uses this lock rather than taking it.
func (r *Repo) Lock(ctx context.Context, wait time.Duration, waiting func(Holder)) (*Lock, error) {
	if r.lock != nil {
		return nil, errors.New("the commit lock is already held by this Repo")
	}
	path := filepath.Join(r.commonDir, LockFile)
	v, _ := procLocks.LoadOrStore(path, make(chan struct{}, 1))
	sem := v.(chan struct{})
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the commit lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	notified := false
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		held, err := tryLock(sem, f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if held {
			break
		}
		h, _ := readHolder(f)
		if !notified && waiting != nil {
			waiting(h)
			notified = true
		}
		left := time.Until(deadline)
		if left <= 0 {
			f.Close()
			return nil, &LockedError{Holder: h, Waited: wait}
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	l := &Lock{r: r, f: f, sem: sem}
	if prev, found := readHolder(f); found {
		l.stale = recoverStale(prev)
	}
	host, _ := os.Hostname()
	l.holder = Holder{PID: os.Getpid(), Host: host, Started: time.Now()}
	if err := l.write(); err != nil {
		l.Unlock()
		return nil, err
	}
	r.lock = l
	return l, nil
}

// tryLock takes the process's semaphore and then the file lock, without
// waiting; held is false if either is taken.
func tryLock(sem chan struct{}, f *os.File) (held bool, err error) {
	select {
	case sem <- struct{}{}:
	default:
		return false, nil
	}
	held, err = flock(f)
	if !held {
		<-sem
	}
	return held, err
}

// readHolder reads the holder description in the lock file; found is false
// when the file is empty (the lock was released).
func readHolder(f *os.File) (h Holder, found bool) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil || len(data) == 0 {
		return Holder{}, false
	}
	// The first value is the description (see write); a description cut
	// short still says the lock was not released.
	json.NewDecoder(bytes.NewReader(data)).Decode(&h)
	return h, true
}

// recoverStale cleans up after a holder that ended without releasing the
// lock: it removes the git lock files the holder created and left, when it
// can tell they are the holder's (same file identity) and the holder ran
// on this host (so that the file lock, which the kernel released, proves
// it has ended).
func recoverStale(prev Holder) *Stale {
	s := &Stale{Holder: prev}
	host, _ := os.Hostname()
	if prev.Temp != "" && prev.Host == host {
		os.Remove(prev.Temp) // a name only the holder used
	}
	for _, gl := range prev.GitLocks {
		id, err := fileID(gl.Path)
		if err != nil || id.Dev != gl.Dev || id.Ino != gl.Ino {
			continue // gone, or since replaced by another file
		}
		if prev.Host != host {
			s.Left = append(s.Left, gl.Path)
			continue
		}
		if err := os.Remove(gl.Path); err == nil {
			s.Removed = append(s.Removed, gl.Path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			s.Left = append(s.Left, gl.Path)
		}
	}
	return s
}

// Stale returns what Lock recovered from a holder that ended without
// releasing the lock, or nil.
func (l *Lock) Stale() *Stale { return l.stale }

// Unlock releases the lock. It may be called more than once.
func (l *Lock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Truncate(0) // released, not abandoned
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	<-l.sem
	if l.r.lock == l {
		l.r.lock = nil
	}
	if err != nil {
		return fmt.Errorf("releasing the commit lock: %w", err)
	}
	return nil
}

// write records the holder description in the lock file. The file is
// never empty while the lock is held, whenever the holder dies: the
// description is written over the previous one, which it replaces whole
// (a write of a few hundred bytes to a file is not cut short by a signal),
// and the file is then cut to its length; readHolder reads the first JSON
// value, ignoring what may be left of a longer previous description.
func (l *Lock) write() error {
	data, err := json.Marshal(l.holder)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("writing the commit lock: %w", err)
	}
	if err := l.f.Truncate(int64(len(data))); err != nil {
		return fmt.Errorf("writing the commit lock: %w", err)
	}
	return nil
}

// gitLock is a lock file of git's: NAME.lock beside the file NAME it
// stands for, created exclusively. Its creator may replace NAME: it writes
// the new content into the lock file and renames it over NAME (readers see
// the old file or the new, never a part), or removes it to give up. Git
// locks the index and every ref this way, so git and cfg never update one
// at the same time.
type gitLock struct {
	l    *Lock // records it while it exists
	name string
	f    *os.File
	id   LockedFile
}

// testHookGitLock, when set by a test, runs at each step of lockGitFile:
// "created" once the file that becomes the lock file exists, "recorded"
// once its identity is recorded, "linked" once it is the lock file.
var testHookGitLock func(step string)

// lockGitFile creates name's lock file, waiting a moment for another
// process's to go away.
//
// The lock file's identity is recorded in the holder description before
// the lock file exists, so that whenever the holder dies, the next holder
// knows whether a lock file is its: the file is created under a name only
// this holder uses (recorded first, in Holder.Temp), its identity
// recorded, and then hard-linked to the lock file's name, which fails if
// that exists, as an exclusive creation does; the first name is removed
// after.
func (l *Lock) lockGitFile(name string) (*gitLock, error) {
	lockPath := name + ".lock"
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, err
	}
	tmp := filepath.Join(l.r.commonDir, fmt.Sprintf("cfg-lock-%d-%x.tmp", os.Getpid(), rand.Uint64()))
	if err := l.setTemp(tmp); err != nil {
		return nil, err
	}
	defer l.setTemp("")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if testHookGitLock != nil {
		testHookGitLock("created")
	}
	g := &gitLock{l: l, name: name, f: f}
	id, err := fileID(tmp)
	if err == nil {
		id.Path = lockPath
		if err = l.record(id, true); err == nil {
			g.id = id
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if testHookGitLock != nil {
		testHookGitLock("recorded")
	}
	deadline := time.Now().Add(gitLockWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		err := os.Link(tmp, lockPath)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || time.Now().After(deadline) {
			f.Close()
			l.record(id, false)
			if errors.Is(err, fs.ErrExist) {
				return nil, &GitLockedError{Path: lockPath}
			}
			return nil, fmt.Errorf("creating %s: %w", lockPath, err)
		}
		time.Sleep(delay)
	}
	if testHookGitLock != nil {
		testHookGitLock("linked")
	}
	return g, nil
}

// setTemp records the temporary file lockGitFile creates, or that there
// is none.
func (l *Lock) setTemp(tmp string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("the commit lock was released")
	}
	l.holder.Temp = tmp
	return l.write()
}

// record adds or removes a git lock file in the holder description.
func (l *Lock) record(id LockedFile, add bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("the commit lock was released")
	}
	l.holder.GitLocks = slices.DeleteFunc(l.holder.GitLocks, func(x LockedFile) bool { return x == id })
	if add {
		l.holder.GitLocks = append(l.holder.GitLocks, id)
	}
	return l.write()
}

// commit writes data to the lock file and renames it over the file it
// stands for.
func (g *gitLock) commit(data []byte) error {
	_, err := g.f.Write(data)
	if cerr := g.f.Close(); err == nil {
		err = cerr
	}
	g.f = nil
	if err == nil {
		err = os.Rename(g.name+".lock", g.name)
	}
	if err != nil {
		os.Remove(g.name + ".lock")
	}
	// Once renamed, the lock file is gone whether or not this is recorded.
	g.l.record(g.id, false)
	if err != nil {
		return fmt.Errorf("writing %s: %w", g.name, err)
	}
	return nil
}

// rollback removes the lock file, leaving the file it stands for as it
// was. It does nothing after commit.
func (g *gitLock) rollback() {
	if g.f == nil {
		return
	}
	g.f.Close()
	g.f = nil
	os.Remove(g.name + ".lock")
	if g.id.Path != "" {
		g.l.record(g.id, false)
	}
}
