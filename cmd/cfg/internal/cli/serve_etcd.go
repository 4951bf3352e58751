package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zapgrpc"
	"google.golang.org/grpc/grpclog"

	"github.com/cfg-dev/cfg/daemon"
	"github.com/cfg-dev/cfg/internal/slogzap"
	"github.com/cfg-dev/cfg/store"
)

// etcdPasswordEnv holds the password of --etcd-user when
// --etcd-password-file is not given.
const etcdPasswordEnv = "CFG_ETCD_PASSWORD"

// EtcdOptions are the flags of cfg serve for a store in etcd. TLS and
// authentication are named as etcdctl names them, prefixed with etcd-.
type EtcdOptions struct {
	Endpoints    []string
	Prefix       string
	CACert       string
	Cert         string
	Key          string
	User         string
	PasswordFile string
	DialTimeout  time.Duration
	ElectionTTL  time.Duration

	password string         // read by check
	flags    *pflag.FlagSet // the command's, to tell the flags given
}

func (o *EtcdOptions) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	o.flags = fl
	fl.StringSliceVar(&o.Endpoints, "etcd", nil, "keep the store in the etcd cluster at these client URLs (comma-separated), shared with other daemons, instead of --data-dir")
	fl.StringVar(&o.Prefix, "etcd-prefix", "/cfg/", "the key prefix of the store in etcd")
	fl.StringVar(&o.CACert, "etcd-cacert", "", "verify etcd's certificates with this CA bundle")
	fl.StringVar(&o.Cert, "etcd-cert", "", "the client certificate for etcd (with --etcd-key)")
	fl.StringVar(&o.Key, "etcd-key", "", "the key of --etcd-cert")
	fl.StringVar(&o.User, "etcd-user", "", "authenticate to etcd as this user, with the password in $"+etcdPasswordEnv+" or --etcd-password-file")
	fl.StringVar(&o.PasswordFile, "etcd-password-file", "", "file whose first line is the password of --etcd-user")
	fl.DurationVar(&o.DialTimeout, "etcd-dial-timeout", 5*time.Second, "how long to wait for etcd at start")
	fl.DurationVar(&o.ElectionTTL, "etcd-election-ttl", daemon.DefaultElectionTTL, "the lease of the publisher's election: another daemon publishes within it once the publisher dies (whole seconds)")
}

// check checks the flags, with usage errors naming them.
func (o *EtcdOptions) check() error {
	if len(o.Endpoints) == 0 {
		for _, name := range []string{"etcd-prefix", "etcd-cacert", "etcd-cert", "etcd-key", "etcd-user", "etcd-password-file", "etcd-dial-timeout", "etcd-election-ttl"} {
			if o.flags != nil && o.flags.Changed(name) {
				return usageError(fmt.Errorf("--%s without --etcd", name))
			}
		}
		return nil
	}
	for _, ep := range o.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return usageError(fmt.Errorf("--etcd: got %q, want client URLs such as http://127.0.0.1:2379", ep))
		}
	}
	if o.Prefix == "" || !strings.HasSuffix(o.Prefix, "/") {
		return usageError(fmt.Errorf("--etcd-prefix: got %q, want a prefix ending in /", o.Prefix))
	}
	if (o.Cert == "") != (o.Key == "") {
		return usageError(errors.New("--etcd-cert and --etcd-key: want both or neither"))
	}
	if o.PasswordFile != "" && o.User == "" {
		return usageError(errors.New("--etcd-password-file without --etcd-user"))
	}
	if o.DialTimeout <= 0 {
		return usageError(fmt.Errorf("--etcd-dial-timeout: got %v, want more than 0", o.DialTimeout))
	}
	if o.ElectionTTL < time.Second {
		return usageError(fmt.Errorf("--etcd-election-ttl: got %v, want at least 1s", o.ElectionTTL))
	}
	var err error
	o.password, err = o.readPassword()
	return err
}

// readPassword returns the password of --etcd-user: the first line of
// --etcd-password-file, or CFG_ETCD_PASSWORD.
func (o *EtcdOptions) readPassword() (string, error) {
	if o.User == "" {
		return "", nil
	}
	if o.PasswordFile == "" {
		p := os.Getenv(etcdPasswordEnv)
		if p == "" {
			return "", usageError(fmt.Errorf("--etcd-user %s: no password: want $%s or --etcd-password-file", o.User, etcdPasswordEnv))
		}
		return p, nil
	}
	data, err := os.ReadFile(o.PasswordFile)
	if err != nil {
		return "", usageError(fmt.Errorf("--etcd-password-file: %w", err))
	}
	p, _, _ := strings.Cut(string(data), "\n")
	if p = strings.TrimRight(p, "\r"); p == "" {
		return "", usageError(fmt.Errorf("--etcd-password-file %s: empty", o.PasswordFile))
	}
	return p, nil
}

