package wire_test

import (
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
