package gate

import (
	"regexp"
	"strconv"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want version
		ok   bool
	}{
		{"1.2.3", version{1, 2, 3, ""}, true},
		{"v1.2.3", version{1, 2, 3, ""}, true},
		{"0.0.0", version{0, 0, 0, ""}, true},
		{"10.20.30", version{10, 20, 30, ""}, true},
		{"1.0.0-alpha", version{1, 0, 0, "alpha"}, true},
		{"1.0.0-alpha.1", version{1, 0, 0, "alpha.1"}, true},
		{"1.0.0-0.3.7", version{1, 0, 0, "0.3.7"}, true},
		{"1.0.0-x.7.z.92", version{1, 0, 0, "x.7.z.92"}, true},
		{"1.0.0-x-y-z.--", version{1, 0, 0, "x-y-z.--"}, true},
		{"1.0.0-alpha+001", version{1, 0, 0, "alpha"}, true},
		{"1.0.0+20130313144700", version{1, 0, 0, ""}, true},
		{"1.0.0-beta+exp.sha.5114f85", version{1, 0, 0, "beta"}, true},
		{"1.0.0+21AF26D3----117B344092BD", version{1, 0, 0, ""}, true},
		{"18446744073709551615.0.0", version{}, false},
		{"1999999999999999999.0.0", version{1999999999999999999, 0, 0, ""}, true},
		{"", version{}, false},
		{"v", version{}, false},
		{"1", version{}, false},
		{"1.2", version{}, false},
		{"1.2.3.4", version{}, false},
		{"01.2.3", version{}, false},
		{"1.02.3", version{}, false},
		{"1.2.03", version{}, false},
		{"1.2.3-", version{}, false},
		{"1.2.3+", version{}, false},
		{"1.2.3-01", version{}, false},
		{"1.2.3-a..b", version{}, false},
		{"1.2.3-a_b", version{}, false},
		{"1.2.3+b..c", version{}, false},
		{"1.2.3 ", version{}, false},
		{" 1.2.3", version{}, false},
		{"V1.2.3", version{}, false},
		{"1.2.x", version{}, false},
		{"-1.2.3", version{}, false},
		{"1.2.3-é", version{}, false},
		{"99999999999999999999.0.0", version{}, false},
	} {
		got, ok := parseVersion(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseVersion(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestVersionPrecedence checks the order of semver.org's examples.
func TestVersionPrecedence(t *testing.T) {
	ordered := []string{
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.9.0", "1.10.0", "2.0.0", "2.1.0", "2.1.1",
	}
	for i, a := range ordered {
		va, ok := parseVersion(a)
		if !ok {
			t.Fatalf("parseVersion(%q) failed", a)
		}
		for j, b := range ordered {
			vb, _ := parseVersion(b)
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := compareVersions(&va, &vb); got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
	// Build metadata plays no part; neither does the "v".
	for _, pair := range [][2]string{{"1.0.0+a", "1.0.0+b"}, {"v1.0.0", "1.0.0"}, {"1.0.0-rc.1+x", "1.0.0-rc.1"}} {
		a, _ := parseVersion(pair[0])
		b, _ := parseVersion(pair[1])
		if c := compareVersions(&a, &b); c != 0 {
			t.Errorf("compare(%s, %s) = %d, want 0", pair[0], pair[1], c)
		}
	}
}

// semverRE is the regular expression semver.org gives for a version, with
// the optional leading "v".
var semverRE = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// FuzzParseVersion checks parseVersion against semver.org's regular
// expression: a version parses exactly when it matches and its numbers
// have at most 19 digits, into the numbers and pre-release it matches.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "v1.0.0-alpha.1+b.2", "1.0.0-0.3.7", "01.2.3", "1.2", "0.0.0", "1.0.01", "1999999999999999999.0.0", "19999999999999999990.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := parseVersion(s)
		m := semverRE.FindStringSubmatch(s)
		want := version{}
		wantOK := m != nil && len(m[1]) <= 19 && len(m[2]) <= 19 && len(m[3]) <= 19
		if wantOK {
			want.major, _ = strconv.ParseUint(m[1], 10, 64)
			want.minor, _ = strconv.ParseUint(m[2], 10, 64)
			want.patch, _ = strconv.ParseUint(m[3], 10, 64)
			want.pre = m[4]
		}
		if ok != wantOK || ok && v != want {
			t.Fatalf("parseVersion(%q) = %+v, %v; want %+v, %v", s, v, ok, want, wantOK)
		}
		if ok && compareVersions(&v, &v) != 0 {
			t.Errorf("%q: not equal to itself", s)
		}
	})
}
