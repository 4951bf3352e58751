package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/wire"
)

// TestEventsRoundTrip sends events with EventWriter over a real HTTP
// connection and reads them back with EventReader.
func TestEventsRoundTrip(t *testing.T) {
	yes := true
	sent := []wire.Event{
		{Type: wire.Snapshot, Revision: 3, Store: "s1", Commit: "c3", Configs: []wire.Config{
			{Name: "a+b/c@d", Revision: 2, Commit: "c2", Type: "Job", Compiled: &yes, Data: []byte(`{"x":1}`)},
		}},
		{Type: wire.Update, Revision: 4, Store: "s1", Commit: "c4", Configs: []wire.Config{{Name: "a+b/c@d", Revision: 4, Deleted: true}}},
		{Type: wire.Overrides, Store: "s1", Overrides: []wire.Override{{ID: "canary-1", Config: "x", Version: 2, Data: []byte("1")}}},
		{Type: wire.Heartbeat, Revision: 4, Store: "s1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ew := wire.NewEventWriter(w, 0)
		if err := ew.WriteHeader("s1"); err != nil {
			t.Error(err)
			return
		}
		for _, ev := range sent {
			if err := ew.Write(ev); err != nil {
				t.Error(err)
				return
			}
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("Content-Type"); got != wire.ContentTypeEvents {
		t.Errorf("content type: got %q, want %q", got, wire.ContentTypeEvents)
	}
	if got := resp.Header.Get(wire.HeaderStore); got != "s1" {
		t.Errorf("%s: got %q, want %q", wire.HeaderStore, got, "s1")
	}
	er := wire.NewEventReader(resp.Body)
	for i, want := range sent {
		got, err := er.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := er.Next(); err != io.EOF {
		t.Errorf("after the last event: got %v, want io.EOF", err)
	}
}

// TestEventReaderErrors checks that a stream cut inside an event, a line
// that is not an event and an event without a type are errors, not the
// end of the stream.
func TestEventReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{`{"type":"update","revision":1}` + "\n" + `{"type":"upd`, "watch event: unexpected EOF"},
		{`{"type":"update","revision":"x"}`, "watch event: json: cannot unmarshal string into Go struct field Event.revision of type int64"},
		{`{"revision":1}`, "watch event: no type"},
	} {
		er := wire.NewEventReader(strings.NewReader(tc.in))
		var err error
		for err == nil {
			_, err = er.Next()
		}
		if err.Error() != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, err, tc.want)
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("%q: got io.EOF, want an error", tc.in)
		}
	}
}

// encodingJSON is ev as encoding/json writes it, one line.
func encodingJSON(t *testing.T, ev wire.Event) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// encode writes ev with an EventEncoder and returns what it wrote and the
// pieces it wrote it in.
func encode(t *testing.T, write func(*wire.EventEncoder) error) (string, []int) {
	t.Helper()
	var out bytes.Buffer
	var sizes []int
	lasts := 0
	enc := wire.NewEventEncoder(func(p []byte, last bool) error {
		out.Write(p)
		sizes = append(sizes, len(p))
		if last {
			lasts++
		}
		return nil
	})
	if err := write(enc); err != nil {
		t.Fatal(err)
	}
	if enc.Holding() {
		t.Error("the encoder holds its buffer after the event")
	}
	if lasts != 1 {
		t.Errorf("%d pieces marked last, want 1", lasts)
	}
	return out.String(), sizes
}

