package gate

// A string of at most 16 bytes is equal to another exactly when their
// lengths and their words (words) are: its first and last 8 bytes (4, for
// strings of 4 to 7 bytes; its first, middle and last byte for shorter
// ones), which overlap where the string is shorter than 16 bytes. A check
// compares the attribute keys and set members it reads so, as integers,
// with no call; longer strings are compared whole after their words.

// word is a string with its words, computed when a gate is compiled.
type word struct {
	s          string
	head, tail uint64
}

func newWord(s string) word {
	h, t := words(s)
	return word{s: s, head: h, tail: t}
}

// words returns the first and last 8 bytes of s, little-endian (see above
// for shorter strings).
func words(s string) (head, tail uint64) {
	switch n := len(s); {
	case n >= 8:
		return le64(s), le64(s[n-8:])
	case n >= 4:
		return uint64(le32(s)), uint64(le32(s[n-4:]))
	case n > 0:
		return uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16, 0
	}
	return 0, 0
}

// is reports whether s, whose words are head and tail, is w.
func (w *word) is(s string, head, tail uint64) bool {
	return len(s) == len(w.s) && head == w.head && tail == w.tail && (len(s) <= 16 || sameMiddle(s, w.s))
}

// sameMiddle reports whether a and b, of the same length, have the same
// bytes between their words. It is a loop rather than a == b, whose call
// (runtime.memequal) would make every caller keep its registers on the
// stack around it, long strings or not.
func sameMiddle(a, b string) bool {
	for i := 8; i < len(a)-8 && i < len(b); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}
