package gitrepo

import (
	"fmt"
	"testing"
)

// BenchmarkCommitFiles measures one commit of two files of a small
// repository: the commit lock, index.lock and the branch's lock, the
// objects, the reflogs and the index.
func BenchmarkCommitFiles(b *testing.B) {
	r := newTestRepo(b)
	r.write("cfg/source/base", "base")
	r.commitAll("initial")
	g := r.open()
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprint(i)
		if _, err := commitFiles(g, v, "source/a", v, "materialized_configs/a", v); err != nil {
			b.Fatal(err)
		}
	}
}
