package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcdEnv, set to a data directory, makes cfgbench an embedded etcd server
// (etcdServer): the peer the -serve benchmark compares cfg serve with, in
// a process of its own so that its RSS is its own.
const etcdEnv = "CFGBENCH_ETCD_DIR"

// etcdMaxRequest is the most bytes of one etcd request: a config of up to
// 1 MiB (internal/synth cuts its sizes there), or a load transaction of
// many, fits.
const etcdMaxRequest = 32 << 20

// etcdServer runs an embedded etcd server in dir, on 127.0.0.1 ports of
// its own, writes its client address to stdout once it is ready, and
// serves until stdin closes.
func etcdServer(dir string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.MaxRequestBytes = etcdMaxRequest
	cfg.MaxTxnOps = 4096
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not start in 60 s")
	}
	fmt.Println(client.Host)
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes stdin
	return nil
}

// freePorts returns n TCP ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// etcdProcess is an embedded etcd server in a child process (etcdServer).
type etcdProcess struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan struct{}
	addr   string // the client address, host:port
}

// startEtcd starts etcdServer in a child process with its data in dir,
// logging to logFile, and waits until it serves.
func startEtcd(dir, logFile string) (*etcdProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	// etcd's collector as etcd runs it: Go's default, not cfgbench's.
	cmd.Env = append(os.Environ(), etcdEnv+"="+dir, "GOGC=100")
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	p := &etcdProcess{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { cmd.Wait(); log.Close(); close(p.exited) }()
	if err != nil {
		p.stop()
		b, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("etcd did not start: %v\n%s", err, b)
	}
	p.addr = strings.TrimSpace(line)
	return p, nil
}

// stop ends the etcd process: stdin closed, then SIGKILL after 10 s.
func (p *etcdProcess) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// etcdMain runs etcdServer if cfgbench was started as the etcd server, and
// reports whether it was.
func etcdMain() bool {
	dir, ok := os.LookupEnv(etcdEnv)
	if !ok {
		return false
	}
	if err := etcdServer(dir); err != nil {
		fmt.Fprintln(os.Stderr, "cfgbench: etcd:", err)
		os.Exit(1)
	}
	return true
}
