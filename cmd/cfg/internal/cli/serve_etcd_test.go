package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"

	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// TestEtcdTLSAndAuth opens the store, as cfg serve --etcd does, on an
// etcd member that takes only TLS clients with a certificate of its CA,
// and has authentication on: the flags --etcd-cacert, --etcd-cert,
// --etcd-key, --etcd-user and the password (file or CFG_ETCD_PASSWORD)
// get in; without the client certificate, with another CA, or with a
// wrong password, the store is not opened.
func TestEtcdTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	newCert(t, dir, "other-ca", nil, nil)

	ports := freePorts(t, 2)
	cfg := embed.NewConfig()
	cfg.Name = "m0"
	cfg.Dir = filepath.Join(dir, "etcd")
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	client := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = "m0=" + peer.String()
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		TrustedCAFile: filepath.Join(dir, "ca.pem"), ClientCertAuth: true}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready")
	}

	tlsOpts := EtcdOptions{Endpoints: []string{client.String()}, Prefix: "/cfg/", CACert: filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem"), DialTimeout: time.Minute, ElectionTTL: time.Second}
	// Authentication on, with a root user.
	tlsCfg, err := (transport.TLSInfo{CertFile: tlsOpts.Cert, KeyFile: tlsOpts.Key, TrustedCAFile: tlsOpts.CACert}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: tlsOpts.Endpoints, TLS: tlsCfg, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := t.Context()
	if _, err := admin.UserAdd(ctx, "root", "pw-root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("pw-root\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var logBuf syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	open := func(o EtcdOptions) error {
		t.Helper()
		if err := o.check(); err != nil {
			return err
		}
		st, closeStore, err := o.open(ctx, log)
		if err != nil {
			return err
		}
		defer closeStore()
		_, err = st.Latest(ctx)
		return err
	}
	good := tlsOpts
	good.User, good.PasswordFile = "root", pwFile
	if err := open(good); err != nil {
		t.Errorf("TLS and a password file: %v", err)
	}
	t.Setenv(etcdPasswordEnv, "pw-root")
	env := tlsOpts
	env.User = "root"
	if err := open(env); err != nil {
		t.Errorf("TLS and $%s: %v", etcdPasswordEnv, err)
	}
	for name, tc := range map[string]struct {
		o    EtcdOptions
		want string
	}{
		"no client certificate": {EtcdOptions{Endpoints: tlsOpts.Endpoints, Prefix: "/cfg/", CACert: tlsOpts.CACert, User: "root", DialTimeout: 2 * time.Second, ElectionTTL: time.Second},
			"no member answered within 2s (--etcd-dial-timeout): check the URLs, and --etcd-cacert, --etcd-cert and --etcd-key"},
		"another CA": {func() EtcdOptions {
			o := good
			o.CACert = filepath.Join(dir, "other-ca.pem")
			o.DialTimeout = 2 * time.Second
			return o
		}(),
			"no member answered within 2s"},
		"no user": {tlsOpts, "opening store /cfg/ in etcd: etcdserver: permission denied"},
	} {
		if err := open(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	t.Setenv(etcdPasswordEnv, "wrong")
	if err := open(env); err == nil || !strings.Contains(err.Error(), "authentication failed, invalid user ID or password") {
		t.Errorf("a wrong password: %v, want authentication failed", err)
	}
	// The client's warnings are lines of the daemon's log, in its format,
	// not the client's own JSON on stderr.
	if got := logBuf.String(); !strings.Contains(got, `level=WARN msg="retrying of unary invoker failed" logger=etcd-client`) ||
		!strings.Contains(got, "x509: certificate signed by unknown authority") {
		t.Errorf("the daemon's log has no warning of the etcd client's about the other CA:\n%s", got)
	}
}

// newCert writes NAME.pem and NAME-key.pem in dir: a CA's certificate if
// parent is nil, else a certificate for 127.0.0.1 that parent signs, for
// servers and clients.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// freePorts returns n ports that were free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// TestGRPCLogger logs through the logger cfg serve --etcd gives gRPC, at
// each of gRPC's severities and with each of their forms (Print, Printf,
// Println), under GRPC_GO_LOG_SEVERITY_LEVEL and
// GRPC_GO_LOG_VERBOSITY_LEVEL: it writes the severities gRPC's default
// logger writes, as lines of the daemon's log with logger=grpc, and V
// reports the verbosity as gRPC's default does.
func TestGRPCLogger(t *testing.T) {
	all := []string{"INFO", "WARN", "ERROR"}
	for _, tc := range []struct {
		severity, verbosity string
		want                []string // the levels written
		v                   int      // the highest level V reports
	}{
		{"", "", []string{"ERROR"}, 0},
		{"error", "", []string{"ERROR"}, 0},
		{"ERROR", "", []string{"ERROR"}, 0},
		{"warning", "", []string{"WARN", "ERROR"}, 0},
		{"WARNING", "", []string{"WARN", "ERROR"}, 0},
		{"info", "", all, 0},
		{"INFO", "", all, 0},
		{"Info", "", nil, 0},
		{"fatal", "", nil, 0},
		{"", "2", []string{"ERROR"}, 2},
		{"info", "99", all, 99},
		{"", "x", []string{"ERROR"}, 0},
	} {
		name := fmt.Sprintf("GRPC_GO_LOG_SEVERITY_LEVEL=%s GRPC_GO_LOG_VERBOSITY_LEVEL=%s", tc.severity, tc.verbosity)
		env := map[string]string{"GRPC_GO_LOG_SEVERITY_LEVEL": tc.severity, "GRPC_GO_LOG_VERBOSITY_LEVEL": tc.verbosity}
		var buf bytes.Buffer
		// The daemon's handler, without the time.
		h := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})
		l := grpcLogger(h, func(k string) string { return env[k] })
		l.Info("info", 1)
		l.Infof("info %d", 2)
		l.Infoln("info", 3)
		l.Warning("warning", 1)
		l.Warningf("warning %d", 2)
		l.Warningln("warning", 3)
		l.Error("error", 1)
		l.Errorf("error %d", 2)
		l.Errorln("error", 3)
		var want strings.Builder
		for _, level := range tc.want {
			msg := map[string]string{"INFO": "info", "WARN": "warning", "ERROR": "error"}[level]
			fmt.Fprintf(&want, "level=%s msg=%s1 logger=grpc\n", level, msg)
			fmt.Fprintf(&want, "level=%s msg=\"%s 2\" logger=grpc\n", level, msg)
			fmt.Fprintf(&want, "level=%s msg=\"%s 3\" logger=grpc\n", level, msg)
		}
		if got := buf.String(); got != want.String() {
			t.Errorf("%s: wrote\n%s\nwant\n%s", name, got, want.String())
		}
		for n := range 4 {
			if got := l.V(n); got != (n <= tc.v) {
				t.Errorf("%s: V(%d) = %v, want %v", name, n, got, !got)
			}
		}
		if l.V(tc.v + 1) {
			t.Errorf("%s: V(%d) = true, want false", name, tc.v+1)
		}
	}
}

// TestGRPCLogFatal runs, in a process of its own, a fatal error of gRPC's
// through the logger installGRPCLog installs: it is an error line of the
// daemon's log with logger=grpc, and the process exits with status 1.
func TestGRPCLogFatal(t *testing.T) {
	const child = "CFG_TEST_GRPC_LOG_FATAL"
	if os.Getenv(child) == "1" {
		installGRPCLog(slog.NewTextHandler(os.Stderr, nil))
		grpclog.Fatalf("fatal %d", 1)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGRPCLogFatal$")
	cmd.Env = append(os.Environ(), child+"=1", "GRPC_GO_LOG_SEVERITY_LEVEL=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("the process ended with %v, want exit status 1", err)
	}
	if want := regexp.MustCompile(`(?m)^time=\S+ level=ERROR msg="fatal 1" logger=grpc$`); !want.MatchString(stderr.String()) {
		t.Errorf("stderr has no line matching %s:\n%s", want, stderr.String())
	}
}
