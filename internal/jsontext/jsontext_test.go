package jsontext

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// encodingJSON is the reference: encoding/json without HTML escaping.
func encodingJSON(t *testing.T, v any) string {
	t.Helper()
	return encodingJSONHTML(t, v, false)
}

// encodingJSONHTML is encoding/json with HTML escaping on or off.
func encodingJSONHTML(t *testing.T, v any, escapeHTML bool) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func TestAppendFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 3, 0.1, 1.0 / 3, 1e-6, 1e-7, 9.99e-7, 1e20, 1e21, 1.5e300, -2.5e-300,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789.125, 5e-324} {
		got := string(AppendFloat(nil, f))
		if want := encodingJSON(t, f); got != want {
			t.Errorf("AppendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted"`, `back\slash`, "tab\tnew\nline\rcr", "\x00\x1f\x7f",
		"<html> & é", "\u2028\u2029", "bad \xff utf8", "emoji 🙂", "\xed\xa0\x80"} {
		got := string(AppendString(nil, s))
		if want := encodingJSON(t, s); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
		got = string(AppendStringHTML(nil, s))
		if want := encodingJSONHTML(t, s, true); got != want {
			t.Errorf("AppendStringHTML(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\"b\\c\n\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := string(AppendString(nil, s))
		if want := encodingJSON(t, s); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
		got = string(AppendStringHTML(nil, s))
		if want := encodingJSONHTML(t, s, true); got != want {
			t.Errorf("AppendStringHTML(%q) = %s, want %s", s, got, want)
		}
	})
}
