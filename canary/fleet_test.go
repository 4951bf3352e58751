package canary

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/wire"
)

// The HTTP client of the daemon's API, against a real daemon.
func TestDaemonClient(t *testing.T) {
	repo := t.TempDir()
	g, err := git.PlainInit(repo, false)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(repo, "materialized_configs", "demo", "service.json")
	os.MkdirAll(filepath.Dir(file), 0o755)
	os.WriteFile(file, []byte(`{"mode":"old"}`), 0o644)
	wt, _ := g.Worktree()
	wt.AddWithOptions(&git.AddOptions{All: true})
	commit, err := wt.Commit("one", &git.CommitOptions{Author: &object.Signature{Name: "T", Email: "t@example.com", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	dm, err := daemon.New(daemon.Config{RepoPath: repo, DataDir: t.TempDir(), Token: "tok", Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dm.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dm.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	d, err := NewDaemon("http://"+ln.Addr().String(), "tok")
	if err != nil {
		t.Fatal(err)
	}

	var rev int64
	var c string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rev, c, err = d.Current(ctx, "demo/service"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || rev != 1 || c != commit.String() {
		t.Fatalf("Current: %d %s %v, want revision 1 of %s", rev, c, err, commit)
	}
	// A name reaches the daemon whole, escaped: one that is not a config
	// name is refused under that name, never read as another config.
	for _, name := range []string{"demo/service?x", "demo/service#x", "demo%2Fservice"} {
		if _, _, err := d.Current(ctx, name); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("config name %q", name)) {
			t.Errorf("Current(%q): got %v, want the daemon to refuse the name", name, err)
		}
	}
	if _, _, err := d.Current(ctx, "demo/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Current of a config the daemon does not have: %v", err)
	}
	o, err := d.PutOverride(ctx, wire.Override{ID: "run-1", Config: "demo/service", Hosts: []string{"web-1"}, Compiled: true, Data: []byte(`{"mode":"new"}`), LeaseSeconds: 30})
	if err != nil || o.Version != 1 || o.Data != nil || !o.Expires.After(time.Now()) {
		t.Errorf("PutOverride: %+v, %v", o, err)
	}
	if err := d.RenewOverride(ctx, "run-1"); err != nil {
		t.Errorf("RenewOverride: %v", err)
	}
	if err := d.DeleteOverride(ctx, "run-1"); err != nil {
		t.Errorf("DeleteOverride: %v", err)
	}
	if err := d.DeleteOverride(ctx, "run-1"); err != nil {
		t.Errorf("DeleteOverride of an override already gone: %v", err)
	}
	if err := d.RenewOverride(ctx, "run-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RenewOverride after the delete: %v, want ErrNotFound", err)
	}
	if _, err := mustDaemon(t, d.URL(), "wrong").PutOverride(ctx, wire.Override{ID: "run-2", Config: "demo/service", Hosts: []string{"web-1"}, Data: []byte("x"), LeaseSeconds: 5}); err == nil {
		t.Error("PutOverride with a wrong token succeeded")
	}
	for _, r := range []wire.Run{
		{ID: "run-1", Config: "demo/service", Status: wire.RunReverted, Started: time.Now(), Candidate: "abc"},
		{ID: "run-2", Config: "demo/service", Status: wire.RunLanded, Started: time.Now()},
	} {
		if err := d.PutRun(ctx, r); err != nil {
			t.Fatalf("PutRun: %v", err)
		}
	}
	runs, err := d.Runs(ctx)
	reverted, err2 := d.RevertedRuns(ctx, "demo/service")
	if err != nil || err2 != nil || len(runs) != 2 || len(reverted) != 1 || reverted[0].ID != "run-1" || reverted[0].Candidate != "abc" {
		t.Errorf("Runs: %+v %v; RevertedRuns: %+v %v", runs, err, reverted, err2)
	}
	if hosts, err := d.Hosts(ctx); err != nil || len(hosts) != 0 {
		t.Errorf("Hosts: %+v, %v", hosts, err)
	}
}

func mustDaemon(t *testing.T, base, token string) *Daemon {
	t.Helper()
	d, err := NewDaemon(base, token)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
