// Package disttest runs the whole distribution in-process for tests of
// gates and their OpenFeature provider: a config repository in a temporary
// git repository (go-git), compiled by the real compiler, a real daemon
// (package daemon) tailing it and a real agent (package agent) of the
// daemon, on 127.0.0.1, with knobs to stop them and to set canary
// overrides.
package disttest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/wire"
)

// Host is the agent's host name.
const Host = "h"

// Heartbeat is the daemon's and the agent's heartbeat.
const Heartbeat = 50 * time.Millisecond

// Dist is a config repository with a daemon and an agent.
type Dist struct {
	t        testing.TB
	Root     string // the repository (a git work tree)
	git      *git.Repository
	when     time.Time
	data     string // the daemon's data directory
	Daemon   string // the daemon's URL
	Agent    string // the agent's URL
	CacheDir string // the agent's cache

	stopDaemon, stopAgent func()
}

// New writes files (path under the repository root to content), compiles
// and commits them, and starts a daemon and an agent. Everything stops when
// the test ends.
func New(t testing.TB, files map[string]string) *Dist {
	t.Helper()
	d := &Dist{t: t, Root: t.TempDir(), data: t.TempDir(), CacheDir: t.TempDir(), when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	g, err := git.PlainInit(d.Root, false)
	if err != nil {
		t.Fatal(err)
	}
	d.git = g
	for p, content := range files {
		d.Write(p, content)
	}
	d.Commit("first")
	d.startDaemon()
	d.startAgent()
	return d
}

// Write writes a file of the repository.
func (d *Dist) Write(p, content string) {
	d.t.Helper()
	full := filepath.Join(d.Root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// Remove removes a file of the repository.
func (d *Dist) Remove(p string) {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.Root, filepath.FromSlash(p))); err != nil {
		d.t.Fatal(err)
	}
}

// Read reads a file of the repository.
func (d *Dist) Read(p string) []byte {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.Root, filepath.FromSlash(p)))
	if err != nil {
		d.t.Fatal(err)
	}
	return data
}

// Commit compiles the repository (failing the test on any diagnostic) and
// commits everything.
func (d *Dist) Commit(msg string) {
	d.t.Helper()
	res, err := compiler.Build(context.Background(), d.Root, compiler.Options{Jobs: 1})
	if err != nil {
		d.t.Fatal(err)
	}
	if diags := res.Diags(); len(diags) > 0 {
		d.t.Fatalf("compile: %s", diags.Error())
	}
	wt, err := d.git.Worktree()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		d.t.Fatal(err)
	}
	d.when = d.when.Add(time.Minute)
	if _, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: d.when}}); err != nil {
		d.t.Fatal(err)
	}
}

// Head returns the hash of the last commit.
func (d *Dist) Head() string {
	d.t.Helper()
	ref, err := d.git.Head()
	if err != nil {
		d.t.Fatal(err)
	}
	return ref.Hash().String()
}

// Compiled compiles the config name of the working tree in memory, writing
// nothing, and returns its JSON: a candidate, as cfg canary pushes it.
func (d *Dist) Compiled(name string) []byte {
	d.t.Helper()
	out := compiler.New(os.DirFS(d.Root), compiler.Options{Jobs: 1}).Compile("source/" + name + ".cconf")
	if len(out.Diags) > 0 {
		d.t.Fatalf("compile: %s", out.Diags.Error())
	}
	return out.Data
}

func serve(t testing.TB, addr string, run func(ctx context.Context, ln net.Listener)) (string, func()) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // a port just closed may linger
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); run(ctx, ln) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func (d *Dist) startDaemon() {
	d.t.Helper()
	dm, err := daemon.New(daemon.Config{RepoPath: d.Root, DataDir: d.data, Token: "tok", Heartbeat: Heartbeat, Poll: 20 * time.Millisecond})
	if err != nil {
		d.t.Fatal(err)
	}
	addr := "127.0.0.1:0"
	if d.Daemon != "" {
		addr = d.Daemon[len("http://"):]
	}
	a, stop := serve(d.t, addr, func(ctx context.Context, ln net.Listener) { dm.Serve(ctx, ln); dm.Close() })
	d.Daemon, d.stopDaemon = "http://"+a, stop
}

func (d *Dist) startAgent() {
	d.t.Helper()
	a, err := agent.New(agent.Config{Daemons: []string{d.Daemon}, Host: Host, CacheDir: d.CacheDir, Token: "tok", HeartbeatTimeout: 6 * Heartbeat, Heartbeat: Heartbeat})
	if err != nil {
		d.t.Fatal(err)
	}
	addr := "127.0.0.1:0"
	if d.Agent != "" {
		addr = d.Agent[len("http://"):]
	}
	ad, stop := serve(d.t, addr, func(ctx context.Context, ln net.Listener) { a.Serve(ctx, ln) })
	d.Agent, d.stopAgent = "http://"+ad, stop
}

// StopDaemon stops the daemon; StartDaemon starts it again, on the same
// address and store.
func (d *Dist) StopDaemon()  { d.stopDaemon() }
func (d *Dist) StartDaemon() { d.startDaemon() }

// StopAgent stops the agent; StartAgent starts it again, on the same
// address and cache.
func (d *Dist) StopAgent()  { d.stopAgent() }
func (d *Dist) StartAgent() { d.startAgent() }

// Client returns a client of the agent that reads its cache when it is
// down, polling every 10 ms.
func (d *Dist) Client() *client.Client {
	d.t.Helper()
	c, err := client.New(client.Options{AgentURL: d.Agent, CacheDir: d.CacheDir, PollInterval: 10 * time.Millisecond})
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// PutOverride serves data instead of the config on the agent's host, as a
// canary does, under a lease of a minute.
func (d *Dist) PutOverride(id, config, typ string, data []byte) {
	d.t.Helper()
	dm, err := canary.NewDaemon(d.Daemon, "tok")
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := dm.PutOverride(context.Background(), wire.Override{ID: id, Config: config, Hosts: []string{Host}, Type: typ, Compiled: true, Data: data, LeaseSeconds: 60}); err != nil {
		d.t.Fatal(err)
	}
}

// DeleteOverride removes an override.
func (d *Dist) DeleteOverride(id string) {
	d.t.Helper()
	dm, err := canary.NewDaemon(d.Daemon, "tok")
	if err != nil {
		d.t.Fatal(err)
	}
	if err := dm.DeleteOverride(context.Background(), id); err != nil {
		d.t.Fatal(err)
	}
}
