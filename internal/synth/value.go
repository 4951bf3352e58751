package synth

import (
	"math"
	"strconv"
)

// The generator keeps a model of the value each generated program computes,
// so that it can size configs without running them. A model value is one of
// string, int64, float64, bool, []any (list or set) and object (struct or
// map, members in output order).

type object []member

type member struct {
	name  string
	value any
}

// with returns a copy of o with the member name set to v (replaced in place,
// or appended).
func (o object) with(name string, v any) object {
	c := make(object, len(o), len(o)+1)
	copy(c, o)
	for i := range c {
		if c[i].name == name {
			c[i].value = v
			return c
		}
	}
	return append(c, member{name, v})
}

func (o object) get(name string) any {
	for _, m := range o {
		if m.name == name {
			return m.value
		}
	}
	return nil
}

// encode appends the canonical JSON encoding of v (two-space indent, as
// encoding/json.MarshalIndent) at nesting depth to b. The first line is not
// indented.
func encode(b []byte, v any, depth int) []byte {
	switch v := v.(type) {
	case string:
		// Generated strings never need escaping.
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case float64:
		f := byte('f')
		if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
			f = 'e'
		}
		return strconv.AppendFloat(b, v, f, -1, 64)
	case bool:
		return strconv.AppendBool(b, v)
	case []any:
		if len(v) == 0 {
			return append(b, "[]"...)
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = newline(b, depth+1)
			b = encode(b, e, depth+1)
		}
		b = newline(b, depth)
		return append(b, ']')
	case object:
		if len(v) == 0 {
			return append(b, "{}"...)
		}
		b = append(b, '{')
		for i, m := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = newline(b, depth+1)
			b = append(b, '"')
			b = append(b, m.name...)
			b = append(b, `": `...)
			b = encode(b, m.value, depth+1)
		}
		b = newline(b, depth)
		return append(b, '}')
	}
	panic("synth: bad model value")
}

func newline(b []byte, depth int) []byte {
	b = append(b, '\n')
	for range depth {
		b = append(b, "  "...)
	}
	return b
}

// encodedLen returns len(encode(nil, v, depth)) without encoding.
func encodedLen(v any, depth int) int {
	switch v := v.(type) {
	case string:
		return len(v) + 2
	case int64:
		return digits(v)
	case int:
		return digits(int64(v))
	case bool:
		if v {
			return 4
		}
		return 5
	case []any:
		if len(v) == 0 {
			return 2
		}
		// "[", then per element a newline and indent (and a comma but for
		// the first), then a newline, the outer indent and "]".
		n := 1 + len(v)*(1+2*(depth+1)) + (len(v) - 1) + 1 + 2*depth + 1
		for _, e := range v {
			n += encodedLen(e, depth+1)
		}
		return n
	case object:
		if len(v) == 0 {
			return 2
		}
		n := 1 + len(v)*(1+2*(depth+1)+4) + (len(v) - 1) + 1 + 2*depth + 1
		for _, m := range v {
			n += len(m.name) + encodedLen(m.value, depth+1)
		}
		return n
	}
	var buf [32]byte
	return len(encode(buf[:0], v, depth))
}

func digits(x int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], x, 10))
}

// strings converts a []string to a model list.
func strs(ss ...string) []any {
	l := make([]any, len(ss))
	for i, s := range ss {
		l[i] = s
	}
	return l
}
