package configdiff

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/internal/jsontext"
)

// Values compares two JSON documents by value and returns their
// differences, in document order. Numbers compare by their text (canonical
// JSON writes each number one way). The error is for a document that is not
// JSON.
func Values(old, new []byte) ([]Field, error) {
	order := keyOrder{}
	x, err := decode(old, order)
	if err != nil {
		return nil, fmt.Errorf("old value: %w", err)
	}
	y, err := decode(new, order)
	if err != nil {
		return nil, fmt.Errorf("new value: %w", err)
	}
	r := &reporter{order: order}
	gocmp.Equal(x, y, gocmp.Reporter(r))
	return r.result(), nil
}

// Lines compares two texts line by line and returns the lines added,
// removed and changed.
func Lines(old, new []byte) []Field {
	x, y := splitLines(old), splitLines(new)
	r := &reporter{lines: true}
	gocmp.Equal(x, y, gocmp.Reporter(r))
	fields := r.result()
	// Show the end of line only where it is the difference.
	for i, f := range fields {
		if f.Change == Changed {
			o, n := trimEOL(f.Old), trimEOL(f.New)
			if !bytes.Equal(o, n) {
				fields[i].Old, fields[i].New = o, n
			}
			continue
		}
		fields[i].Old, fields[i].New = trimEOL(f.Old), trimEOL(f.New)
	}
	return fields
}

// splitLines splits s into lines, each with its "\n".
func splitLines(s []byte) []string {
	lines := strings.SplitAfter(string(s), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// trimEOL drops the "\n" at the end of a JSON-encoded line.
func trimEOL(m json.RawMessage) json.RawMessage {
	if m == nil {
		return nil
	}
	if t, ok := bytes.CutSuffix(m, []byte(`\n"`)); ok {
		return append(t[:len(t):len(t)], '"') // a copy: m stays as it was
	}
	return m
}

// keyOrder records, for each decoded JSON object (by map pointer), the
// position of each key in the document.
type keyOrder map[uintptr]map[string]int

// decode decodes a JSON document into map[string]any, []any, string,
// json.Number, bool and nil, recording the order of object keys.
func decode(data []byte, order keyOrder) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d, order)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the top-level value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder, order keyOrder) (any, error) {
	tok, err := d.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		pos := map[string]int{}
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // the decoder guarantees a string key
			v, err := decodeValue(d, order)
			if err != nil {
				return nil, err
			}
			if _, dup := m[k]; !dup {
				pos[k] = len(pos)
			}
			m[k] = v
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		order[reflect.ValueOf(m).Pointer()] = pos
		return m, nil
	case json.Delim('['):
		l := []any{}
		for d.More() {
			v, err := decodeValue(d, order)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		if _, err := d.Token(); err != nil {
			return nil, err
		}
		return l, nil
	}
	return tok, nil
}

// reporter is a go-cmp Reporter collecting the differences with their
// paths.
type reporter struct {
	order keyOrder
	lines bool // comparing []string lines: paths are line numbers
	path  gocmp.Path
	diffs []diffAt
}

// diffAt is a difference and where it sorts: the position of each step of
// its path in its document.
type diffAt struct {
	at    []int
	field Field
}

func (r *reporter) PushStep(ps gocmp.PathStep) { r.path = append(r.path, ps) }
func (r *reporter) PopStep()                   { r.path = r.path[:len(r.path)-1] }

func (r *reporter) Report(rs gocmp.Result) {
	if rs.Equal() {
		return
	}
	vx, vy := r.path.Last().Values()
	f := Field{Change: Changed}
	switch {
	case !vx.IsValid():
		f.Change = Added
	case !vy.IsValid():
		f.Change = Removed
	}
	if vx.IsValid() {
		f.Old = r.encode(vx)
	}
	if vy.IsValid() {
		f.New = r.encode(vy)
	}
	var at []int
	var path strings.Builder
	for i, step := range r.path {
		switch s := step.(type) {
		case gocmp.MapIndex:
			key := s.Key().String()
			px, py := r.path[i-1].Values()
			at = append(at, r.position(px, py, key))
			if isIdent(key) {
				if path.Len() > 0 {
					path.WriteByte('.')
				}
				path.WriteString(key)
			} else {
				path.WriteByte('[')
				path.Write(jsontext.AppendString(nil, key))
				path.WriteByte(']')
			}
		case gocmp.SliceIndex:
			ix, iy := s.SplitKeys()
			n := iy // new numbering for added and changed elements
			if n < 0 {
				n = ix
			}
			at = append(at, n)
			if r.lines {
				f.Line = n + 1
			} else {
				fmt.Fprintf(&path, "[%d]", n)
			}
		}
	}
	f.Path = path.String()
	r.diffs = append(r.diffs, diffAt{at: at, field: f})
}

// position returns where key is in the object: in the new document if it
// is there, else in the old. The objects are maps, possibly inside
// interfaces.
func (r *reporter) position(x, y reflect.Value, key string) int {
	for _, m := range []reflect.Value{y, x} {
		if m.IsValid() && m.Kind() == reflect.Interface {
			m = m.Elem()
		}
		if !m.IsValid() || m.Kind() != reflect.Map {
			continue
		}
		if n, ok := r.order[m.Pointer()][key]; ok {
			return n
		}
	}
	return 1 << 30
}

// result returns the differences in document order: by the position of each
// path step in the new document, or in the old one for what was removed;
// ties keep go-cmp's order.
func (r *reporter) result() []Field {
	slices.SortStableFunc(r.diffs, func(a, b diffAt) int {
		return slices.Compare(a.at, b.at)
	})
	out := make([]Field, len(r.diffs))
	for i, d := range r.diffs {
		out[i] = d.field
	}
	return out
}

// encode writes v as compact JSON with object keys in document order.
func (r *reporter) encode(v reflect.Value) json.RawMessage {
	var x any
	if v.CanInterface() {
		x = v.Interface()
	}
	return r.appendJSON(nil, x)
}

func (r *reporter) appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return jsontext.AppendString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.appendJSON(b, e)
		}
		return append(b, ']')
	case map[string]any:
		pos := r.order[reflect.ValueOf(v).Pointer()]
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, c string) int {
			pa, oka := pos[a]
			pc, okc := pos[c]
			if oka && okc {
				return cmp.Compare(pa, pc)
			}
			return strings.Compare(a, c)
		})
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, k)
			b = append(b, ':')
			b = r.appendJSON(b, v[k])
		}
		return append(b, '}')
	}
	return fmt.Appendf(b, "%q", fmt.Sprint(v))
}

// isIdent reports whether key can follow a dot in a path: a Thrift field
// name, as opposed to an arbitrary map key.
func isIdent(key string) bool {
	if key == "" {
		return false
	}
	for i, c := range key {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
