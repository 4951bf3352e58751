// Package etcdproc runs an etcd cluster of real member processes on
// 127.0.0.1: the etcd server of the release cfg depends on, built from
// internal/etcdmember with go build, each member with its own data
// directory and log. The cluster tests and benchmarks use it to kill a
// member (SIGKILL), restart it on its data, and take quorum away.
package etcdproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/internal/freeport"
)

// Build builds the member program into dir and returns its path. It runs
// the go command, so it needs the module's source: it is for tests and
// benchmarks run from the repository.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "etcd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/cfg-dev/cfg/internal/etcdmember").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the etcd member: %w\n%s", err, out)
	}
	return bin, nil
}

// Options are how a cluster is run.
type Options struct {
	Bin     string // the member program (Build)
	Dir     string // where the members keep their data and logs
	Members int    // how many members; 3 if 0
	// NoFsync runs the members with --unsafe-no-fsync: a member killed
	// loses nothing the kernel was given, only a machine that stops
	// would. Tests set it (a machine shared with other tests has little
	// disk time to spare); benchmarks do not.
	NoFsync bool
	// Args are more flags of every member (e.g. --max-request-bytes).
	Args []string
}

// Cluster is a running cluster.
type Cluster struct {
	o         Options
	Endpoints []string // the members' client URLs, by member
	peers     []string // the members' peer URLs, by member

	mu      sync.Mutex
	members []*member // nil while a member is down
}

type member struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has ended
	log  *os.File
}

// Start starts the cluster's members on free ports and waits until they
// have elected a leader, for at most a minute.
func Start(o Options) (*Cluster, error) {
	if o.Members == 0 {
		o.Members = 3
	}
	ports, err := freeport.Ports(2 * o.Members)
	if err != nil {
		return nil, err
	}
	c := &Cluster{o: o, members: make([]*member, o.Members)}
	for i := range o.Members {
		c.peers = append(c.peers, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
	}
	for i := range o.Members {
		if err := c.start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, err := c.WaitLeader(time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// name is member i's name.
func name(i int) string { return fmt.Sprintf("m%d", i) }

// start starts member i's process, on its data if it has some.
func (c *Cluster) start(i int) error {
	var initial []string
	for j, p := range c.peers {
		initial = append(initial, name(j)+"="+p)
	}
	args := []string{
		"--name", name(i),
		"--data-dir", filepath.Join(c.o.Dir, name(i)),
		"--listen-peer-urls", c.peers[i], "--initial-advertise-peer-urls", c.peers[i],
		"--listen-client-urls", c.Endpoints[i], "--advertise-client-urls", c.Endpoints[i],
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-token", "cfg-etcdproc",
		"--initial-cluster-state", "new", // ignored once the member has data
		"--log-level", "warn",
	}
	if c.o.NoFsync {
		args = append(args, "--unsafe-no-fsync")
	}
	args = append(args, c.o.Args...)
	if err := os.MkdirAll(c.o.Dir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(c.LogFile(i), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.o.Bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting etcd member %s: %w", name(i), err)
	}
	m := &member{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { cmd.Wait(); log.Close(); close(m.done) }()
	c.mu.Lock()
	c.members[i] = m
	c.mu.Unlock()
	return nil
}

// LogFile is the file member i logs to (every run of it, appended).
func (c *Cluster) LogFile(i int) string { return filepath.Join(c.o.Dir, name(i)+".log") }

// PID returns the process ID of member i, or 0 while it is down.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[i]; m != nil {
		return m.cmd.Process.Pid
	}
	return 0
}

// Kill ends member i with SIGKILL, as a crash would, and waits until its
// process has ended.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if m == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// Restart starts member i again on the data it had, and waits, for at
// most a minute, until it answers and knows a leader: once a quorum of
// members runs, until it is part of it.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	up := c.members[i] != nil
	c.mu.Unlock()
	if up {
		return fmt.Errorf("etcd member %s is running", name(i))
	}
	if err := c.start(i); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if c.leaderOf(i) != 0 {
			return nil
		}
		if err := c.exited(i); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd member %s knows no leader after a minute (log %s)", name(i), c.LogFile(i))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exited returns an error if member i's process has ended.
func (c *Cluster) exited(i int) error {
	c.mu.Lock()
	m := c.members[i]
	c.mu.Unlock()
	if m == nil {
		return fmt.Errorf("etcd member %s is down", name(i))
	}
	select {
	case <-m.done:
		return fmt.Errorf("etcd member %s exited: %v (log %s)", name(i), m.cmd.ProcessState, c.LogFile(i))
	default:
		return nil
	}
}

// Up returns the members whose processes run.
func (c *Cluster) Up() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []int
	for i, m := range c.members {
		if m != nil {
			up = append(up, i)
		}
	}
	return up
}

// leaderOf returns the ID of the leader member i knows, or 0 if it knows
// none or does not answer within a second.
func (c *Cluster) leaderOf(i int) uint64 {
	cli, err := c.client(c.Endpoints[i])
	if err != nil {
		return 0
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := cli.Status(ctx, c.Endpoints[i])
	if err != nil || len(st.Errors) > 0 {
		return 0
	}
	return st.Leader
}

// Leader returns the member that leads, as every running member knows
// it, or -1 if they know none or do not agree.
func (c *Cluster) Leader() int {
	leader, at := uint64(0), -1
	for _, i := range c.Up() {
		cli, err := c.client(c.Endpoints[i])
		if err != nil {
			return -1
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, c.Endpoints[i])
		cancel()
		cli.Close()
		if err != nil || st.Leader == 0 || leader != 0 && st.Leader != leader {
			return -1
		}
		leader = st.Leader
		if st.Header.MemberId == st.Leader {
			at = i
		}
	}
	return at
}

// WaitLeader waits until the running members agree on a leader, for at
// most timeout, and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := c.Leader(); l >= 0 {
			return l, nil
		}
		for _, i := range c.Up() {
			if err := c.exited(i); err != nil {
				return -1, err
			}
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("the etcd cluster has no leader after %s (logs in %s)", timeout, c.o.Dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Quorum reports whether the cluster has a quorum: whether a
// linearizable read, which the leader answers only once a majority of
// members confirm it still leads, succeeds within timeout.
func (c *Cluster) Quorum(timeout time.Duration) bool {
	cli, err := c.Client()
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = cli.Get(ctx, "etcdproc-quorum")
	return err == nil
}

// Client returns a new client of every member; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return c.client(c.Endpoints...)
}

func (c *Cluster) client(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Close kills every member; their data stays in the cluster's directory.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() { c.Kill(i) })
	}
	wg.Wait()
}
