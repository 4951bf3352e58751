// Package slogzap hands what a library logs through zap (the etcd client
// does) to a log/slog handler, so that a program that logs with slog
// writes one log in one format.
package slogzap

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger returns a zap logger whose entries h handles: each entry becomes
// a record with the entry's time, level and message, the logger's name as
// the attribute "logger", and its fields as attributes, in order. Which
// levels are written is h's choice (Enabled).
func Logger(h slog.Handler) *zap.Logger {
	return zap.New(core{h: h})
}

// core is a zapcore.Core writing to a slog.Handler.
type core struct {
	h slog.Handler
}

// level maps a zap level to slog's: DPanic, Panic and Fatal are errors to
// slog (zap still panics or exits after writing them).
func level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c core) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), level(l))
}

func (c core) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return core{h: c.h.WithAttrs(attrs(fields))}
}

func (c core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, level(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c core) Sync() error { return nil }

// attrs encodes fields as zap's encoders do (an error as its message, an
// array as a slice, a namespace as a group of the fields after it) and
// returns them as attributes: in the fields' order, then any keys a field
// added besides its own (an inline object's), sorted.
func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	done := make(map[string]bool, len(enc.Fields))
	add := func(k string) {
		if v, ok := enc.Fields[k]; ok && !done[k] {
			done[k] = true
			out = append(out, attr(k, v))
		}
	}
	for _, f := range fields {
		add(f.Key)
	}
	var rest []string
	for k := range enc.Fields {
		if !done[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		add(k)
	}
	return out
}

// attr is the attribute k=v, a map (a namespace or an object) as a group.
func attr(k string, v any) slog.Attr {
	m, ok := v.(map[string]any)
	if !ok {
		return slog.Any(k, v)
	}
	keys := make([]string, 0, len(m))
	for mk := range m {
		keys = append(keys, mk)
	}
	slices.Sort(keys)
	group := make([]any, 0, len(m))
	for _, mk := range keys {
		group = append(group, attr(mk, m[mk]))
	}
	return slog.Group(k, group...)
}
