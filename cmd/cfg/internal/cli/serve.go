package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/daemon"
)

// ServeOptions are the inputs of cfg serve.
type ServeOptions struct {
	Repo      string
	Branch    string
	DataDir   string
	Listen    string
	TokenFile string
	AddrFile  string
	Poll      time.Duration
	Heartbeat time.Duration
	// MaxConnections, MaxWatches, MaxWatchesPerAddress, MaxWatchBytes
	// and MaxWatchBytesPerAddress bound what clients may hold
	// (daemon.Config); zero means the daemon's default.
	MaxConnections          int
	MaxWatches              int
	MaxWatchesPerAddress    int
	MaxWatchBytes           int64
	MaxWatchBytesPerAddress int64
	// Etcd, if set, serves the store in an etcd cluster shared with other
	// daemons instead of one in DataDir.
	Etcd EtcdOptions
	// KeepRevisions is how many latest revisions keep their history (0:
	// all).
	KeepRevisions int64
}

func newServeCmd(f *Factory, runF func(*ServeOptions) error) *cobra.Command {
	opts := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the distribution daemon",
		Example: `  cfg serve --repo . --data-dir /var/lib/cfg --token-file token
  cfg serve --repo . --data-dir /var/lib/cfg --listen 127.0.0.1:0 --addr-file daemon.addr
  cfg serve --repo . --etcd http://etcd1:2379,http://etcd2:2379,http://etcd3:2379 --token-file token`,
		Long: `Serve runs the distribution daemon: it tails a branch of a git repository,
publishes every commit that changes materialized configs as one revision in
a durable store under --data-dir, and serves the HTTP API of docs/api.md
(configs, watch streams, hosts, /metrics, /healthz) until interrupted.

Started without a token (neither --token-file nor CFG_TOKEN), the daemon is
read-only, and says so in its log: it serves configs and watch streams, and
answers every write (agents' host reports, canary overrides and runs) with
403 naming --token-file. Agents still get their configs from it; cfg status
then lists no hosts and cfg canary cannot run.

The store is --data-dir/cfg.db, its identity recorded beside it in
cfg.db.identity. At every start the whole store is checked; a store that is
damaged, missing while its identity is recorded, or another store's, is
refused (exit 3) with what to do. A store written by an earlier cfg is
migrated.

Write endpoints need a token: the first line of --token-file, or CFG_TOKEN.

With --etcd instead of --data-dir, the store lives in an etcd cluster (its
client URLs, comma-separated), under the key prefix --etcd-prefix (default
/cfg/), and several daemons share it: every one serves configs and watch
streams, following what is published with one etcd watch; one of them,
elected through etcd, tails the branch and publishes, and when it stops
another takes over within --etcd-election-ttl (default 10s), resuming
from the last published commit. Every daemon needs the repository (a clone
of it); a daemon whose clone lacks the published commit waits for it
rather than publish. Overrides, host reports and canary runs are in etcd
too: an override set through one daemon reaches the hosts of every other,
and cfg status and cfg canary work through any daemon. TLS and
authentication take etcdctl's flags, prefixed: --etcd-cacert,
--etcd-cert, --etcd-key, --etcd-user, and the password in
CFG_ETCD_PASSWORD or the first line of --etcd-password-file. /healthz says
whether the daemon publishes and which daemon does.

--keep-revisions N makes the publisher drop the history of the revisions
before the N latest after it publishes (default 0: keep all): a watch from
a revision older than that gets a snapshot instead.

What clients can make the daemon hold is bounded. It serves at most
--max-connections connections at once (default 10000, or the file
descriptor limit less 128 kept for the store and the repository, if that is
less); others wait to be accepted. It serves at most --max-watches watch
streams, and --max-watches-per-address from one address; the parameters
(query or body) of the open watch streams take at most --max-watch-bytes,
and --max-watch-bytes-per-address from one address (a stream holds them
parsed while it lasts). It answers 503 with Retry-After above any of them,
before reading a watch's body. A request must be read within 30 s and its
headers within 10 s (at most 64 KiB of them); a keep-alive connection is
closed after 60 s without a request; a client that takes in none of a piece
(at most 32 KiB) of a response or a watch stream for 10 s is dropped.

The garbage collector runs at Go's default (GOGC=100), not at the compile
commands' GOGC=400; set GOMEMLIMIT to give the daemon a soft memory limit.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runServe(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Repo, "repo", ".", "the git repository (work tree or bare) to tail")
	cmd.Flags().StringVar(&opts.Branch, "branch", "", "the branch to tail (default: the branch HEAD points to)")
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", "", "where the daemon keeps its store (this or --etcd is required)")
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:7480", "address to serve the API on")
	cmd.Flags().StringVar(&opts.TokenFile, "token-file", "", "file whose first line is the token write requests need (default: $CFG_TOKEN; with neither, the daemon is read-only)")
	cmd.Flags().StringVar(&opts.AddrFile, "addr-file", "", "write the address actually listened on to this file (useful with port 0)")
	cmd.Flags().DurationVar(&opts.Poll, "poll", time.Second, "how often to poll the branch besides file notifications")
	cmd.Flags().DurationVar(&opts.Heartbeat, "heartbeat", daemon.DefaultHeartbeat, "heartbeat interval of watch streams")
	cmd.Flags().IntVar(&opts.MaxConnections, "max-connections", 0, "connections served at once (default 10000, or the file descriptor limit less 128 if less)")
	cmd.Flags().IntVar(&opts.MaxWatches, "max-watches", daemon.DefaultMaxWatches, "watch streams served at once")
	cmd.Flags().IntVar(&opts.MaxWatchesPerAddress, "max-watches-per-address", daemon.DefaultMaxWatchesPerAddress, "watch streams one remote address may hold")
	cmd.Flags().Int64Var(&opts.MaxWatchBytes, "max-watch-bytes", daemon.DefaultMaxWatchBytes, "bytes of parameters (query or body) the open watch streams may hold, at least 1 MiB")
	cmd.Flags().Int64Var(&opts.MaxWatchBytesPerAddress, "max-watch-bytes-per-address", daemon.DefaultMaxWatchBytesPerAddress, "bytes of watch parameters one remote address may hold, at least 1 MiB")
	cmd.Flags().Int64Var(&opts.KeepRevisions, "keep-revisions", 0, "keep the history of the N latest revisions only, compacting after publishing (0: keep all)")
	opts.Etcd.addFlags(cmd)
	return cmd
}

func runServe(f *Factory, cmd *cobra.Command, opts *ServeOptions) error {
	switch {
	case opts.DataDir == "" && len(opts.Etcd.Endpoints) == 0:
		return usageError(errors.New("no store: want --data-dir DIR, or --etcd URL[,URL...] for a store shared with other daemons"))
	case opts.DataDir != "" && len(opts.Etcd.Endpoints) > 0:
		return usageError(errors.New("--data-dir and --etcd: want one of them, not both"))
	case opts.KeepRevisions < 0:
		return usageError(fmt.Errorf("--keep-revisions: got %d, want 0 (keep all) or more", opts.KeepRevisions))
	}
	if err := opts.Etcd.check(); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"--max-connections", opts.MaxConnections}, {"--max-watches", opts.MaxWatches}, {"--max-watches-per-address", opts.MaxWatchesPerAddress}} {
		if f.n < 0 {
			return usageError(fmt.Errorf("%s: got %d, want 0 (the default) or more", f.name, f.n))
		}
	}
	for _, f := range []struct {
		name string
		n    int64
	}{{"--max-watch-bytes", opts.MaxWatchBytes}, {"--max-watch-bytes-per-address", opts.MaxWatchBytesPerAddress}} {
		if f.n != 0 && f.n < daemon.MaxBody {
			return usageError(fmt.Errorf("%s: got %d, want 0 (the default) or at least %d, the largest watch body", f.name, f.n, daemon.MaxBody))
		}
	}
	if opts.MaxWatchBytesPerAddress > opts.MaxWatchBytes && opts.MaxWatchBytes != 0 {
		return usageError(fmt.Errorf("--max-watch-bytes-per-address: got %d, want at most --max-watch-bytes, %d", opts.MaxWatchBytesPerAddress, opts.MaxWatchBytes))
	}
	token, err := readToken(opts.TokenFile)
	if errors.Is(err, errNoToken) {
		// A read-only daemon (daemon.Config.Token).
		token, err = "", nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(f.IO.Err, nil))
	cfg := daemon.Config{
		RepoPath:      opts.Repo,
		Branch:        opts.Branch,
		DataDir:       opts.DataDir,
		Token:         token,
		Poll:          opts.Poll,
		Heartbeat:     opts.Heartbeat,
		Logger:        log,
		KeepRevisions: opts.KeepRevisions,
		ElectionTTL:   opts.Etcd.ElectionTTL,

		MaxConnections:       opts.MaxConnections,
		MaxWatches:           opts.MaxWatches,
		MaxWatchesPerAddress: opts.MaxWatchesPerAddress,

		MaxWatchBytes:           opts.MaxWatchBytes,
		MaxWatchBytesPerAddress: opts.MaxWatchBytesPerAddress,
	}
	if len(opts.Etcd.Endpoints) > 0 {
		installGRPCLog(log.Handler())
		st, closeStore, err := opts.Etcd.open(cmd.Context(), log)
		if err != nil {
			return infraError(err)
		}
		defer closeStore()
		cfg.Store = st
	}
	// Listening first names the daemon by the address it serves on; the
	// address file is written once the daemon is made.
	ln, err := listen(opts.Listen, "")
	if err != nil {
		return err
	}
	defer ln.Close()
	cfg.Member = memberName(ln.Addr())
	d, err := daemon.New(cfg)
	if err != nil {
		return infraError(err)
	}
	defer d.Close()
	if err := writeAddrFile(ln, opts.AddrFile); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Err, "cfg serve: listening on http://%s\n", ln.Addr())
	if err := d.Serve(cmd.Context(), ln); err != nil {
		return infraError(err)
	}
	return nil
}

// errNoToken is the error of readToken when there is no token to read.
var errNoToken = errors.New("no token: give --token-file or set CFG_TOKEN")

// readToken reads the token from the first line of file, or from CFG_TOKEN.
func readToken(file string) (string, error) {
	if file == "" {
		if t := os.Getenv("CFG_TOKEN"); t != "" {
			return t, nil
		}
		return "", usageError(errNoToken)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", usageError(fmt.Errorf("--token-file: %w", err))
	}
	t, _, _ := strings.Cut(string(data), "\n")
	if t = strings.TrimSpace(t); t == "" {
		return "", usageError(fmt.Errorf("--token-file %s: empty", file))
	}
	return t, nil
}

// listen opens the listener and, with addrFile, writes its address there
// (writeAddrFile).
func listen(addr, addrFile string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, infraError(err)
	}
	if err := writeAddrFile(ln, addrFile); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// writeAddrFile writes the address of ln to addrFile, if it is set,
// atomically, so that a reader never sees half of it.
func writeAddrFile(ln net.Listener, addrFile string) error {
	if addrFile == "" {
		return nil
	}
	tmp := addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
		return infraError(err)
	}
	if err := os.Rename(tmp, addrFile); err != nil {
		return infraError(err)
	}
	return nil
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(fmt.Errorf("%s takes no arguments", cmd.Name()))
	}
	return nil
}
