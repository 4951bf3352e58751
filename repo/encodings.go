package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
)

// The encodings a repository can publish its compiled configs in. JSON is
// always published; the Thrift encodings are written beside it, as
// EncodedPath says, when the repository's SettingsFile lists them.
const (
	EncodingJSON          = "json"
	EncodingThriftBinary  = "thrift-binary"  // TBinaryProtocol
	EncodingThriftCompact = "thrift-compact" // TCompactProtocol
)

// Encodings lists every encoding, in the order cfg writes them.
var Encodings = []string{EncodingJSON, EncodingThriftBinary, EncodingThriftCompact}

// SettingsFile holds the settings of a config repository, at its root:
//
//	{"encodings": ["json", "thrift-binary"]}
//
// "encodings" lists the encodings the repository publishes its compiled
// configs in; it must hold "json". A repository without the file publishes
// JSON only. It is committed with the sources; cfg compile, cfg validate
// and cfg commit read it.
const SettingsFile = "cfg.json"

// Settings are the content of SettingsFile.
type Settings struct {
	// Encodings lists the published encodings, in the order of Encodings;
	// it always starts with EncodingJSON.
	Encodings []string `json:"encodings"`
}

// Thrift returns the Thrift encodings s publishes, those written beside
// the JSON.
func (s *Settings) Thrift() []string {
	return slices.DeleteFunc(slices.Clone(s.Encodings), func(e string) bool { return e == EncodingJSON })
}

// Publishes reports whether s publishes encoding enc.
func (s *Settings) Publishes(enc string) bool { return slices.Contains(s.Encodings, enc) }

// A SettingsError is a problem in SettingsFile, at a line and column when
// known (0 otherwise).
type SettingsError struct {
	Line, Col int
	Msg       string
}

func (e *SettingsError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", SettingsFile, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s: %s", SettingsFile, e.Msg)
}

// ReadSettings reads the settings of the repository in fsys, an fs.FS
// rooted at the repository root (Repo.FS, or a git revision); a
// missing file gives the defaults. Bad content is a *SettingsError.
func ReadSettings(fsys fs.FS) (*Settings, error) {
	data, err := fs.ReadFile(fsys, SettingsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return &Settings{Encodings: []string{EncodingJSON}}, nil
	}
	if err != nil {
		return nil, err
	}
	return DecodeSettings(data)
}

// DecodeSettings parses the content of SettingsFile.
func DecodeSettings(data []byte) (*Settings, error) {
	var s Settings
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&s)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err != nil {
		se := &SettingsError{Msg: strings.TrimPrefix(err.Error(), "json: ")}
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			se.Line, se.Col = position(data, syn.Offset-1) // Offset is after the offending byte
		case errors.As(err, &typ):
			se.Line, se.Col = position(data, typ.Offset)
			se.Msg = fmt.Sprintf("%s: got %s, want a list of encodings", typ.Field, typ.Value)
		case errors.Is(err, io.EOF):
			se.Msg = "empty file (want a JSON object)"
		}
		return nil, se
	}
	seen := map[string]bool{}
	for _, e := range s.Encodings {
		switch {
		case !slices.Contains(Encodings, e):
			return nil, &SettingsError{Msg: fmt.Sprintf("encodings: unknown encoding %q (want %s)", e, strings.Join(Encodings, ", "))}
		case seen[e]:
			return nil, &SettingsError{Msg: fmt.Sprintf("encodings: %q listed twice", e)}
		}
		seen[e] = true
	}
	if !seen[EncodingJSON] {
		return nil, &SettingsError{Msg: fmt.Sprintf("encodings: got %q, want a list holding %q (configs are always published as JSON)", s.Encodings, EncodingJSON)}
	}
	s.Encodings = slices.DeleteFunc(slices.Clone(Encodings), func(e string) bool { return !seen[e] })
	return &s, nil
}

// EncodeSettings renders s as SettingsFile holds it.
func EncodeSettings(s *Settings) []byte {
	data, _ := json.MarshalIndent(s, "", "  ")
	return append(data, '\n')
}

// position returns the 1-based line and column of byte offset off in data.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// EncodingOf returns the Thrift encoding of the materialized path p by its
// extension ("thrift-binary" for "x.thrift-binary"), or "" for a path in no
// Thrift encoding.
func EncodingOf(p string) string {
	for _, enc := range Encodings[1:] {
		if strings.HasSuffix(p, "."+enc) {
			return enc
		}
	}
	return ""
}

// ReadSettings reads the repository's SettingsFile (see the function
// ReadSettings).
func (r *Repo) ReadSettings() (*Settings, error) { return ReadSettings(r.FS()) }
