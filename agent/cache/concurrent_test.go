package cache

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// writerEnv, set to a cache directory, makes the test binary a writer
// process (TestMain) instead of running tests.
const writerEnv = "CFG_CACHE_TEST_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(writerEnv); dir != "" {
		first, err := strconv.ParseInt(os.Getenv(writerEnv+"_FIRST"), 10, 64)
		if err != nil {
			first = 2
		}
		last, _ := strconv.ParseInt(os.Getenv(writerEnv+"_LAST"), 10, 64)
		if err := writeVersions(dir, first, last); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const racedName = "feed/job"

// version is revision rev of the config the writer updates: data of a
// length that varies with rev, naming rev, so that a reader can check
// that data and metadata belong together; every seventh revision
// deletes the config.
func version(rev int64) ConfigVersion {
	if rev%7 == 0 {
		return ConfigVersion{Name: racedName, Revision: rev, Commit: fmt.Sprint("c", rev), Deleted: true}
	}
	data := fmt.Sprintf("{\"rev\": %d, \"pad\": %q}\n", rev, strings.Repeat("x", int(rev%13)*300))
	return ConfigVersion{Name: racedName, Revision: rev, Commit: fmt.Sprint("c", rev), Type: "Job", Compiled: true, Data: []byte(data)}
}

func writeVersions(dir string, first, last int64) error {
	for rev := first; rev <= last; rev++ {
		if err := Write(dir, version(rev)); err != nil {
			return fmt.Errorf("writing revision %d: %w", rev, err)
		}
	}
	return nil
}

// readUntil reads the config from several goroutines until one of them
// sees revision last or done is closed, checking every read: the data
// is the data of the revision the metadata names, revisions never go
// back, and the only error is the deletion of a deleted revision.
func readUntil(t *testing.T, dir string, last int64, done <-chan struct{}) int {
	t.Helper()
	var reads sync.WaitGroup
	var mu sync.Mutex
	total := 0
	stop := make(chan struct{})
	var once sync.Once
	for range 3 {
		reads.Go(func() {
			n := 0
			defer func() { mu.Lock(); total += n; mu.Unlock() }()
			var prev int64
			for {
				select {
				case <-stop:
					return
				case <-done:
					return
				default:
				}
				cv, err := Read(dir, racedName)
				n++
				if errors.Is(err, ErrNotFound) && strings.Contains(err.Error(), "deleted at revision") {
					continue
				}
				if err != nil {
					t.Errorf("Read: %v", err)
					once.Do(func() { close(stop) })
					return
				}
				want := version(cv.Revision)
				if string(cv.Data) != string(want.Data) || cv.Commit != want.Commit || cv.Type != want.Type || !cv.Compiled {
					t.Errorf("Read: revision %d, commit %s with data %.20q (%d bytes); want commit %s, data %.20q (%d bytes)",
						cv.Revision, cv.Commit, cv.Data, len(cv.Data), want.Commit, want.Data, len(want.Data))
					once.Do(func() { close(stop) })
					return
				}
				if cv.Revision < prev {
					t.Errorf("Read: revision %d after %d", cv.Revision, prev)
				}
				prev = cv.Revision
				if cv.Revision >= last-1 {
					once.Do(func() { close(stop) })
					return
				}
			}
		})
	}
	reads.Wait()
	return total
}

// TestReadersSeeOneVersionWhileAProcessWrites: another process (as the
// agent is to an application reading its cache) writes one revision
// after another, deletions included; readers never get the data of one
// revision with the metadata of another, nor an error other than a
// deletion.
func TestReadersSeeOneVersionWhileAProcessWrites(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, version(1)); err != nil {
		t.Fatal(err)
	}
	const last = 200
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+dir, writerEnv+"_LAST="+strconv.Itoa(last))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(exited) }()
	n := readUntil(t, dir, last, exited)
	<-exited
	if werr != nil {
		t.Fatalf("writer: %v\n%s", werr, out)
	}
	t.Logf("%d reads", n)
	if cv, err := Read(dir, racedName); err != nil || cv.Revision != last {
		t.Errorf("after the writer: %d, %v; want revision %d", cv.Revision, err, last)
	}
}

// TestReadersSeeOneVersionWhileAGoroutineWrites is the same in one
// process, for the race detector.
func TestReadersSeeOneVersionWhileAGoroutineWrites(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, version(1)); err != nil {
		t.Fatal(err)
	}
	const last = 100
	done := make(chan struct{})
	var werr error
	start := time.Now()
	go func() { werr = writeVersions(dir, 2, last); close(done) }()
	readUntil(t, dir, last, done)
	<-done
	if werr != nil {
		t.Fatal(werr)
	}
	t.Logf("%d writes in %v", last-1, time.Since(start))
}
