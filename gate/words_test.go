package gate

import "testing"

// TestWordsDecideEquality: two strings have equal lengths and words
// exactly when they are equal, for every length up to 24 and a difference
// at every position (and the same bytes elsewhere).
func TestWordsDecideEquality(t *testing.T) {
	for n := 0; n <= 24; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i)
		}
		s := string(b)
		w := newWord(s)
		if h, tl := words(s); !w.is(s, h, tl) {
			t.Errorf("%q is not itself", s)
		}
		for i := range n {
			for _, c := range []byte{0, b[i] ^ 1, b[i] ^ 0x80, 0xff} {
				o := []byte(s)
				o[i] = c
				if h, tl := words(string(o)); w.is(string(o), h, tl) != (string(o) == s) {
					t.Errorf("%q is %q: %v", o, s, !(string(o) == s))
				}
			}
		}
		// Shorter and longer strings with the same prefix.
		for _, o := range []string{s + "x", s + "\x00"} {
			if h, tl := words(o); w.is(o, h, tl) {
				t.Errorf("%q is %q", o, s)
			}
			if n > 0 {
				if h, tl := words(s[:n-1]); w.is(s[:n-1], h, tl) {
					t.Errorf("%q is %q", s[:n-1], s)
				}
			}
		}
	}
}

func FuzzWords(f *testing.F) {
	f.Add("country", "countrx")
	f.Add("app_version", "app_versioN")
	f.Add("US", "UT")
	f.Add("a-string-longer-than-16", "a-string-longer-than-17")
	f.Fuzz(func(t *testing.T, a, b string) {
		w := newWord(a)
		if h, tl := words(b); w.is(b, h, tl) != (a == b) {
			t.Errorf("%q is %q: %v, want %v", b, a, !(a == b), a == b)
		}
	})
}
