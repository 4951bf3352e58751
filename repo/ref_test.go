package repo

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	root := t.TempDir()
	for p, data := range map[string]string{
		"source/feed/cache_job.cconf":                       "",
		"source/lib/create_job.cinc":                        "",
		"source/feed/lib/create_job.cinc":                   "",
		"source/schemas/job.thrift":                         "",
		"source/service/banner.txt":                         "",
		"source/raw/data.json":                              "",
		"materialized_configs/feed/cache_job.json":          "",
		"materialized_configs/feed/cache_job.thrift-binary": "",
		"materialized_configs/raw/data.json":                "",
		"materialized_configs/old/gone.json":                "",
		"README.md":                                         "",
		TypesFile:                                           "{}",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "source/feed/link.cconf")); err != nil {
		t.Fatal(err)
	}
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	const forms = "; want " + RefForms
	config := Ref{Path: "source/feed/cache_job.cconf", Name: "feed/cache_job"}
	module := Ref{Path: "source/lib/create_job.cinc"}
	tests := []struct {
		cwd, ref string
		want     Ref
		wantErr  string
		notExist bool
	}{
		// Each form names the same config.
		{"", "feed/cache_job", config, "", false},
		{"", "feed/cache_job.cconf", config, "", false},
		{"", "//feed/cache_job.cconf", config, "", false},
		{"", "source/feed/cache_job.cconf", config, "", false},
		{"", "./source/feed/cache_job.cconf", config, "", false},
		{"", filepath.Join(root, "source/feed/cache_job.cconf"), config, "", false},
		{"source/feed", "cache_job.cconf", config, "", false},
		{"source/feed", "feed/cache_job", config, "", false},
		{"source/feed", "//feed/cache_job.cconf", config, "", false},
		{"materialized_configs", "feed/cache_job.json", config, "", false},
		{"", "materialized_configs/feed/cache_job.json", config, "", false},
		{"", "materialized_configs/feed/cache_job.thrift-binary", config, "", false},
		// Other source files.
		{"", "lib/create_job.cinc", module, "", false},
		{"", "//lib/create_job.cinc", module, "", false},
		{"", "source/lib/create_job.cinc", module, "", false},
		{"source/feed", "../lib/create_job.cinc", module, "", false},
		{"", "//schemas/job.thrift", Ref{Path: "source/schemas/job.thrift"}, "", false},
		{"", "service/banner.txt", Ref{Path: "source/service/banner.txt", Name: "service/banner.txt"}, "", false},
		{"", "materialized_configs/raw/data.json", Ref{Path: "source/raw/data.json", Name: "raw/data.json"}, "", false},
		// A path from the working directory is tried before a name, and a
		// path starting with ./ or ../ is only a path.
		{"source/feed", "lib/create_job.cinc", Ref{Path: "source/feed/lib/create_job.cinc"}, "", false},
		{"source", "lib/create_job.cinc", module, "", false},
		{"", "./feed/cache_job", Ref{}, `"./feed/cache_job": not under source/ or materialized_configs/` + forms, false},
		{"source/lib", "../feed/cache_job", Ref{Name: "feed/cache_job"}, `"../feed/cache_job": no config or source file` + forms, true},
		// Well formed, but nothing by that name: the name it would have.
		{"", "feed/nope", Ref{Name: "feed/nope"}, `"feed/nope": no config or source file` + forms, true},
		{"", "//feed/nope.cconf", Ref{Name: "feed/nope"}, `"//feed/nope.cconf": no config or source file` + forms, true},
		{"", "./source/feed/nope.cconf", Ref{Name: "feed/nope"}, `"./source/feed/nope.cconf": no config or source file` + forms, true},
		{"", "//lib/nope.cinc", Ref{}, `"//lib/nope.cinc": no config or source file` + forms, true},
		{"", "materialized_configs/old/gone.json", Ref{Name: "old/gone"}, `"materialized_configs/old/gone.json": the source of config "old/gone" is gone` + forms, true},
		{"", "README.md", Ref{Name: "README.md"}, `"README.md": no config or source file` + forms, true},
		// Directories.
		{"", "feed", Ref{Path: "source/feed", Dir: true}, "", false},
		{"", "//feed", Ref{Path: "source/feed", Dir: true}, "", false},
		{"", "source/feed", Ref{Path: "source/feed", Dir: true}, "", false},
		{"", "source", Ref{Path: "source", Dir: true}, "", false},
		{"", ".", Ref{Path: ".", Dir: true}, "", false},
		{"source/feed", "..", Ref{Path: "source", Dir: true}, "", false},
		{"", "nodir", Ref{Name: "nodir"}, `"nodir": no config or source file` + forms, true},
		// Not a reference to a config or source file.
		{"", "", Ref{}, `"": empty reference` + forms, false},
		{"", "/elsewhere/x.cconf", Ref{}, `"/elsewhere/x.cconf": outside the config repository ` + root + forms, false},
		{"", "../x.cconf", Ref{}, `"../x.cconf": outside the config repository ` + root + forms, false},
		{"", "//../x.cconf", Ref{}, `"//../x.cconf": outside source/` + forms, false},
		{"", "./README.md", Ref{}, `"./README.md": not under source/ or materialized_configs/` + forms, false},
		{"", "materialized_configs/.types.json", Ref{}, `"materialized_configs/.types.json": not a materialized config` + forms, false},
		// A link is never followed: the error says so.
		{"", "feed/link", Ref{}, "source/feed/link.cconf: a symbolic link", false},
	}
	for _, tt := range tests {
		got, err := Resolve(r.FS(), root, filepath.Join(root, tt.cwd), tt.ref)
		if got != tt.want {
			t.Errorf("Resolve(%q) in %q = %+v, want %+v", tt.ref, tt.cwd, got, tt.want)
		}
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Resolve(%q) in %q: %v", tt.ref, tt.cwd, err)
		case tt.wantErr != "" && (err == nil || !startsWith(err.Error(), tt.wantErr)):
			t.Errorf("Resolve(%q) in %q: error %v, want %s", tt.ref, tt.cwd, err, tt.wantErr)
		case err != nil && errors.Is(err, fs.ErrNotExist) != tt.notExist:
			t.Errorf("Resolve(%q) in %q: errors.Is(%v, fs.ErrNotExist) = %v, want %v", tt.ref, tt.cwd, err, !tt.notExist, tt.notExist)
		}
	}

	// Without a repository, only the forms that need no files.
	for ref, want := range map[string]string{"feed/x": "feed/x", "//feed/x.cconf": "feed/x", "//a/b.txt": "a/b.txt"} {
		got, err := Resolve(nil, "", root, ref)
		if got.Name != want || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Resolve(nil, %q) = %+v, %v; want name %q and fs.ErrNotExist", ref, got, err, want)
		}
	}
}

func startsWith(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }
