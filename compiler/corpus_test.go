package compiler

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/schema"
)

// TestThriftCorpus loads every .thrift file of a source tree of Apache
// Thrift (the directory CFG_THRIFT_CORPUS names; scripts/thrift-corpus.sh
// fetches one and runs this test) with cfg and with the reference
// compiler generating Python, and fails on a file that one accepts and
// the other refuses. cfg reads the tree as the repository's source/ (an
// include is relative to the file that includes it), with a new loader
// for each file; the reference reads each file where it is. Without
// CFG_THRIFT_CORPUS it skips.
func TestThriftCorpus(t *testing.T) {
	dir := os.Getenv("CFG_THRIFT_CORPUS")
	if dir == "" {
		t.Skip("CFG_THRIFT_CORPUS names no Thrift source tree; scripts/thrift-corpus.sh sets it")
	}
	thriftBin, _ := reference(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".thrift") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("no .thrift files under %s (%v)", dir, err)
	}
	tree := conformanceFS(t, dir)
	var refAccepts, cfgAccepts, differ int
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		_, cfgErr := schema.NewLoader(tree).Load("source/" + filepath.ToSlash(rel))
		out, refErr := exec.Command(thriftBin, "--gen", "py", "-out", t.TempDir(), p).CombinedOutput()
		if refErr == nil {
			refAccepts++
		}
		if cfgErr == nil {
			cfgAccepts++
		}
		switch {
		case refErr == nil && cfgErr != nil:
			differ++
			t.Errorf("%s: the reference accepts it, cfg refuses it: %v", rel, cfgErr)
		case refErr != nil && cfgErr == nil:
			differ++
			t.Errorf("%s: cfg accepts it, the reference refuses it: %s", rel, strings.TrimSpace(string(out)))
		}
	}
	t.Logf("corpus of %d files: the reference accepts %d, cfg accepts %d, %d differ", len(files), refAccepts, cfgAccepts, differ)
}
