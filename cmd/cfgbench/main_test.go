package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestRun runs the whole benchmark on a tiny repository: the compiler and the
// baseline must write the same bytes, and the table has a row per engine.
func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"-n", "60", "-runs", "1", "-j", "1", "-nowrite", "-dir", t.TempDir()}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "verified: typed and baseline outputs are identical") {
		t.Errorf("stderr does not report the verification:\n%s", stderr.String())
	}
	for _, e := range []string{"typed", "baseline", "typed-nowrite", "baseline-nowrite"} {
		if !regexp.MustCompile(`(?m)^ *60 +` + e + ` +1 `).MatchString(stdout.String()) {
			t.Errorf("no row for %s in\n%s", e, stdout.String())
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-n", "10,x"}, `-n: bad number "x"`},
		{[]string{"-j", "0"}, `-j: bad number "0"`},
		{[]string{"-runs", "0"}, "-runs: got 0, want at least 1"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, new(bytes.Buffer))
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("parseFlags(%q): got %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

func TestFirstDiff(t *testing.T) {
	got := firstDiff([]byte("{\n  \"a\": 1\n}\n"), []byte("{\n  \"a\": 1.0\n}\n"))
	want := `line 2: typed "  \"a\": 1", baseline "  \"a\": 1.0"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
