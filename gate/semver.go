package gate

import "strings"

// version is a semantic version (semver.org 2.0.0) read without allocating:
// the numbers, and the pre-release as the substring of the text it came
// from. Build metadata is dropped: it plays no part in precedence.
type version struct {
	major, minor, patch uint64
	pre                 string // "" for a release
}

// parseVersion reads MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], with an
// optional leading "v". Numbers have no leading zeros (numeric pre-release
// identifiers neither); identifiers are non-empty ASCII letters, digits
// and hyphens.
func parseVersion(s string) (version, bool) {
	var v version
	ok := v.parse(s)
	return v, ok
}

// parse sets v to the version s, and reports whether s is one; it writes
// in place, so that a check copies no version.
func (v *version) parse(s string) bool {
	i := 0
	if len(s) > 0 && s[0] == 'v' {
		i = 1
	}
	major, i, ok := number(s, i)
	if !ok || i >= len(s) || s[i] != '.' {
		return false
	}
	minor, i, ok := number(s, i+1)
	if !ok || i >= len(s) || s[i] != '.' {
		return false
	}
	patch, i, ok := number(s, i+1)
	if !ok {
		return false
	}
	v.major, v.minor, v.patch, v.pre = major, minor, patch, ""
	return i == len(s) || v.suffix(s[i:])
}

// suffix reads -PRERELEASE and +BUILD after the numbers, into v.pre.
func (v *version) suffix(s string) bool {
	if s[0] == '-' {
		pre := s[1:]
		s = ""
		if i := strings.IndexByte(pre, '+'); i >= 0 {
			pre, s = pre[:i], pre[i:]
		}
		if !identifiers(pre, false) {
			return false
		}
		v.pre = pre
	}
	if s != "" && (s[0] != '+' || !identifiers(s[1:], true)) {
		return false
	}
	return true
}

// number reads a decimal number without leading zeros at s[i:], and
// returns it and the index after it.
func number(s string, i int) (uint64, int, bool) {
	start := i
	var n uint64
	for ; i < len(s); i++ {
		d := uint64(s[i]) - '0'
		if d > 9 {
			break
		}
		n = n*10 + d
	}
	if d := i - start; d == 0 || d > 19 || d > 1 && s[start] == '0' { // none, more than fit, a leading zero
		return 0, i, false
	}
	return n, i, true
}

// identifiers checks a dot-separated list of identifiers; numeric ones may
// have leading zeros only in build metadata.
func identifiers(s string, leadingZeros bool) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
			continue
		}
		id := s[start:i]
		if id == "" || !leadingZeros && len(id) > 1 && id[0] == '0' && allDigits(id) {
			return false
		}
		start = i + 1
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// compareVersions orders versions by semantic-version precedence.
func compareVersions(a, b *version) int {
	switch {
	case a.major != b.major:
		return cmpUint(a.major, b.major)
	case a.minor != b.minor:
		return cmpUint(a.minor, b.minor)
	case a.patch != b.patch:
		return cmpUint(a.patch, b.patch)
	}
	// A pre-release has lower precedence than the release.
	switch {
	case a.pre == b.pre:
		return 0
	case a.pre == "":
		return 1
	case b.pre == "":
		return -1
	}
	x, y := a.pre, b.pre
	for {
		var ix, iy string
		ix, x = nextIdent(x)
		iy, y = nextIdent(y)
		if c := compareIdents(ix, iy); c != 0 {
			return c
		}
		switch {
		case x == "" && y == "":
			return 0
		case x == "":
			return -1 // fewer identifiers: lower precedence
		case y == "":
			return 1
		}
	}
}

func nextIdent(s string) (string, string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// compareIdents compares pre-release identifiers: numeric ones
// numerically, and below alphanumeric ones, which compare in ASCII order.
func compareIdents(a, b string) int {
	na, nb := allDigits(a), allDigits(b)
	switch {
	case na && nb:
		if len(a) != len(b) { // no leading zeros: longer is larger
			return cmpUint(uint64(len(a)), uint64(len(b)))
		}
	case na:
		return -1
	case nb:
		return 1
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpUint(a, b uint64) int {
	if a < b {
		return -1
	}
	return 1
}
