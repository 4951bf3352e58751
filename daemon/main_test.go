//go:build unix

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Environment of a test binary run as a daemon (childDaemon).
const (
	childEnv      = "CFG_DAEMON_TEST_CHILD" // the repository
	childDataEnv  = "CFG_DAEMON_TEST_DATA"
	childFDsEnv   = "CFG_DAEMON_TEST_FDS" // the file descriptor limit to run with
	childAddrFile = "CFG_DAEMON_TEST_ADDR_FILE"
)

func TestMain(m *testing.M) {
	if repo := os.Getenv(childEnv); repo != "" {
		if err := childDaemon(repo); err != nil {
			fmt.Fprintln(os.Stderr, "daemon:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	closeTestEtcd()
	os.Exit(code)
}

// childDaemon serves a daemon for repo, in a process of its own with the
// file descriptor limit the environment gives, until SIGTERM; it logs to
// stderr and writes its address to a file.
func childDaemon(repo string) error {
	if s := os.Getenv(childFDsEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return err
		}
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
		rl.Cur = n
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
	}
	d, err := New(Config{RepoPath: repo, DataDir: os.Getenv(childDataEnv), Token: token, Poll: 50 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
		MaxWatchesPerAddress: 100000, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addrFile := os.Getenv(childAddrFile)
	if err := os.WriteFile(addrFile+".tmp", []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return d.Serve(ctx, ln)
}
