package gate

import (
	"fmt"
	"sync"
	"testing"
)

// TestKeyRegistryBounded: the registry numbers keys up to its bound and no
// more, keeps their numbers, and numbers each key once when gates are
// compiled concurrently.
func TestKeyRegistryBounded(t *testing.T) {
	r := newKeyRegistry(3)
	var wg sync.WaitGroup
	ids := make([][]uint32, 4)
	for w := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, k := range []string{"a", "b", "c", "d", "a"} {
				ids[w] = append(ids[w], r.intern(k))
			}
		}()
	}
	wg.Wait()
	for w := range ids {
		if fmt.Sprint(ids[w]) != fmt.Sprint(ids[0]) {
			t.Fatalf("numbers %v and %v for the same keys", ids[0], ids[w])
		}
	}
	seen := map[uint32]bool{}
	for i, id := range ids[0][:3] {
		if id >= 3 || seen[id] {
			t.Fatalf("key %d numbered %d of %v", i, id, ids[0])
		}
		seen[id] = true
	}
	if ids[0][3] != noKey || ids[0][4] != ids[0][0] {
		t.Fatalf("numbers %v, want the fourth key unnumbered and the first numbered as before", ids[0])
	}
	if n := len(r.cur.Load().ids); n != 3 {
		t.Fatalf("%d keys numbered, want 3", n)
	}
}

// TestCheckPreparedUnnumbered: a gate whose keys have no number (the
// registry was full when it was compiled) decides on prepared units as
// Check does.
func TestCheckPreparedUnnumbered(t *testing.T) {
	g := mustCompile(t, benchGateDistinct(), Options{})
	full := *g
	for s := range full.ids {
		full.ids[s] = noKey
	}
	for _, u := range []Unit{BenchUnit, {ID: "x"}, {ID: "user-1", Attrs: []Attr{NumberAttr("friends", 5000), StringAttr("country", "X1"), StringAttr("app_version", "2.x")}}} {
		p := Prepare(u)
		if got, want := decision(full.CheckPrepared(p)), decision(g.Check(u)); got != want {
			t.Errorf("unit %+v: %s, want %s", u, got, want)
		}
	}
	// The zero Prepared, and nil, are the unit with no ID and no attributes.
	for _, p := range []*Prepared{new(Prepared), nil} {
		if got, want := decision(g.CheckPrepared(p)), decision(g.Check(Unit{})); got != want {
			t.Errorf("%v: %s, want %s", p, got, want)
		}
	}
}
