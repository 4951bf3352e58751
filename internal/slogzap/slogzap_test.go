package slogzap

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// textLogger returns a zap logger writing through slog's text handler at
// level to the returned buffer, without times.
func textLogger(level slog.Level) (*zap.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return Logger(h), &buf
}

type point struct{ x, y int }

func (p point) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddInt("x", p.x)
	enc.AddInt("y", p.y)
	return nil
}

func TestLogger(t *testing.T) {
	lg, buf := textLogger(slog.LevelInfo)
	lg = lg.Named("etcd-client")
	lg.Warn("retrying of unary invoker failed",
		zap.String("target", "etcd-endpoints://0xc000/127.0.0.1:2379"),
		zap.Uint("attempt", 0),
		zap.Error(errors.New("rpc error: code = Unavailable")),
		zap.Duration("backoff", 25*time.Millisecond),
		zap.Strings("endpoints", []string{"a", "b"}),
	)
	lg.With(zap.String("member", "m1")).Error("lost the lease", zap.Object("at", point{1, 2}), zap.Inline(point{3, 4}))
	lg.Debug("dropped: below the handler's level")
	lg.Info("opened snapshot stream; downloading", zap.Namespace("ns"), zap.Int("n", 1))
	want := []string{
		`level=WARN msg="retrying of unary invoker failed" logger=etcd-client target=etcd-endpoints://0xc000/127.0.0.1:2379 attempt=0 error="rpc error: code = Unavailable" backoff=25ms endpoints="[a b]"`,
		`level=ERROR msg="lost the lease" member=m1 logger=etcd-client at.x=1 at.y=2 x=3 y=4`,
		`level=INFO msg="opened snapshot stream; downloading" logger=etcd-client ns.n=1`,
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestLoggerLevels checks that zap's levels map to slog's and that the
// handler's level decides what is written: zap's Check says no to a
// level the handler drops, so no entry of it is encoded.
func TestLoggerLevels(t *testing.T) {
	for _, tc := range []struct {
		zap  zapcore.Level
		slog slog.Level
	}{
		{zapcore.DebugLevel, slog.LevelDebug},
		{zapcore.InfoLevel, slog.LevelInfo},
		{zapcore.WarnLevel, slog.LevelWarn},
		{zapcore.ErrorLevel, slog.LevelError},
		{zapcore.DPanicLevel, slog.LevelError},
		{zapcore.PanicLevel, slog.LevelError},
		{zapcore.FatalLevel, slog.LevelError},
	} {
		if got := level(tc.zap); got != tc.slog {
			t.Errorf("level(%v) = %v, want %v", tc.zap, got, tc.slog)
		}
	}
	lg, buf := textLogger(slog.LevelWarn)
	if ce := lg.Check(zapcore.InfoLevel, "info"); ce != nil {
		t.Errorf("Check(info) with a handler at WARN = %v, want nil", ce)
	}
	lg.Info("info")
	lg.Warn("warn")
	if got, want := buf.String(), "level=WARN msg=warn\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}
