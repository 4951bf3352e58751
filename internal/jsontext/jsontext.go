// Package jsontext writes JSON scalars the way encoding/json does: strings
// with the same escapes (with HTML escaping off, or on as encoding/json's
// default), and numbers in the shortest form that round-trips. Canonical
// JSON writers and the daemon's event writer build on it.
package jsontext

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendFloat writes the shortest representation that round-trips, in the
// form encoding/json uses (ES6 number formatting).
func AppendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hex = "0123456789abcdef"

// plain and html tell, for each ASCII byte, whether a JSON string holds it
// as it is: without HTML escaping, and with it ('<', '>' and '&' escaped).
var plain, html = func() (plain, html [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plain[c] = c != '"' && c != '\\'
		html[c] = plain[c] && c != '<' && c != '>' && c != '&'
	}
	return plain, html
}()

// AppendString writes s as a JSON string without HTML escaping. Invalid
// UTF-8 becomes U+FFFD; U+2028 and U+2029 are escaped as encoding/json does.
func AppendString(b []byte, s string) []byte { return appendString(b, s, &plain) }

// AppendStringHTML writes s as a JSON string as encoding/json does by
// default: as AppendString, with '<', '>' and '&' escaped too.
func AppendStringHTML(b []byte, s string) []byte { return appendString(b, s, &html) }

func appendString(b []byte, s string, safe *[utf8.RuneSelf]bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
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
