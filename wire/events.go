package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ContentTypeEvents is the content type of a watch stream.
const ContentTypeEvents = "application/x-ndjson"

// EventReader reads the events of a watch stream, one JSON object a line.
type EventReader struct {
	dec *json.Decoder
}

// NewEventReader returns a reader of the events in r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{dec: json.NewDecoder(r)}
}

// Next returns the next event; io.EOF once the stream ended between
// events, io.ErrUnexpectedEOF if it ended inside one.
func (er *EventReader) Next() (Event, error) {
	var ev Event
	if err := er.dec.Decode(&ev); err != nil {
		if err == io.EOF {
			return Event{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Event{}, fmt.Errorf("watch event: %w", io.ErrUnexpectedEOF)
		}
		return Event{}, fmt.Errorf("watch event: %w", err)
	}
	if ev.Type == "" {
		return Event{}, errors.New("watch event: no type")
	}
	return ev, nil
}

// EventWriter writes the events of a watch stream to an HTTP response,
// each flushed to the client under a write deadline of its own.
type EventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *json.Encoder
	timeout time.Duration
}

// NewEventWriter returns a writer of events to w; a client that takes in
// none of an event within timeout fails its write (0: no deadline).
func NewEventWriter(w http.ResponseWriter, timeout time.Duration) *EventWriter {
	return &EventWriter{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w), timeout: timeout}
}

// WriteHeader answers 200 with the content type of a watch stream, the
// store's identity (HeaderStore) and the headers already set on the
// response, and flushes them to the client.
func (ew *EventWriter) WriteHeader(store string) error {
	ew.w.Header().Set("Content-Type", ContentTypeEvents)
	if store != "" {
		ew.w.Header().Set(HeaderStore, store)
	}
	ew.w.WriteHeader(http.StatusOK)
	return ew.flush()
}

// Write writes ev as one line and flushes it to the client.
func (ew *EventWriter) Write(ev Event) error {
	if ew.timeout > 0 {
		// Test writers do not support deadlines, and do not block.
		ew.rc.SetWriteDeadline(time.Now().Add(ew.timeout))
	}
	if err := ew.enc.Encode(ev); err != nil {
		return err
	}
	return ew.flush()
}

func (ew *EventWriter) flush() error {
	if err := ew.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
