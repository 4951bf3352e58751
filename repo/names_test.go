package repo

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name, wantErr string
	}{
		{"feed/cache_job", ""},
		{"service/banner.txt", ""},
		{"a", ""},
		{"team-a/c++/job@eu_1.v2", ""},
		{strings.Repeat("a", MaxElementLen), ""},
		{strings.Repeat("a/", MaxNameLen/2-1) + "aa", ""},
		{"", "empty config name"},
		{"a\nb", `config name "a\nb": character '\n' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"a\tb", `config name "a\tb": character '\t' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"a,b", `config name "a,b": character ',' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"a b", `config name "a b": character ' ' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"a\rb", `config name "a\rb": character '\r' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"\xff", `config name "\xff": character '�' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"a\x00b", `config name "a\x00b": character '\x00' not allowed (want ASCII letters, digits and . _ - + @)`},
		{`a\b`, `config name "a\\b": character '\\' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"*", `config name "*": character '*' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"caf\u00e9", `config name "café": character 'é' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"/etc/passwd", `config name "/etc/passwd": empty element (want slash-separated names)`},
		{"a//b", `config name "a//b": empty element (want slash-separated names)`},
		{"a/", `config name "a/": empty element (want slash-separated names)`},
		{"a/../../b", `config name "a/../../b": element ".." starts with a dot`},
		{"a/./b", `config name "a/./b": element "." starts with a dot`},
		{"a/.hidden", `config name "a/.hidden": element ".hidden" starts with a dot`},
		{"a/.cfgtmp-x", `config name "a/.cfgtmp-x": element ".cfgtmp-x" starts with a dot`},
		{strings.Repeat("a", MaxElementLen+1), `config name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"...: element longer than 200 bytes`},
		{strings.Repeat("a/", 600), `config name "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"...: longer than 1024 bytes`},
		{strings.Repeat("a/", MaxNameLen/2) + "a", `config name "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"...: longer than 1024 bytes`},
	} {
		if got := errText(CheckName(tc.name)); got != tc.wantErr {
			t.Errorf("CheckName(%q) = %q, want %q", tc.name, got, tc.wantErr)
		}
	}
}

func TestCheckSource(t *testing.T) {
	fsys := fstest.MapFS{
		"source/a.cconf":              {},
		"source/a/b.txt":              {},
		"source/a/c/d.cconf":          {},
		"source/x.cconf":              {},
		"source/x.json":               {},
		"source/x":                    {},
		"source/q.cconf":              {},
		"source/q.json":               {},
		"source/lib.cconf":            {},
		"source/lib/m.cinc":           {},
		"source/lib/s.thrift":         {},
		"source/y.thrift-binary":      {},
		"source/z.thrift-compact":     {},
		"source/ok/raw.json":          {},
		"source/ok/job.cconf":         {},
		"source/bad,name.cconf":       {},
		"source/tab\tname.txt":        {},
		"source/line\nbreak.cconf":    {},
		"source/link":                 {Mode: 0o777 | 1<<27}, // fs.ModeSymlink
		"materialized_configs/a.json": {},
	}
	for _, tc := range []struct {
		p, wantErr string
	}{
		{"source/a.cconf", `config name "a": also a directory of configs (source/a/c/d.cconf); a config name cannot be a directory of another`},
		{"source/ok/raw.json", ""},
		{"source/ok/job.cconf", ""},
		{"source/x.cconf", `config name "x": also the name of the raw config source/x`},
		{"source/q.cconf", `config "q": materialized at materialized_configs/q.json, like the raw config source/q.json`},
		{"source/q.json", `raw config "q.json": materialized at materialized_configs/q.json, like the config source/q.cconf`},
		{"source/lib.cconf", ""},
		{"source/a/b.txt", `config name "a/b.txt": "a" is also a config (source/a.cconf); a config name cannot be a directory of another`},
		{"source/a/c/d.cconf", `config name "a/c/d": "a" is also a config (source/a.cconf); a config name cannot be a directory of another`},
		{"source/x.json", `raw config "x.json": materialized at materialized_configs/x.json, like the config source/x.cconf`},
		{"source/x", `config name "x": also the name of the config source/x.cconf`},
		{"source/y.thrift-binary", `raw config "y.thrift-binary": names ending in .thrift-binary are reserved for configs in that encoding`},
		{"source/z.thrift-compact", `raw config "z.thrift-compact": names ending in .thrift-compact are reserved for configs in that encoding`},
		{"source/bad,name.cconf", `config name "bad,name": character ',' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"source/tab\tname.txt", `config name "tab\tname.txt": character '\t' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"source/line\nbreak.cconf", `config name "line\nbreak": character '\n' not allowed (want ASCII letters, digits and . _ - + @)`},
		{"source/gone.cconf", `open source/gone.cconf: file does not exist`},
	} {
		if got := errText(CheckSource(fsys, tc.p)); got != tc.wantErr {
			t.Errorf("CheckSource(%q) = %q, want %q", tc.p, got, tc.wantErr)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
