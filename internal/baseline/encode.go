package baseline

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// Encode returns the JSON encoding of v as the compiler writes it: two-space
// indent, no HTML escaping, a trailing newline; records as objects with
// fields in the order they were set, lists, tuples and sets as arrays, dicts
// as objects with string or integer keys, floats in the shortest form that
// round-trips (as encoding/json), None as null.
func Encode(v starlark.Value) ([]byte, error) {
	b, err := encode(make([]byte, 0, 1024), v, 0)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func encode(b []byte, v starlark.Value, depth int) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case starlark.NoneType:
		return append(b, "null"...), nil
	case starlark.Bool:
		return strconv.AppendBool(b, bool(v)), nil
	case starlark.Int:
		if i, ok := v.Int64(); ok {
			return strconv.AppendInt(b, i, 10), nil
		}
		return append(b, v.String()...), nil
	case starlark.Float:
		return appendFloat(b, float64(v))
	case starlark.String:
		return appendString(b, string(v)), nil
	case *Record:
		if len(v.names) == 0 {
			return append(b, "{}"...), nil
		}
		b = append(b, '{')
		for i, n := range v.names {
			if i > 0 {
				b = append(b, ',')
			}
			b = newline(b, depth+1)
			b = appendString(b, n)
			b = append(b, ": "...)
			if b, err = encode(b, v.values[i], depth+1); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", v.typ, n, err)
			}
		}
		return append(newline(b, depth), '}'), nil
	case *starlark.Dict:
		items := v.Items()
		if len(items) == 0 {
			return append(b, "{}"...), nil
		}
		b = append(b, '{')
		for i, kv := range items {
			if i > 0 {
				b = append(b, ',')
			}
			b = newline(b, depth+1)
			switch k := kv[0].(type) {
			case starlark.String:
				b = appendString(b, string(k))
			case starlark.Int:
				b = appendString(b, k.String())
			default:
				return nil, fmt.Errorf("map key of type %s", k.Type())
			}
			b = append(b, ": "...)
			if b, err = encode(b, kv[1], depth+1); err != nil {
				return nil, err
			}
		}
		return append(newline(b, depth), '}'), nil
	case starlark.Indexable: // list, tuple
		n := v.Len()
		if n == 0 {
			return append(b, "[]"...), nil
		}
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = newline(b, depth+1)
			if b, err = encode(b, v.Index(i), depth+1); err != nil {
				return nil, err
			}
		}
		return append(newline(b, depth), ']'), nil
	case *starlark.Set:
		if v.Len() == 0 {
			return append(b, "[]"...), nil
		}
		b = append(b, '[')
		i := 0
		for e := range v.Elements() {
			if i > 0 {
				b = append(b, ',')
			}
			i++
			b = newline(b, depth+1)
			if b, err = encode(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(newline(b, depth), ']'), nil
	}
	return nil, fmt.Errorf("cannot encode %s as JSON", v.Type())
}

func newline(b []byte, depth int) []byte {
	b = append(b, '\n')
	for range depth {
		b = append(b, "  "...)
	}
	return b
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("unsupported float %v", f)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hex = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping off.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
