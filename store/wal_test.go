package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLoggedAppendNeedsNoBoltWrite checks that a revision of at most
// walBytes is durable, and Append returns, once its record in the log is
// synced: while a write transaction of the bolt file is held open (no
// other can commit), Append returns, and the readers that come after it
// wait for the revision to be in the file and see it.
func TestLoggedAppendNeedsNoBoltWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("b", "b1")))
	ctx := context.Background()
	if _, err := s.Latest(ctx); err != nil { // revision 1 in the file
		t.Fatal(err)
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		r := newRev(2, cv("a", "a2"))
		appended <- s.Append(ctx, r.Revision, Entries(r.configs))
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		tx.Rollback()
		t.Fatal("Append waited for a write transaction of the bolt file")
	}
	if info, err := os.Stat(path + WALSuffix); err != nil || info.Size() == 0 {
		t.Errorf("the log after a logged Append: %v, %v", info, err)
	}
	// The next Append goes after the logged one.
	r := newRev(2, cv("b", "b2"))
	if err := s.Append(ctx, r.Revision, Entries(r.configs)); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("appending revision 2 again: %v, want ErrOutOfOrder", err)
	}
	// Latest answers from the log, without waiting for the file.
	latest := make(chan Revision, 1)
	go func() {
		info, err := s.Latest(ctx)
		if err != nil {
			t.Error(err)
		}
		latest <- info
	}()
	select {
	case info := <-latest:
		if info.Number != 2 || info.Configs != 1 || info.Commit != "c2" {
			t.Errorf("Latest while revision 2 is in the log only: %+v", info)
		}
	case <-time.After(time.Minute):
		tx.Rollback()
		t.Fatal("Latest waited for the bolt file")
	}
	tx.Rollback()
	if info, err := s.Revision(ctx, 2); err != nil || info.Number != 2 || info.Configs != 1 {
		t.Errorf("Revision(2) after a logged Append: %+v, %v", info, err)
	}
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@2=a2", "b@1=b1"}) {
		t.Errorf("Snapshot after a logged Append: %q", got)
	}
	// Once in the file, the next record goes over it.
	if s.wal.size != 0 {
		t.Errorf("the next record goes at %d of the log, want 0", s.wal.size)
	}
}

const loggedChildEnv = "CFG_STORE_TEST_LOGGED_CHILD"

// loggedChild appends revision 1 to the store at path, then, holding a
// write transaction of the bolt file open so that no revision reaches
// it, revision 2, which only the log holds, says so on stdout and waits
// to be killed.
func loggedChild(path string) {
	s, err := OpenBolt(path)
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	ctx := context.Background()
	r1 := newRev(1, cv("a", "a1"), cv("b", "b1"))
	if err := s.Append(ctx, r1.Revision, Entries(r1.configs)); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	if _, err := s.Latest(ctx); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	if _, err := s.db.Begin(true); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	r2 := newRev(2, cv("a", "a2"), cv("b", ""))
	if err := s.Append(ctx, r2.Revision, Entries(r2.configs)); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	fmt.Println("appended")
	select {}
}

// TestLoggedRevisionSurvivesKill kills (SIGKILL) a process whose last
// Append returned with the revision in the log only, and checks that the
// store opened again holds it, whole; then that a record cut short at
// the end of the log (a crash in the middle of writing it) is not taken
// for a revision.
func TestLoggedRevisionSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	path := filepath.Join(t.TempDir(), "cfg.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loggedChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type read struct {
		line string
		err  error
	}
	got := make(chan read, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		got <- read{line, err}
	}()
	var r read
	select {
	case r = <-got:
	case <-time.After(time.Minute):
		r.err = errors.New("no answer in a minute: Append waits for a write transaction of the bolt file")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if r.err != nil || r.line != "appended\n" {
		t.Fatalf("the child: %q, %v", r.line, r.err)
	}
	logged, err := os.ReadFile(path + WALSuffix)
	if err != nil || len(logged) == 0 {
		t.Fatalf("the log after the kill: %d bytes, %v", len(logged), err)
	}

	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if info, err := s.Latest(ctx); err != nil || info.Number != 2 || info.Commit != "c2" || info.Configs != 2 {
		t.Errorf("Latest after the kill: %+v, %v; want revision 2 of c2, 2 configs", info, err)
	}
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@2=a2"}) {
		t.Errorf("Snapshot after the kill: %q", got)
	}
	if got := since(t, s, 1, All()); !cmp.Equal(got, []string{`2 a "a2" deleted=false`, `2 b "" deleted=true`}) {
		t.Errorf("Since(1) after the kill: %q", got)
	}
	s.Close()

	// The record of revision 2 again (in the file already: skipped), then
	// the record of revision 3 cut short.
	r3 := (&wal{identity: []byte(s.identity)}).encode(newRev(3, cv("a", "a3")).Revision, []ConfigVersion{{Name: "a", Revision: 3, Commit: "c3", Data: []byte("a3")}})
	if err := os.WriteFile(path+WALSuffix, append(logged, r3[:len(r3)-1]...), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if info, err := s.Latest(ctx); err != nil || info.Number != 2 {
		t.Errorf("Latest with a record cut short in the log: %+v, %v; want revision 2", info, err)
	}
	if got := since(t, s, 2, All()); got != nil {
		t.Errorf("Since(2) with a record cut short in the log: %q", got)
	}
	// Revision 3 goes at the start of the log, over revision 2's record,
	// and the rest of the old records stays: a start skips it.
	mustAppend(t, s, newRev(3, cv("b", "b3")))
	s.Close()
	s = openTest(t, path)
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@2=a2", "b@3=b3"}) {
		t.Errorf("Snapshot after revision 3 went over the log: %q", got)
	}
}

