package synth

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSizeDistribution checks that the predicted compiled sizes of 2,000
// configs follow the paper's distribution: median about 1 KB, p95 about
// 45 KB, mean near 12 KB.
func TestSizeDistribution(t *testing.T) {
	infos := Plan(Options{Configs: 2000, Seed: 1})
	if len(infos) != 2000 {
		t.Fatalf("got %d configs, want 2000", len(infos))
	}
	sizes := make([]int, len(infos))
	total := 0
	for i, c := range infos {
		sizes[i] = c.Size
		total += c.Size
		if c.Size > c.Target && c.Size > 1200 {
			t.Errorf("%s: size %d above target %d", c.Name, c.Size, c.Target)
		}
	}
	slices.Sort(sizes)
	median := sizes[len(sizes)/2]
	p95 := sizes[len(sizes)*95/100]
	mean := total / len(sizes)
	t.Logf("min %d median %d p95 %d mean %d max %d", sizes[0], median, p95, mean, sizes[len(sizes)-1])
	check := func(what string, got, lo, hi int) {
		if got < lo || got > hi {
			t.Errorf("%s: got %d bytes, want %d..%d", what, got, lo, hi)
		}
	}
	check("median", median, 900, 1150)
	check("p95", p95, 40000, 50000)
	check("mean", mean, 10000, 14000)
}

func TestDeterministic(t *testing.T) {
	o := Options{Configs: 200, Seed: 7}
	a, b := t.TempDir(), t.TempDir()
	if err := Generate(a, o); err != nil {
		t.Fatal(err)
	}
	if err := Generate(b, o); err != nil {
		t.Fatal(err)
	}
	fa, fb := readTree(t, a), readTree(t, b)
	if len(fa) != len(fb) {
		t.Fatalf("got %d and %d files", len(fa), len(fb))
	}
	for p, da := range fa {
		if !bytes.Equal(da, fb[p]) {
			t.Errorf("%s differs between runs", p)
		}
	}
	var configs, modules int
	for p := range fa {
		switch filepath.Ext(p) {
		case ".cconf":
			configs++
		case ".cinc":
			modules++
		}
	}
	if configs != 200 || modules != 5 {
		t.Errorf("got %d configs and %d modules, want 200 and 5", configs, modules)
	}
	// Another seed gives another repository.
	c := t.TempDir()
	if err := Generate(c, Options{Configs: 200, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	same := 0
	for p, dc := range readTree(t, c) {
		if bytes.Equal(dc, fa[p]) {
			same++
		}
	}
	if same > 20 { // the schemas and validators
		t.Errorf("seeds 7 and 8: %d identical files", same)
	}
}

func TestModuleWithUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10,000 configs")
	}
	dir := t.TempDir()
	if err := Generate(dir, Options{Configs: 10000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	m, n, err := ModuleWithUsers(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s has %d users", m, n)
	if n < 90 || n > 110 {
		t.Errorf("ModuleWithUsers(dir, 100) = %s with %d users, want about 100", m, n)
	}
	if _, err := os.Stat(filepath.Join(dir, "source", m)); err != nil {
		t.Error(err)
	}
	// The users match the plan's direct loads plus the util tree.
	users, err := ModuleUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	direct := 0
	for _, c := range Plan(Options{Configs: 10000, Seed: 1}) {
		if slices.Contains(c.Modules, m) {
			direct++
			if _, ok := slices.BinarySearch(users[m], c.Name); !ok {
				t.Errorf("%s loads %s but is not among its users", c.Name, m)
			}
		}
	}
	if direct == 0 {
		t.Errorf("no config loads %s directly", m)
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, dir)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestFit checks that each config's predicted size is the size of the
// encoding of its model.
func TestFit(t *testing.T) {
	p := newPlan(Options{Configs: 500, Seed: 2})
	for _, c := range p.configs {
		if got := encodedLen(c.model(), 0) + 1; got != c.size {
			t.Errorf("%s: model encodes to %d bytes, fit predicted %d", c.name, got, c.size)
		}
	}
}
