package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDamagedStore damages the store of a real daemon's data directory in
// the ways a failing disk or a careless operator does, and starts cfg
// serve on it: it exits 3 with a clear error, never dies by a signal and
// never makes the store again as revision 1.
func TestDamagedStore(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	repo := configRepo(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	d := start(t, work, "serve", "--repo", repo, "--data-dir", data, "--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, "addr"), "--poll", "100ms")
	url := addr(t, filepath.Join(work, "addr"))
	eventually(t, 10*time.Second, "the daemon to publish", func() bool {
		_, code, _ := httpGet(url + "/healthz")
		return code == http.StatusOK
	})
	setMemory(t, repo, 40000)
	eventually(t, 10*time.Second, "revision 2", func() bool {
		body, _, _ := httpGet(url + "/v1/revisions/latest")
		return strings.Contains(body, `"revision":2`)
	})
	d.kill()
	store := filepath.Join(data, "cfg.db")
	orig, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	remedy := fmt.Sprintf("; restore the store from a backup, or move %s and %s.identity aside to start a new, empty store (agents then resynchronise from it)", store, store)

	tests := []struct {
		name   string
		damage func()
		want   string // the error, up to the remedy
	}{
		{"truncated to 0", func() { os.Truncate(store, 0) }, "empty file (0 bytes)"},
		{"truncated to half", func() { os.Truncate(store, int64(len(orig)/2)) }, fmt.Sprintf("truncated: %d bytes, but its last transaction uses", len(orig)/2)},
		{"truncated to 8 KB", func() { os.Truncate(store, 8192) }, "truncated: 8192 bytes, but its last transaction uses"},
		{"a value's bytes flipped", func() {
			b := bytes.Clone(orig)
			// Every copy of the second revision's data, in the page in use
			// and in older copies of it.
			for i := bytes.Index(b, []byte(`"memory_mb": 40000`)); i >= 0; i = bytes.Index(b, []byte(`"memory_mb": 40000`)) {
				b[i+14] = '9'
			}
			os.WriteFile(store, b, 0o600)
		}, `config "feed/cache_job" at revision 2: store damaged: value fails its checksum`},
		{"missing", func() { os.Remove(store) }, fmt.Sprintf("missing, but %s.identity records store", store)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(store, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			tt.damage()
			cmd := exec.Command("cfg", "serve", "--repo", repo, "--data-dir", data, "--listen", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), "CFG_TOKEN=e2e-token")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("cfg serve started on a damaged store:\n%s", stderr.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("cfg serve: %v, want exit status 3", err)
			}
			if ws := exit.Sys().(syscall.WaitStatus); ws.Signaled() || exit.ExitCode() != 3 {
				t.Fatalf("cfg serve: %v, want exit status 3\n%s", err, stderr.String())
			}
			want := "cfg: store " + store + ": " + tt.want
			if got := stderr.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, remedy+"\n") || strings.Count(got, "\n") != 1 {
				t.Errorf("cfg serve's error:\n%s\nwant\n%s...%s", got, want, remedy)
			}
		})
	}

	// Moved aside as the error says, the store starts anew, with another
	// identity.
	os.WriteFile(store, orig, 0o600)
	oldID, _ := os.ReadFile(store + ".identity")
	os.Rename(store, store+".damaged")
	os.Rename(store+".identity", store+".identity.damaged")
	os.Remove(filepath.Join(work, "addr"))
	start(t, work, "serve", "--repo", repo, "--data-dir", data, "--listen", "127.0.0.1:0", "--addr-file", filepath.Join(work, "addr"))
	url = addr(t, filepath.Join(work, "addr"))
	eventually(t, 10*time.Second, "the new store to publish", func() bool {
		_, code, _ := httpGet(url + "/healthz")
		return code == http.StatusOK
	})
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("Cfg-Store"); len(id) != 32 || id == strings.TrimSpace(string(oldID)) {
		t.Errorf("the new store's identity %q, the old one's %q", id, oldID)
	}
}