// TestEventEncoderAsEncodingJSON checks that the encoder writes events
// byte for byte as encoding/json does, whatever the names and data, in
// pieces of at most wire.PieceSize bytes.
func TestEventEncoderAsEncodingJSON(t *testing.T) {
	yes, no := true, false
	var configs []wire.Config
	for i, name := range []string{"a", `q"uote\back`, "ctl\x01\x1f\ttab", "bad\xffutf8", "sep\u2028\u2029", "<html>&", "日本/設定"} {
		c := wire.Config{Name: name, Revision: int64(i + 1), Commit: "c", Type: "Job",
			Data: bytes.Repeat([]byte{byte(i), 0xfe, '"'}, i*9000+i)}
		switch i % 3 {
		case 0:
			c.Compiled = &yes
		case 1:
			c.Compiled = &no
			c.Override, c.OverrideVersion = "canary-<1>", int64(i)
		}
		configs = append(configs, c)
	}
	configs = append(configs, wire.Config{Name: "gone", Revision: 7, Commit: "c7", Compiled: &yes, Deleted: true},
		wire.Config{Name: strings.Repeat("long/", 200), Revision: 3, Data: bytes.Repeat([]byte("x"), wire.PieceSize)},
		wire.Config{Name: "empty", Revision: 3, Data: []byte{}})
	for _, ev := range []wire.Event{
		{Type: wire.Update, Revision: 7, Store: "5f0c", Commit: "c7", Configs: configs},
		{Type: wire.Snapshot, Revision: 7, Store: "5f0c", Commit: "c7", Configs: []wire.Config{}},
		{Type: wire.Heartbeat, Revision: 7, Store: "5f0c"},
		{Type: wire.Heartbeat},
		{Type: wire.Overrides, Revision: 3, Store: "s", Overrides: []wire.Override{{ID: "canary-1", Config: "a&b", Version: 2, Compiled: true, Data: []byte(`{"x":"<"}`), LeaseSeconds: 30}}},
	} {
		got, sizes := encode(t, func(e *wire.EventEncoder) error { return e.Encode(ev) })
		if want := encodingJSON(t, ev); got != want {
			t.Errorf("%s event differs from encoding/json's:\n%.300s\nwant\n%.300s", ev.Type, got, want)
		}
		for _, n := range sizes {
			if n > wire.PieceSize {
				t.Errorf("%s event: a piece of %d bytes, want at most %d", ev.Type, n, wire.PieceSize)
			}
		}
	}

	// Config by config: an update byte for byte, a snapshot (whose
	// revision comes last) to the same value.
	got, _ := encode(t, func(e *wire.EventEncoder) error {
		e.BeginUpdate(7, "5f0c", "c7")
		for i := range configs {
			e.Config(&configs[i])
		}
		return e.EndUpdate()
	})
	upd := wire.Event{Type: wire.Update, Revision: 7, Store: "5f0c", Commit: "c7", Configs: configs}
	if want := encodingJSON(t, upd); got != want {
		t.Errorf("update written config by config differs from encoding/json's:\n%.300s\nwant\n%.300s", got, want)
	}
	got, _ = encode(t, func(e *wire.EventEncoder) error {
		e.BeginSnapshot("5f0c")
		for i := range configs {
			e.Config(&configs[i])
		}
		return e.EndSnapshot(7, "c7")
	})
	var snap wire.Event
	if err := json.Unmarshal([]byte(got), &snap); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// As read back: names that are not UTF-8 are read as other names.
	if err := json.Unmarshal([]byte(encodingJSON(t, upd)), &upd); err != nil {
		t.Fatal(err)
	}
	upd.Type = wire.Snapshot
	if a, b := encodingJSON(t, snap), encodingJSON(t, upd); a != b {
		t.Errorf("snapshot decodes to\n%.300s\nwant\n%.300s", a, b)
	}
}

// TestEventEncoderFailedWrite checks that once its output fails, the
// encoder lets its buffer go and fails every later write with the error.
func TestEventEncoderFailedWrite(t *testing.T) {
	gone := errors.New("client gone")
	writes := 0
	enc := wire.NewEventEncoder(func(p []byte, last bool) error {
		writes++
		return gone
	})
	big := wire.Config{Name: "big", Revision: 1, Data: bytes.Repeat([]byte("x"), 3*wire.PieceSize)}
	enc.BeginUpdate(1, "s", "c")
	if err := enc.Config(&big); !errors.Is(err, gone) {
		t.Fatalf("config: got %v, want %v", err, gone)
	}
	if err := enc.EndUpdate(); !errors.Is(err, gone) {
		t.Errorf("end of the update: got %v, want %v", err, gone)
	}
	if err := enc.Heartbeat(1, "s", ""); !errors.Is(err, gone) {
		t.Errorf("heartbeat: got %v, want %v", err, gone)
	}
	if writes != 1 {
		t.Errorf("%d writes, want 1: none after the first failed", writes)
	}
	if enc.Holding() {
		t.Error("the encoder holds its buffer after a failed event")
	}
}

func FuzzEventEncoder(f *testing.F) {
	f.Add("feed/job", "Job", []byte(`{"a":1}`), true, "", int64(0))
	f.Add("bad\xff\"<", "", []byte{}, false, "o\u2028", int64(3))
	f.Add("x", "T\u2028", bytes.Repeat([]byte{1, 2, 3}, wire.PieceSize/2), true, "", int64(-1))
	f.Fuzz(func(t *testing.T, name, typ string, data []byte, compiled bool, override string, version int64) {
		ev := wire.Event{Type: wire.Update, Revision: 2, Store: "s", Commit: "c2",
			Configs: []wire.Config{{Name: name, Revision: 2, Commit: "c2", Type: typ, Compiled: &compiled, Data: data, Override: override, OverrideVersion: version}}}
		got, _ := encode(t, func(e *wire.EventEncoder) error { return e.Encode(ev) })
		if want := encodingJSON(t, ev); got != want {
			t.Errorf("got\n%q\nwant\n%q", got, want)
		}
	})
}
