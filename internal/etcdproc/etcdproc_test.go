package etcdproc

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestCluster: three member processes elect a leader and take writes;
// with the leader killed they still do; with two of three down they do
// not, and say so; a member restarted on its data has every write made.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := Start(Options{Bin: bin, Dir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		if t.Failed() {
			for i := range c.Endpoints {
				b, _ := os.ReadFile(c.LogFile(i))
				t.Logf("member %d:\n%s", i, b)
			}
		}
	}()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(k string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, k, "v")
		return err
	}
	if err := put("a"); err != nil {
		t.Fatal(err)
	}

	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader after Start")
	}
	c.Kill(leader)
	if pid := c.PID(leader); pid != 0 {
		t.Fatalf("the killed member has pid %d", pid)
	}
	if _, err := c.WaitLeader(time.Minute); err != nil {
		t.Fatal(err)
	}
	if !c.Quorum(10 * time.Second) {
		t.Fatal("two of three members up: no quorum")
	}
	if err := put("b"); err != nil {
		t.Fatalf("a write with one member down: %v", err)
	}

	other := c.Up()[0]
	c.Kill(other)
	if c.Quorum(2 * time.Second) {
		t.Fatal("one of three members up: a quorum")
	}
	if err := c.Restart(other); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if !c.Quorum(10 * time.Second) {
		t.Fatal("every member up again: no quorum")
	}
	if err := c.Restart(leader); err == nil {
		t.Error("Restart of a running member: no error")
	}
	// A write made while a member was down is read through it.
	one, err := c.client(c.Endpoints[leader])
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := one.Get(ctx, "b")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("b from the restarted member: %v %v", resp, err)
	}
}
