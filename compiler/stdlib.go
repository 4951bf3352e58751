package compiler

import (
	"io/fs"
	"strings"

	"github.com/cfg-dev/cfg/stdlib"
)

// withStdlib returns a filesystem that is fsys, except that paths under
// stdlib.Prefix ("@cfg/canary.thrift") are the files that ship with cfg.
func withStdlib(fsys fs.FS) fs.FS { return stdlibFS{fsys} }

type stdlibFS struct{ repo fs.FS }

func (s stdlibFS) route(name string) (fs.FS, string) {
	if rest, ok := strings.CutPrefix(name, stdlib.Prefix+"/"); ok {
		return stdlib.FS, rest
	}
	return s.repo, name
}

func (s stdlibFS) Open(name string) (fs.File, error) {
	fsys, name := s.route(name)
	return fsys.Open(name)
}

func (s stdlibFS) ReadFile(name string) ([]byte, error) {
	fsys, name := s.route(name)
	return fs.ReadFile(fsys, name)
}

func (s stdlibFS) Stat(name string) (fs.FileInfo, error) {
	fsys, name := s.route(name)
	return fs.Stat(fsys, name)
}

func (s stdlibFS) ReadDir(name string) ([]fs.DirEntry, error) {
	fsys, name := s.route(name)
	return fs.ReadDir(fsys, name)
}
