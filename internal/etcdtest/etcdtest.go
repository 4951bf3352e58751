// Package etcdtest runs an etcd cluster inside a test binary: real etcd
// members (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1, each with its
// own data directory, for the tests of what cfg keeps in etcd.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	dir       string
	Members   []*embed.Etcd
	Endpoints []string // the members' client URLs
}

// Start starts a cluster of n members with their data under dir and waits
// until it has a leader, for at most a minute. Members do not sync their
// writes to disk: the tests stop members, they do not crash machines, and
// a machine shared with other test runs has little disk time to spare.
func Start(dir string, n int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
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
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenPeerUrls = []url.URL{peer(i)}
		cfg.AdvertisePeerUrls = []url.URL{peer(i)}
		cfg.ListenClientUrls = []url.URL{client(i)}
		cfg.AdvertiseClientUrls = []url.URL{client(i)}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "cfg-test"
		// Members log their own shutdown as errors: the tests' failures
		// say what went wrong.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("starting etcd member %s: %w", cfg.Name, err)
		}
		c.Members = append(c.Members, e)
	}
	timeout := time.After(time.Minute)
	for _, e := range c.Members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Close()
			return nil, fmt.Errorf("etcd member %s: %w", e.Config().Name, err)
		case <-timeout:
			c.Close()
			return nil, errors.New("etcd cluster not ready after a minute")
		}
	}
	return c, nil
}

// Client returns a new client of every member; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 10 * time.Second})
}

// Close stops every member and removes their data.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, e := range c.Members {
		wg.Go(e.Close)
	}
	wg.Wait()
	os.RemoveAll(c.dir)
}

// freePorts returns n ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
