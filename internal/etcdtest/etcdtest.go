// Package etcdtest runs an etcd cluster inside a test binary: real etcd
// members (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1, each with its
// own data directory, for the tests of what cfg keeps in etcd.
package etcdtest

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cfg-dev/cfg/internal/freeport"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	dir       string
	configs   []func() *embed.Config
	Members   []*embed.Etcd // nil while stopped
	Endpoints []string      // the members' client URLs
}

// Start starts a cluster of n members with their data under dir and waits
// until it has a leader, for at most a minute. Members do not sync their
// writes to disk: the tests stop members, they do not crash machines, and
// a machine shared with other test runs has little disk time to spare.
func Start(dir string, n int) (*Cluster, error) {
	ports, err := freeport.Ports(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	var initial []string
	peer := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i])} }
	client := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])} }
	for i := range n {
		u := peer(i)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, u.String()))
		cu := client(i)
		c.Endpoints = append(c.Endpoints, cu.String())
	}
	for i := range n {
		c.configs = append(c.configs, func() *embed.Config {
			cfg := embed.NewConfig()
			cfg.Name = fmt.Sprintf("m%d", i)
			cfg.Dir = filepath.Join(dir, cfg.Name)
			cfg.ListenPeerUrls = []url.URL{peer(i)}
			cfg.AdvertisePeerUrls = []url.URL{peer(i)}
			cfg.ListenClientUrls = []url.URL{client(i)}
			cfg.AdvertiseClientUrls = []url.URL{client(i)}
			cfg.InitialCluster = strings.Join(initial, ",")
			cfg.InitialClusterToken = "cfg-test"
			// Members log their own shutdown as errors: the tests'
			// failures say what went wrong.
			cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
			cfg.UnsafeNoFsync = true
			return cfg
		})
		c.Members = append(c.Members, nil)
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.wait(c.Members); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// start starts member i.
func (c *Cluster) start(i int) error {
	cfg := c.configs[i]()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting etcd member %s: %w", cfg.Name, err)
	}
	c.Members[i] = e
	return nil
}

// wait waits until every member of members is ready, for at most a
// minute.
func (c *Cluster) wait(members []*embed.Etcd) error {
	timeout := time.After(time.Minute)
	for _, e := range members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			return fmt.Errorf("etcd member %s: %w", e.Config().Name, err)
		case <-timeout:
			return errors.New("etcd cluster not ready after a minute")
		}
	}
	return nil
}

// Stop stops member i, as if its process ended.
func (c *Cluster) Stop(i int) {
	c.Members[i].Close()
	c.Members[i] = nil
}

// Restart starts member i again, with the data it had, and waits until
// it is ready: until the cluster has a quorum with it.
func (c *Cluster) Restart(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.wait(c.Members[i : i+1])
}

// Leader returns the index of the member that leads, or -1.
func (c *Cluster) Leader() int {
	for i, e := range c.Members {
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// WaitApplied waits, for at most a minute, until every running member
// has applied all that the leader had committed when it was called: a
// request sent then to any member (a client picks one) sees what was
// written before, a compaction included.
func (c *Cluster) WaitApplied() error {
	l := c.Leader()
	if l < 0 {
		return errors.New("etcd cluster without a leader")
	}
	committed := c.Members[l].Server.CommittedIndex()
	deadline := time.Now().Add(time.Minute)
	for _, e := range c.Members {
		for e != nil && e.Server.AppliedIndex() < committed {
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd member %s has applied %d of the %d entries committed, after a minute", e.Config().Name, e.Server.AppliedIndex(), committed)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// Client returns a new client of every member; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 10 * time.Second})
}

// Close stops every member and removes their data.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, e := range c.Members {
		if e != nil {
			wg.Go(e.Close)
		}
	}
	wg.Wait()
	os.RemoveAll(c.dir)
}
