package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/internal/syncbuf"
	"github.com/cfg-dev/cfg/wire"
)

// agentEnv, set to a cache directory, makes the test binary an agent
// process (TestMain) of the daemon at the URL in agentEnv_DAEMON, with
// its cache there, instead of running tests. It runs until it is killed.
const agentEnv = "CFG_AGENT_TEST_PROCESS"

func TestMain(m *testing.M) {
	if dir := os.Getenv(agentEnv); dir != "" {
		runAgentProcess(dir, os.Getenv(agentEnv+"_DAEMON"))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// runAgentProcess runs an agent of daemon with its cache in dir, logging
// to stderr, until the process is killed.
func runAgentProcess(dir, daemon string) {
	a, err := New(Config{Daemons: []string{daemon}, Host: "web-1", CacheDir: dir, ReportEvery: time.Hour,
		HeartbeatTimeout: 20 * hb, Heartbeat: hb, FetchTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	a.retryMin, a.retryMax = 10*time.Millisecond, 50*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Fprintln(os.Stderr, a.Serve(context.Background(), ln))
}

// agentProcess is an agent running as a process of its own.
type agentProcess struct {
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	done chan struct{} // closed when the process has ended
	err  error         // how it ended
}

// startAgentProcess starts an agent process of daemon with its cache in
// dir; it is killed when the test ends, if not before.
func startAgentProcess(t *testing.T, dir, daemon string) *agentProcess {
	t.Helper()
	p := &agentProcess{log: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), agentEnv+"="+dir, agentEnv+"_DAEMON="+daemon)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGKILL); <-p.done })
	return p
}

// kill kills the process with SIGKILL and waits for it to end; the
// process must not have ended before.
func (p *agentProcess) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("the agent ended before it was killed: %v\n%s", p.err, p.log)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// until waits until cond holds, as long as the process runs.
func (p *agentProcess) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		select {
		case <-p.done:
			t.Fatalf("the agent ended while the test waited for %s: %v\n%s", what, p.err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; the agent's log:\n%s", what, p.log)
		}
		time.Sleep(time.Millisecond) // polls; leaves the CPU to the agent
	}
}

// cached returns the version of the named config the cache in dir holds,
// its tombstone for a deleted config (from its metadata, whose revision
// Read does not return), and whether it holds any; an entry Read finds
// damaged is an error.
func cached(dir, name string) (cache.ConfigVersion, bool, error) {
	cv, err := cache.Read(dir, name)
	if err == nil || !errors.Is(err, cache.ErrNotFound) {
		return cv, err == nil, err
	}
	raw, rerr := os.ReadFile(filepath.Join(dir, "meta", filepath.FromSlash(name)+".json"))
	if errors.Is(rerr, fs.ErrNotExist) {
		return cache.ConfigVersion{}, false, nil
	}
	var m struct {
		Revision int64 `json:"revision"`
		Deleted  bool  `json:"deleted"`
	}
	if rerr != nil || json.Unmarshal(raw, &m) != nil || !m.Deleted {
		return cache.ConfigVersion{}, false, fmt.Errorf("config %q: %v; metadata %q", name, err, raw)
	}
	return cache.ConfigVersion{Name: name, Revision: m.Revision, Deleted: true}, true, nil
}

// metaRevision returns the revision that the metadata of the named config
// in the cache in dir names, 0 if it cannot be read.
func metaRevision(dir, name string) int64 {
	raw, err := os.ReadFile(filepath.Join(dir, "meta", filepath.FromSlash(name)+".json"))
	var m struct {
		Revision int64 `json:"revision"`
	}
	if err != nil || json.Unmarshal(raw, &m) != nil {
		return 0
	}
	return m.Revision
}

// writing reports whether the cache in dir holds a temporary file of the
// configs' data or metadata, or of state.json: the agent is writing one.
func writing(dir string) bool {
	for _, sub := range []string{"meta/feed", "data/feed", "."} {
		ents, _ := os.ReadDir(filepath.Join(dir, filepath.FromSlash(sub)))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".cfgtmp-") {
				return true
			}
		}
	}
	return false
}

