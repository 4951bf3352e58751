package compiler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// TestOutputsOwnTheirBytes compiles configs with one worker, largest
// first, so that each is encoded in the memory the one before it used: the
// outputs of Compile, CompileEach and CompileAll keep bytes of their own,
// and CompileEachLent takes back what it lent once its function returns.
func TestOutputsOwnTheirBytes(t *testing.T) {
	fsys := fstest.MapFS{"source/s.thrift": {Data: []byte("struct S {\n  1: required list<i32> v\n}\n")}}
	var paths []string
	want := map[string]string{}
	for i := range 4 {
		n := (4 - i) * 1000
		p := fmt.Sprintf("source/c%d.cconf", i)
		fsys[p] = &fstest.MapFile{Data: fmt.Appendf(nil, "load(\"//s.thrift\", \"S\")\nexport(S(v = list(range(%d))))\n", n)}
		paths = append(paths, p)
		var b strings.Builder
		b.WriteString("{\n  \"v\": [")
		for j := range n {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "\n    %d", j)
		}
		b.WriteString("\n  ]\n}\n")
		want[p] = b.String()
	}
	check := func(how string, outs []*Output) {
		t.Helper()
		for _, o := range outs {
			if len(o.Diags) > 0 {
				t.Fatalf("%s: %s", how, o.Diags.Error())
			}
			if got, w := string(o.Data), want[o.Source]; got != w {
				i := 0
				for i < min(len(got), len(w)) && got[i] == w[i] {
					i++
				}
				t.Errorf("%s: %s holds %d bytes, want %d; from byte %d: %.20q, want %.20q", how, o.Source, len(got), len(w), i, got[i:], w[i:])
			}
		}
	}
	ctx := context.Background()
	check("CompileAll", New(fsys, Options{Jobs: 1}).CompileAll(ctx, paths))

	outs := make([]*Output, len(paths))
	New(fsys, Options{Jobs: 1}).CompileEach(ctx, paths, func(i int, o *Output) { outs[i] = o })
	check("CompileEach", outs)

	c := New(fsys, Options{Jobs: 1})
	for i, p := range paths {
		outs[i] = c.Compile(p)
	}
	check("Compile", outs)

	New(fsys, Options{Jobs: 1}).CompileEachLent(ctx, paths, func(i int, o *Output) {
		check("CompileEachLent, while lent", []*Output{o})
		outs[i] = o
	})
	for _, o := range outs {
		if o.Data != nil {
			t.Errorf("CompileEachLent: %s still holds %d bytes once given back", o.Source, len(o.Data))
		}
	}
}
