package baseline

import (
	"fmt"
	"math"
	"strconv"

	"github.com/cfg-dev/cfg/internal/jsontext"

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
		return jsontext.AppendString(b, string(v)), nil
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
			b = jsontext.AppendString(b, n)
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
				b = jsontext.AppendString(b, string(k))
			case starlark.Int:
				b = jsontext.AppendString(b, k.String())
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
	return jsontext.AppendFloat(b, f), nil
}