// killDir returns a new directory on a tmpfs (/dev/shm) if there is one,
// for the files of a test that kills the agent: the test kills the
// process, not the machine, so what fsync adds is not under test, and on
// a disk it costs some 4 ms for each config the agent writes.
func killDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "cfg-agent-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestKilledWhileApplying: the agent, a process of its own, is killed
// (SIGKILL) 14 times while it applies revisions that change each of its
// 250 configs (deleting ten, bringing back the ten deleted before): its
// first snapshot, then each new revision twice, the second time while it
// replays what the first kill cut short, after a different number of
// configs each time, every other time while a file is half written.
// After each kill, state.json never claims more than the cache holds:
// for the revision it names, every config's cached version is that
// revision's or a newer one, whole (never damaged), and state.json still
// names every config. Started again, the agent replays what it missed
// and ends with exactly the daemon's latest version of every config, no
// entry found damaged on the way, and no other file: no temporary file,
// no data file that no metadata names.
func TestKilledWhileApplying(t *testing.T) {
	const n, pairs = 250, 6
	const kills = 2 + 2*pairs
	dir := killDir(t)
	repo, err := agenttest.OpenRepo(killDir(t), hb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(repo.Close)
	d := agenttest.NewDaemon(t, repo)
	names := make([]string, n)
	// hist[name][rev] is the data of name that revision rev committed,
	// nil if rev deleted it, for each revision that changed it.
	hist := map[string]map[int64][]byte{}
	for i := range names {
		names[i] = fmt.Sprintf("feed/c%03d", i)
		hist[names[i]] = map[int64][]byte{}
	}
	pad := strings.Repeat("x", 2000)
	publish := func() int64 {
		t.Helper()
		rev := repo.Latest() + 1
		var changes []agenttest.Change
		for i, name := range names {
			c := agenttest.Change{Name: name, Type: "Job"}
			if rev > 1 && int64(i%25) == rev%25 {
				c.Deleted = true
			} else {
				c.Data = fmt.Appendf(nil, "{\"config\": %d, \"rev\": %d, \"pad\": %q}\n", i, rev, pad)
			}
			changes = append(changes, c)
		}
		if got := repo.Publish(changes...); got != rev {
			t.Fatalf("published revision %d, want %d", got, rev)
		}
		for _, c := range changes {
			hist[c.Name][rev] = c.Data
		}
		return rev
	}
	// at is the revision of the version of name current at revision rev.
	at := func(name string, rev int64) int64 {
		var last int64
		for r := range hist[name] {
			if r <= rev && r > last {
				last = r
			}
		}
		return last
	}

	latest := publish()
	// The agent subscribes to the names state.json lists: it starts
	// with a snapshot of all of them.
	if err := cache.WriteState(dir, cache.State{Configs: names}); err != nil {
		t.Fatal(err)
	}
	var saved int64   // state.json's revision after the previous kill
	behind := 0       // kills after which state.json was behind the configs
	var logs []string // the agents' logs
	for kill := range kills {
		// The first kill comes in the middle of the first snapshot, while
		// a file is written; the second once the agent, started again,
		// has applied the whole snapshot. Then each new revision,
		// published while the agent is down, is cut short twice: once
		// the agent, started again, has finished what the earlier kill
		// cut short and written the new revision's version of the k-th
		// config, then once the agent, started again, has gone on to a
		// k-th config further on (from the first config to the last,
		// spread over the kills); every other time once the agent is
		// also writing a file.
		i := kill - 2
		if i >= 0 && i%2 == 0 {
			latest = publish()
		}
		p := startAgentProcess(t, dir, d.URL)
		k := n / 2
		if i >= 0 {
			k = i/2*(n/2-1)/(pairs-1) + i%2*n/2
		}
		what := fmt.Sprintf("the agent to write revision %d of %s", latest, names[k])
		cond := func() bool {
			if metaRevision(dir, names[k]) < latest {
				return false
			}
			if (kill+kill/2)%2 == 1 {
				return true
			}
			st, _ := cache.ReadState(dir)
			return writing(dir) || st.Revision == latest
		}
		if kill == 1 {
			what = fmt.Sprintf("state.json to name revision %d", latest)
			cond = func() bool {
				st, err := cache.ReadState(dir)
				return err == nil && st.Revision == latest
			}
		}
		p.until(t, what, cond)
		p.kill(t)
		logs = append(logs, p.log.String())

		st, err := cache.ReadState(dir)
		if err != nil {
			t.Fatalf("kill %d: %v", kill+1, err)
		}
		if st.Revision < saved || st.Revision > latest {
			t.Fatalf("kill %d: state.json names revision %d; it named %d before, the latest is %d", kill+1, st.Revision, saved, latest)
		}
		if !slices.Equal(st.Configs, names) {
			t.Fatalf("kill %d: state.json subscribes to %d configs %q…, want the %d configs", kill+1, len(st.Configs), st.Configs[:min(3, len(st.Configs))], n)
		}
		newer := 0 // configs whose cached version is newer than state.json's revision
		for _, name := range names {
			cv, ok, err := cached(dir, name)
			if err != nil {
				t.Fatalf("kill %d: %v", kill+1, err)
			}
			if !ok {
				if st.Revision > 0 {
					t.Fatalf("kill %d: state.json names revision %d, the cache does not hold %s", kill+1, st.Revision, name)
				}
				continue
			}
			if want := at(name, st.Revision); cv.Revision < want {
				t.Fatalf("kill %d: state.json names revision %d, the cache holds revision %d of %s, want %d or newer", kill+1, st.Revision, cv.Revision, name, want)
			}
			data, ok := hist[name][cv.Revision]
			if !ok || cv.Deleted != (data == nil) || !cv.Deleted && (!bytes.Equal(cv.Data, data) || cv.Type != "Job" || !cv.Compiled) {
				t.Fatalf("kill %d: the cache holds %+v, not a version revision %d committed", kill+1, cv, cv.Revision)
			}
			if cv.Revision > at(name, st.Revision) {
				newer++
			}
		}
		if newer > 0 {
			behind++
		}
		t.Logf("kill %d, after %s: state.json names revision %d of %d, %d configs newer", kill+1, what, st.Revision, latest, newer)
		saved = st.Revision
	}
	if behind == 0 {
		t.Errorf("state.json was never behind the configs after a kill: no kill came while the agent applied a revision")
	}

	// Started again, the agent replays what it missed and takes one more
	// revision.
	latest = publish()
	p := startAgentProcess(t, dir, d.URL)
	p.until(t, fmt.Sprintf("state.json to name revision %d", latest), func() bool {
		st, err := cache.ReadState(dir)
		return err == nil && st.Revision == latest
	})
	daemon, err := wire.NewClient(d.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"state.json"}
	for _, name := range names {
		cv, ok, err := cached(dir, name)
		if err != nil || !ok {
			t.Fatalf("after the restart: %s: held %v, %v", name, ok, err)
		}
		want = append(want, "meta/"+name+".json")
		dv, err := daemon.Config(context.Background(), name)
		if se, ok := errors.AsType[*wire.StatusError](err); ok && se.Code == http.StatusNotFound {
			if !cv.Deleted || cv.Revision != at(name, latest) {
				t.Errorf("after the restart: the daemon does not have %s, the cache holds %+v", name, cv)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if cv.Deleted || cv.Revision != dv.Revision || cv.Commit != dv.Commit || cv.Type != dv.Type || cv.Compiled != dv.Compiled || !bytes.Equal(cv.Data, dv.Data) {
			t.Errorf("after the restart: the cache holds %+v of %s, the daemon serves %+v", cv, name, dv)
		}
		want = append(want, "data/"+name+".sha256-"+sha(cv.Data))
	}
	slices.Sort(want)
	var files []string
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(files, want) {
		var extra []string
		for _, f := range files {
			if _, found := slices.BinarySearch(want, f); !found {
				extra = append(extra, f)
			}
		}
		t.Errorf("after the restart: the cache holds %d files, want %d; not wanted: %q", len(files), len(want), extra)
	}
	p.kill(t)
	for i, log := range append(logs, p.log.String()) {
		if strings.Contains(log, "damaged") {
			t.Errorf("agent %d found damage:\n%s", i+1, log)
		}
	}
}
