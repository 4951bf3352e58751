package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/internal/durable"
	"github.com/cfg-dev/cfg/store"
)

// storeWith makes a data directory whose store holds one revision of n
// configs named svcNN/configNNNNN.
func storeWith(t testing.TB, n int) string {
	t.Helper()
	data := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(data, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var cs []store.ConfigVersion
	for i := range n {
		cs = append(cs, store.ConfigVersion{Name: fmt.Sprintf("svc%02d/config%05d", i%50, i), Compiled: true, Data: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := st.Append(context.Background(), store.Revision{Number: 1, Commit: "c1", Time: time.Now()}, store.Entries(cs)); err != nil {
		t.Fatal(err)
	}
	return data
}

// streamWriter is a ResponseWriter for a watch stream that ends the
// stream (cancels its request) after lines lines.
type streamWriter struct {
	header http.Header
	buf    bytes.Buffer
	lines  int
	cancel func()
}

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(int)     {}
func (w *streamWriter) Flush()              {}
func (w *streamWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	if w.lines -= bytes.Count(b, []byte("\n")); w.lines <= 0 {
		w.cancel()
	}
	return len(b), nil
}

// TestWatchOpenCost guards what opening a watch costs: a watch of one
// config (its snapshot and first heartbeat) allocates as much in a store
// of 20,000 configs as in one of 10. Reading the latest revision's list of
// every config name, or every config, would cost tens of thousands more.
func TestWatchOpenCost(t *testing.T) {
	allocs := func(n int) float64 {
		r := newTestRepo(t)
		r.commit("materialized_configs/x.json", "x")
		d, err := New(Config{RepoPath: r.dir, DataDir: storeWith(t, n), Token: token, Heartbeat: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		h := d.Handler()
		return testing.AllocsPerRun(20, func() {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", "/v1/watch?configs=svc07/config00007", nil)
			w := &streamWriter{header: http.Header{}, lines: 2, cancel: cancel}
			h.ServeHTTP(w, req)
			if !bytes.Contains(w.buf.Bytes(), []byte(`"name":"svc07/config00007","revision":1`)) {
				t.Fatalf("watch stream: %s", w.buf.Bytes())
			}
		})
	}
	small, big := allocs(10), allocs(20000)
	t.Logf("opening a watch of one config: %.0f allocations with 10 configs, %.0f with 20,000", small, big)
	if big > small+10 {
		t.Errorf("opening a watch of one config: %.0f allocations with 20,000 configs, %.0f with 10: it reads more than the config", big, small)
	}
}

// TestStoreIdentity checks that every response and every event says
// which store its revisions are of, and that the identity is the store's:
// the same after a restart, another for another store.
func TestStoreIdentity(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	data := t.TempDir()
	d := startDaemon(t, r.dir, data)
	b, err := os.ReadFile(filepath.Join(data, StoreFile+store.IdentitySuffix))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(b))
	for _, path := range []string{"/v1/configs/a", "/v1/configs/nope", "/v1/revisions/latest", "/v1/revisions/9", "/v1/hosts", "/v1/overrides", "/healthz", "/metrics", "/v2/nope", "/v1/watch"} {
		code, _, h := d.do("GET", path, "", nil)
		if h.Get("Cfg-Store") != id || h.Get("Cfg-Latest-Revision") != "1" {
			t.Errorf("GET %s: %d, Cfg-Store %q, Cfg-Latest-Revision %q; want %q and 1", path, code, h.Get("Cfg-Store"), h.Get("Cfg-Latest-Revision"), id)
		}
	}
	code, body, h := d.do("GET", "/v1/watch?configs=a&from=5", "", nil)
	if code != 400 || h.Get("Cfg-Store") != id || h.Get("Cfg-Latest-Revision") != "1" {
		t.Errorf("GET a watch from beyond the latest revision: %d %s, %v", code, body, h)
	}

	// Every kind of event carries the store.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events []map[string]any
	for _, q := range []string{"configs=a&host=web-1", "configs=a&from=0"} {
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/v1/watch?"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(resp.Body)
		for range 3 {
			var ev map[string]any
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("watch %s: %v", q, err)
			}
			events = append(events, ev)
			if ev["type"] == "heartbeat" && !strings.Contains(q, "host") {
				break
			}
		}
		resp.Body.Close()
	}
	types := map[string]bool{}
	for _, ev := range events {
		types[ev["type"].(string)] = true
		if ev["store"] != id {
			t.Errorf("event %v: store %v, want %s", ev, ev["store"], id)
		}
	}
	if len(types) != 4 {
		t.Errorf("event types %v, want snapshot, update, heartbeat and overrides", types)
	}
	// A live update, which the hub encodes.
	w := d.watch("configs=a&from=1")
	r.commit("materialized_configs/a.json", "a2")
	if e := w.next(); e.Type != "update" || e.Store != id {
		t.Errorf("live update %s: store %q, want %s", e, e.Store, id)
	}
	d.stop()

	d = startDaemon(t, r.dir, data)
	if _, _, h := d.do("GET", "/healthz", "", nil); h.Get("Cfg-Store") != id {
		t.Errorf("identity after a restart %q, want %q", h.Get("Cfg-Store"), id)
	}
	other := startDaemon(t, r.dir, t.TempDir())
	if _, _, h := other.do("GET", "/healthz", "", nil); h.Get("Cfg-Store") == id || len(h.Get("Cfg-Store")) != 32 {
		t.Errorf("identity of another store %q, the first's is %q", h.Get("Cfg-Store"), id)
	}
}

// logBuffer collects a daemon's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// flipAll flips a bit of every copy of s in the file at path (bbolt keeps
// older copies of pages in free pages).
func flipAll(t *testing.T, path, s string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	for i := bytes.Index(data, []byte(s)); i >= 0; i = bytes.Index(data, []byte(s)) {
		data[i+2] ^= 1
		if _, err := f.WriteAt(data[i+2:i+3], int64(i+2)); err != nil {
			t.Fatal(err)
		}
		found = true
	}
	if !found {
		t.Fatalf("%q is not in %s", s, path)
	}
}

// TestDamagedValueNotServed flips a byte of a stored value under a
// running daemon: the value is never served (with its commit or
// otherwise); the read fails, is logged and counted, and the daemon is no
// longer healthy. Started again, the daemon refuses the store.
func TestDamagedValueNotServed(t *testing.T) {
	r := newTestRepo(t)
	const value = `{"secret":"VALUE-MARKER-0123456789"}`
	r.commit("materialized_configs/a.json", value, "materialized_configs/b.json", "b1")
	data := t.TempDir()
	logs := &logBuffer{}
	d := serve(t, Config{RepoPath: r.dir, DataDir: data, Token: token, Heartbeat: 200 * time.Millisecond, Poll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	if code, body, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 || body != value {
		t.Fatalf("GET a: %d %s", code, body)
	}

	path := filepath.Join(data, StoreFile)
	flipAll(t, path, "VALUE-MARKER")
	want := `{"error":"reading the store: config \"a\" at revision 1: store damaged: value fails its checksum"}` + "\n"
	if code, body, _ := d.do("GET", "/v1/configs/a", "", nil); code != 500 || body != want {
		t.Errorf("GET of a damaged config: %d %s, want 500 %s", code, body, want)
	}
	// A watch stream is cut before the damaged value, without sending it
	// and without the end of its body: the client cannot take the event
	// it began for whole.
	for _, q := range []string{"configs=a,b", "configs=*&from=0"} {
		req, _ := http.NewRequest("GET", d.url+"/v1/watch?"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), "data") || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("watch %s over a damaged value: %d %q, %v; want 200, no data and the stream cut (%v)", q, resp.StatusCode, body, err, io.ErrUnexpectedEOF)
		}
	}
	if code, body, _ := d.do("GET", "/v1/configs/b", "", nil); code != 200 || body != "b1" {
		t.Errorf("GET of an intact config: %d %s", code, body)
	}
	if _, body, _ := d.do("GET", "/metrics", "", nil); !strings.Contains(body, "\ncfg_store_damaged_reads_total 3\n") {
		t.Errorf("metrics:\n%s", grep(body, "damaged"))
	}
	if code, body, _ := d.do("GET", "/healthz", "", nil); code != 503 || body != `{"error":"store damaged: 3 reads failed their checks; restart the daemon to check the whole store"}`+"\n" {
		t.Errorf("healthz with a damaged store: %d %s", code, body)
	}
	for _, line := range []string{
		`level=ERROR msg="reading the store" err="config \"a\" at revision 1: store damaged: value fails its checksum" url=/v1/configs/a`,
		`level=ERROR msg="reading the store for a watch stream" err="config \"a\" at revision 1: store damaged: value fails its checksum" url="/v1/watch?configs=a,b"`,
		`level=ERROR msg="reading the store for a watch stream" err="config \"a\" at revision 1: store damaged: value fails its checksum" url="/v1/watch?configs=*&from=0"`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log lacks %s:\n%s", line, logs)
		}
	}
	d.stop()

	_, err := New(Config{RepoPath: r.dir, DataDir: data, Token: token})
	if want := fmt.Sprintf("store %s: config \"a\" at revision 1: store damaged: value fails its checksum; restore the store from a backup, or move %s and %s.identity aside to start a new, empty store (agents then resynchronise from it)", path, path, path); err == nil || err.Error() != want {
		t.Errorf("New on a damaged store:\n got %v\nwant %s", err, want)
	}
}

// syncedDirs is durable.OS, recording what it is asked.
type syncedDirs struct{ calls []string }

func (r *syncedDirs) Mkdir(name string, perm fs.FileMode) error {
	r.calls = append(r.calls, "mkdir "+name)
	return durable.OS.Mkdir(name, perm)
}

func (r *syncedDirs) SyncDir(name string) error {
	r.calls = append(r.calls, "sync "+name)
	return durable.OS.SyncDir(name)
}

// TestDataDirMadeDurably starts a daemon whose data directory and its
// parent do not exist: it makes both, each synced in its parent once
// made (a power loss soon after the first start would otherwise take the
// directory back, with the store and its overrides in it), and opens its
// store there.
func TestDataDirMadeDurably(t *testing.T) {
	r := &syncedDirs{}
	defer func(old durable.Dirs) { dataDirs = old }(dataDirs)
	dataDirs = r
	top := t.TempDir()
	data := filepath.Join(top, "var", "cfg")
	d, err := New(Config{RepoPath: gitRepoWithACommit(t), DataDir: data, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := []string{"mkdir " + filepath.Dir(data), "sync " + top, "mkdir " + data, "sync " + filepath.Dir(data)}
	if diff := cmp.Diff(want, r.calls); diff != "" {
		t.Errorf("making the data directory (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(data, StoreFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the store: %v, %v", fi, err)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the data directory: %v, %v; want mode 0700", fi, err)
	}
}
