package schema

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/cfg-dev/cfg/diag"
)

// FuzzLoad checks that parsing and linking any IDL never panics and that
// every error is a diagnostic positioned at a line of a file.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.thrift")
	more, _ := filepath.Glob("../compiler/testdata/conformance/*/*.thrift")
	seeds = append(seeds, more...)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("struct X { 1: required Y y }"))
	f.Add([]byte(`include "other.thrift"` + "\nstruct X { 1: optional other.Y y }"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{
			"source/x.thrift":     {Data: data},
			"source/other.thrift": {Data: []byte("struct Y { 1: optional i32 v = 3 }\nenum E { A, B }\n")},
		}
		_, err := NewLoader(fsys).Load("source/x.thrift")
		if err == nil {
			return
		}
		var l diag.List
		if !errors.As(err, &l) || len(l) == 0 {
			t.Fatalf("error is not a diagnostic list: %v", err)
		}
		for _, d := range l {
			if d.Pos.File == "" || d.Pos.Line == 0 {
				t.Fatalf("diagnostic not positioned: %v", d)
			}
		}
	})
}
