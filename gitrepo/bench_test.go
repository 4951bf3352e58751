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

// BenchmarkCommit measures one commit of two files read from the work tree
// (Commit), as cfg commit made them before it committed snapshots.
func BenchmarkCommit(b *testing.B) {
	r := newTestRepo(b)
	r.write("cfg/source/base", "base")
	r.commitAll("initial")
	g := r.open()
	author := &Signature{Name: "Ann", Email: "ann@example.com"}
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprint(i)
		r.write("cfg/source/a", v, "cfg/materialized_configs/a", v)
		if _, err := g.Commit([]string{"source/a", "materialized_configs/a"}, CommitOptions{Message: v, Author: author}); err != nil {
			b.Fatal(err)
		}
	}
}