// TestLogAheadOfRestoredFile restores the bolt file from an older copy of
// the store after the store was closed: the log holds no record, and the
// store opens as the copy was, and appends after it.
func TestLogAheadOfRestoredFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "a1")))
	s.Close()
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	mustAppend(t, s, newRev(2, cv("a", "a2")), newRev(3, cv("a", "a3")))
	s.Close()
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@1=a1"}) {
		t.Errorf("Snapshot of the restored file: %q", got)
	}
	mustAppend(t, s, newRev(2, cv("a", "other")))
	s.Close()
	s = openTest(t, path)
	if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@2=other"}) {
		t.Errorf("Snapshot after appending to the restored file: %q", got)
	}
}

// TestAppendOrderAcrossPaths checks that Append takes revision latest+1
// and nothing else, whichever way the latest one was committed (through
// the log, written to the file in the background or not yet, or a big
// one written to the file directly), after an Append that failed, and
// after the store is opened again.
func TestAppendOrderAcrossPaths(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cfg.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	add := func(n int64) error {
		r := newRev(n, cv("a", fmt.Sprintf("a%d", n)))
		return s.Append(ctx, r.Revision, Entries(r.configs))
	}
	// want checks that only revision n goes next, and appends it.
	want := func(what string, n int64) {
		t.Helper()
		for _, other := range []int64{n - 1, n + 1} {
			if err := add(other); !errors.Is(err, ErrOutOfOrder) {
				t.Errorf("%s: appending revision %d: %v, want ErrOutOfOrder", what, other, err)
			}
		}
		if err := add(n); err != nil {
			t.Fatalf("%s: appending revision %d: %v", what, n, err)
		}
	}
	want("an empty store", 1)
	want("revision 1 in the log", 2)
	if _, err := s.Revision(ctx, 2); err != nil { // waits for the file
		t.Fatal(err)
	}
	want("revision 2 in the file", 3)

	big := func() {
		defer func(n int) { walBytes = n }(walBytes)
		walBytes = 1 // not through the log
		want("revision 3 appended through the log", 4)
	}
	big()
	want("revision 4 written to the file directly", 5)

	// An Append whose configs fail, and one cut short by its context.
	failing := func(yield func(ConfigVersion, error) bool) {
		yield(ConfigVersion{}, errors.New("unreadable"))
	}
	if err := s.Append(ctx, newRev(6).Revision, failing); err == nil {
		t.Error("an Append whose configs fail succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Append(cancelled, newRev(6).Revision, Entries([]ConfigVersion{cv("a", "a6")})); err == nil {
		t.Error("an Append with its context done succeeded")
	}
	want("after failed Appends", 6)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenBolt(path); err != nil {
		t.Fatal(err)
	}
	want("the store opened again", 7)
	var wantSince []string
	for n := 1; n <= 7; n++ {
		wantSince = append(wantSince, fmt.Sprintf("%d a \"a%d\" deleted=false", n, n))
	}
	if got := since(t, s, 0, All()); !cmp.Equal(got, wantSince) {
		t.Errorf("Since(0) = %q, want %q", got, wantSince)
	}
}

// crashImage appends revisions 1 to filed to a store at a path of its own
// and waits until its file holds them, then, holding a write transaction
// of the file open, appends the revisions of logged, which only its log
// then holds, and copies the store's files as a crash (kill -9) at that
// moment leaves them to dir/cfg.db. It returns the copied path and the
// store's file as it was at revision backupAt (an older copy of it).
func crashImage(t *testing.T, dir string, filed, backupAt int64, logged ...rev) (path string, backup []byte) {
	t.Helper()
	ctx := context.Background()
	orig := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, orig)
	for n := int64(1); n <= filed; n++ {
		mustAppend(t, s, newRev(n, cv("a", fmt.Sprintf("a%d", n))))
		if _, err := s.Revision(ctx, n); err != nil { // in the file
			t.Fatal(err)
		}
		if n == backupAt {
			var err error
			if backup, err = os.ReadFile(orig); err != nil {
				t.Fatal(err)
			}
		}
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	mustAppend(t, s, logged...)
	path = filepath.Join(dir, "cfg.db")
	for _, suffix := range []string{"", IdentitySuffix, WALSuffix} {
		copyFile(t, orig+suffix, path+suffix)
	}
	return path, backup
}

// TestLogAfterACrash opens stores beside the log a crash left, with its
// revisions not yet in the file: the log's records are of the store whose
// identity they carry, and continue its file or are not written to it.
// A new store made in its place (the store moved aside with its identity
// record, as the error for a damaged store says) takes none of them; a
// file restored from an older copy takes those that continue it, and none
// if the log does not continue it (the revisions between are lost with
// the file the copy replaced).
func TestLogAfterACrash(t *testing.T) {
	ctx := context.Background()
	t.Run("a new store", func(t *testing.T) {
		path, _ := crashImage(t, t.TempDir(), 0, 0, newRev(1, cv("a", "other store")))
		for _, suffix := range []string{"", IdentitySuffix} {
			if err := os.Rename(path+suffix, path+suffix+".aside"); err != nil {
				t.Fatal(err)
			}
		}
		s := openTest(t, path)
		if info, err := s.Latest(ctx); err != nil || info.Number != 0 {
			t.Errorf("Latest of a new store beside another's log: %+v, %v; want no revision", info, err)
		}
		mustAppend(t, s, newRev(1, cv("b", "b1")))
		s.Close()
		s = openTest(t, path)
		if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"b@1=b1"}) {
			t.Errorf("Snapshot of a new store beside another's log: %q", got)
		}
	})
	t.Run("a copy the log continues", func(t *testing.T) {
		path, backup := crashImage(t, t.TempDir(), 1, 1, newRev(2, cv("a", "a2")), newRev(3, cv("b", "b3")))
		if err := os.WriteFile(path, backup, 0o600); err != nil {
			t.Fatal(err)
		}
		s := openTest(t, path)
		if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@2=a2", "b@3=b3"}) {
			t.Errorf("Snapshot of a copy the log continues: %q", got)
		}
	})
	t.Run("a copy the log does not continue", func(t *testing.T) {
		path, backup := crashImage(t, t.TempDir(), 2, 1, newRev(3, cv("a", "a3")), newRev(4, cv("b", "b4")))
		if err := os.WriteFile(path, backup, 0o600); err != nil {
			t.Fatal(err)
		}
		s := openTest(t, path)
		if _, got := snapshot(t, s, All()); !cmp.Equal(got, []string{"a@1=a1"}) {
			t.Errorf("Snapshot of a copy the log does not continue: %q", got)
		}
		mustAppend(t, s, newRev(2, cv("b", "b2")))
		s.Close()
		s = openTest(t, path)
		if got := since(t, s, 0, All()); !cmp.Equal(got, []string{`1 a "a1" deleted=false`, `2 b "b2" deleted=false`}) {
			t.Errorf("Since(0) after appending to a copy the log did not continue: %q", got)
		}
	})
}