// open connects to etcd, as etcdctl does with the same flags
// (clientv3.NewClientConfig), and opens the store under the prefix; check
// comes first. The client logs to log (its warnings of requests it
// retries, of leases it could not keep alive), as lines of the daemon's
// own log. The returned function closes the store and the client.
func (o *EtcdOptions) open(ctx context.Context, log *slog.Logger) (*store.Etcd, func(), error) {
	lg := slogzap.Logger(log.Handler()).Named("etcd-client")
	cfg, err := clientv3.NewClientConfig(&clientv3.ConfigSpec{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		// Keep-alives notice a member gone silent (a machine lost) as
		// etcdctl's defaults do.
		KeepAliveTime:    30 * time.Second,
		KeepAliveTimeout: 10 * time.Second,
		Secure:           &clientv3.SecureConfig{Cacert: o.CACert, Cert: o.Cert, Key: o.Key},
		Auth:             &clientv3.AuthConfig{Username: o.User, Password: o.password},
	}, lg)
	if err != nil {
		return nil, nil, fmt.Errorf("--etcd: %w", err)
	}
	failed := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("--etcd %s: no member answered within %v (--etcd-dial-timeout): check the URLs, and --etcd-cacert, --etcd-cert and --etcd-key: %w",
				strings.Join(o.Endpoints, ","), o.DialTimeout, err)
		}
		return fmt.Errorf("--etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	cfg.Logger = lg
	cli, err := clientv3.New(*cfg)
	if err != nil {
		return nil, nil, failed(err)
	}
	octx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	st, err := store.OpenEtcd(octx, cli, o.Prefix)
	if err != nil {
		cli.Close()
		return nil, nil, failed(err)
	}
	return st, func() { st.Close(); cli.Close() }, nil
}

// grpcLogOnce installs gRPC's logger once in a process.
var grpcLogOnce sync.Once

// installGRPCLog makes gRPC's process-wide logger (grpclog), which the
// etcd client's connections log through, grpcLogger(h, os.Getenv). cfg
// serve calls it when the daemon uses etcd, before the client is made:
// grpclog.SetLoggerV2 must come before any use of gRPC and never beside
// one, so it is done once in a process, by the first call, and not in
// open, which tests call while others use gRPC.
//
// The etcd client's package, when it is initialized with
// ETCD_CLIENT_DEBUG set, installs a logger of its own (JSON on stderr);
// this installation comes later and replaces it, so ETCD_CLIENT_DEBUG
// changes nothing in cfg serve's log: gRPC's own variables do
// (grpcLogger).
func installGRPCLog(h slog.Handler) {
	grpcLogOnce.Do(func() { grpclog.SetLoggerV2(grpcLogger(h, os.Getenv)) })
}

// grpcLogger returns a gRPC logger writing to h, as lines of the daemon's
// log with the attribute logger=grpc, through zap's adapter (zapgrpc).
// It writes what gRPC's default logger writes to stderr, read from the
// same variables: GRPC_GO_LOG_SEVERITY_LEVEL unset or "error", errors
// and fatal errors; "warning", warnings too; "info", info too; any other
// value, nothing. Its V reports GRPC_GO_LOG_VERBOSITY_LEVEL (default 0)
// as gRPC's does; zapgrpc's own V answers with the severity instead, and
// would let through the verbose lines that gRPC guards with V(2).
// GRPC_GO_LOG_FORMATTER is not read: the format is h's. A fatal error is
// an error line (level=ERROR), and the process still exits with status 1
// (zap exits after writing it, and grpclog exits after calling it).
func grpcLogger(h slog.Handler, getenv func(string) string) grpclog.LoggerV2 {
	var level zapcore.Level
	switch getenv("GRPC_GO_LOG_SEVERITY_LEVEL") {
	case "", "ERROR", "error":
		level = zapcore.ErrorLevel
	case "WARNING", "warning":
		level = zapcore.WarnLevel
	case "INFO", "info":
		level = zapcore.InfoLevel
	default:
		level = zapcore.InvalidLevel // above fatal: nothing
	}
	v, _ := strconv.Atoi(getenv("GRPC_GO_LOG_VERBOSITY_LEVEL"))
	lg := slogzap.Logger(h).Named("grpc").WithOptions(zap.IncreaseLevel(level))
	return grpcLog{zapgrpc.NewLogger(lg), v}
}

// grpcLog is zapgrpc's logger with gRPC's meaning of V: V(n) is whether
// the verbosity is at least n.
type grpcLog struct {
	*zapgrpc.Logger
	verbosity int
}

func (l grpcLog) V(n int) bool { return n <= l.verbosity }

// memberName names the daemon serving on addr in the publisher's
// election: its host name and the port it serves on (the address itself
// when it is not a wildcard), so that an operator can tell which daemon
// publishes.
func memberName(addr net.Addr) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		return ta.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(ta.Port))
}
