package gate

import "testing"

func mustCompile(t testing.TB, src string, opts Options) *Gate {
	t.Helper()
	g, err := Compile([]byte(src), opts)
	if err != nil {
		t.Fatalf("Compile(%s): %v", src, err)
	}
	return g
}
