package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// eventConfig renders c as encoding/json renders a config in a watch
// event.
func eventConfig(c store.ConfigVersion) wire.Config {
	return wire.Config{Name: c.Name, Revision: c.Revision, Commit: c.Commit, Type: c.Type, Compiled: &c.Compiled, Deleted: c.Deleted, Data: c.Data}
}

// writeEvents writes an update and a snapshot of configs, and a
// heartbeat, through a clientWriter.
func writeEvents(t *testing.T, configs []store.ConfigVersion) string {
	t.Helper()
	rec := httptest.NewRecorder()
	cw := newClientWriter(rec, time.Second)
	cw.BeginUpdate(7, "5f0c", "c7")
	for i := range configs {
		cw.config(&configs[i])
	}
	cw.endUpdate()
	cw.BeginSnapshot("5f0c")
	for i := range configs {
		cw.config(&configs[i])
	}
	cw.endSnapshot(store.Revision{Number: 7, Commit: "c7"})
	if err := cw.Heartbeat(7, "5f0c", ""); err != nil {
		t.Fatal(err)
	}
	if cw.Holding() {
		t.Error("the event buffer is held after the event")
	}
	return rec.Body.String()
}

// TestEventsAsEncodingJSON checks that events written config by config
// are what encoding/json writes: byte for byte for updates and heartbeats,
// and the same value for snapshots, whose revision comes last.
func TestEventsAsEncodingJSON(t *testing.T) {
	var configs []store.ConfigVersion
	for i, name := range []string{"a", `q"uote\back`, "ctl\x01\x1f\ttab", "bad\xffutf8", "sep\u2028\u2029", "<html>&", "日本/設定"} {
		configs = append(configs, store.ConfigVersion{Name: name, Revision: int64(i + 1), Commit: "c", Type: "Job", Compiled: i%2 == 0,
			Data: bytes.Repeat([]byte{byte(i), 0xfe, '"'}, i*9000+i)})
	}
	configs = append(configs, store.ConfigVersion{Name: "gone", Revision: 7, Commit: "c7", Compiled: true, Deleted: true},
		store.ConfigVersion{Name: strings.Repeat("long/", 200), Revision: 3, Data: bytes.Repeat([]byte("x"), pieceSize)})
	got := writeEvents(t, configs)

	var wantConfigs []wire.Config
	for _, c := range configs {
		wantConfigs = append(wantConfigs, eventConfig(c))
	}
	update := encodeLine(wire.Event{Type: wire.Update, Revision: 7, Store: "5f0c", Commit: "c7", Configs: wantConfigs})
	heartbeat := encodeLine(wire.Event{Type: wire.Heartbeat, Revision: 7, Store: "5f0c"})
	lines := strings.SplitAfter(got, "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("got %d lines, want 3", len(lines)-1)
	}
	if lines[0] != string(update) {
		t.Errorf("update event differs from encoding/json's:\n%.300s\nwant\n%.300s", lines[0], update)
	}
	if lines[2] != string(heartbeat) {
		t.Errorf("heartbeat %s, want %s", lines[2], heartbeat)
	}
	var upd, snap wire.Event
	if err := json.Unmarshal([]byte(lines[0]), &upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &snap); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	upd.Type = wire.Snapshot
	if !bytes.Equal(encodeLine(snap), encodeLine(upd)) {
		t.Errorf("snapshot decodes to\n%.300s\nwant\n%.300s", encodeLine(snap), encodeLine(upd))
	}
}

func FuzzEventEncoding(f *testing.F) {
	f.Add("feed/job", "Job", []byte(`{"a":1}`), true)
	f.Add("bad\xff\"<", "", []byte{}, false)
	f.Add("x", "T\u2028", bytes.Repeat([]byte{1, 2, 3}, pieceSize/2), true)
	f.Fuzz(func(t *testing.T, name, typ string, data []byte, compiled bool) {
		c := store.ConfigVersion{Name: name, Revision: 2, Commit: "c2", Type: typ, Compiled: compiled, Data: data}
		rec := httptest.NewRecorder()
		cw := newClientWriter(rec, time.Second)
		cw.BeginUpdate(2, "s", "c2")
		cw.config(&c)
		cw.endUpdate()
		want := encodeLine(wire.Event{Type: wire.Update, Revision: 2, Store: "s", Commit: "c2", Configs: []wire.Config{eventConfig(c)}})
		if rec.Body.String() != string(want) {
			t.Errorf("got\n%q\nwant\n%q", rec.Body.String(), want)
		}
	})
}

// TestSharedUpdateWriteAllocs checks that writing an update event that
// was encoded for every stream watching the same configs allocates
// nothing per stream on a connection taken over: the chunk is framed in a
// pooled buffer and handed to the connection with one write.
func TestSharedUpdateWriteAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go io.Copy(io.Discard, client)
	cw := newClientWriter(nil, time.Minute)
	cw.conn = conn
	r := &published{Revision: store.Revision{Number: 2, Commit: "c2"}, configs: []store.ConfigVersion{
		{Name: "small", Revision: 2, Commit: "c2", Compiled: true, Data: []byte(`{"n": 1}`)}}, size: 8}
	ev := r.event([]byte{1}, func() []byte {
		var line []byte
		enc := wire.NewEventEncoder(func(p []byte, _ bool) error { line = append(line, p...); return nil })
		enc.BeginUpdate(2, "5f0c", "c2")
		enc.Config(wireConfig(&r.configs[0]))
		enc.EndUpdate()
		return line
	})
	if allocs := testing.AllocsPerRun(200, func() {
		if err := cw.line(ev.line); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("writing a shared update: %v allocations, want 0", allocs)
	}
}