// TestLoggedRevisionSurvivesPowerLoss checks that a revision is durable
// once Append returns, as a power loss would find it, which a killed
// process (TestLoggedRevisionSurvivesKill) cannot show: the page cache
// outlives the process. Of the log, a power loss leaves what was last
// synced (the test keeps an image of the log at each sync); of the bolt
// file, what it held before the Append, which bbolt synced. A store
// opened on those images holds the revision. (Not parallel: it replaces
// syncLog.)
func TestLoggedRevisionSurvivesPowerLoss(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.db")
	s := openTest(t, path)
	mustAppend(t, s, newRev(1, cv("a", "a1"), cv("b", "b1")))
	ctx := context.Background()
	if _, err := s.Get(ctx, "a"); err != nil { // revision 1 in the file
		t.Fatal(err)
	}
	boltImage, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var walImage []byte
	syncLog = func(f *os.File) error {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		walImage = b
		return syncData(f)
	}
	defer func() { syncLog = syncData }()
	mustAppend(t, s, newRev(2, cv("a", "a2")))
	syncLog = syncData

	lost := filepath.Join(t.TempDir(), "cfg.db")
	identity, err := os.ReadFile(path + IdentitySuffix)
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{lost: boltImage, lost + WALSuffix: walImage, lost + IdentitySuffix: identity} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	after := openTest(t, lost)
	if info, err := after.Latest(ctx); err != nil || info.Number != 2 {
		t.Fatalf("after a power loss: latest %+v, %v; want revision 2", info, err)
	}
	for name, want := range map[string]string{"a": "a2", "b": "b1"} {
		if c, err := after.Get(ctx, name); err != nil || string(c.Data) != want {
			t.Errorf("after a power loss: %s is %q, %v; want %q", name, c.Data, err, want)
		}
	}
}
