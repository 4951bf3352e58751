package baseline_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/internal/baseline"
	"github.com/cfg-dev/cfg/internal/synth"
)

// TestRunSynth runs a small synthetic repository and checks every output
// against the generator's model of it: same configs, same sizes, valid JSON,
// and the same bytes with one worker and with many.
func TestRunSynth(t *testing.T) {
	o := synth.Options{Configs: 300, Seed: 3}
	root := t.TempDir()
	if err := synth.Generate(root, o); err != nil {
		t.Fatal(err)
	}
	st, err := baseline.Run(root, 8)
	if err != nil {
		t.Fatal(err)
	}
	plan := synth.Plan(o)
	if st.Configs != len(plan) {
		t.Errorf("Run: %d configs, want %d", st.Configs, len(plan))
	}
	var want int64
	outputs := map[string][]byte{}
	for _, c := range plan {
		data, err := os.ReadFile(filepath.Join(root, "materialized_configs", c.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		outputs[c.Name] = data
		want += int64(len(data))
		if len(data) != c.Size {
			t.Errorf("%s: %d bytes, the generator predicts %d", c.Name, len(data), c.Size)
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		if v["name"] != c.Name {
			t.Errorf("%s: name %v", c.Name, v["name"])
		}
	}
	if st.Bytes != want {
		t.Errorf("Run: %d bytes, files hold %d", st.Bytes, want)
	}

	if err := os.RemoveAll(filepath.Join(root, "materialized_configs")); err != nil {
		t.Fatal(err)
	}
	if _, err := baseline.Run(root, 1); err != nil {
		t.Fatal(err)
	}
	for name, data := range outputs {
		again, err := os.ReadFile(filepath.Join(root, "materialized_configs", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, again) {
			t.Errorf("%s: different bytes with 1 and 8 workers", name)
		}
	}
}

// TestSynthSizes checks the real compiled sizes of 2,000 synthetic configs
// against the paper's distribution.
func TestSynthSizes(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 2,000 configs")
	}
	root := t.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := baseline.Run(root, runtime.NumCPU()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	total := 0
	err := filepath.WalkDir(filepath.Join(root, "materialized_configs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		sizes = append(sizes, int(info.Size()))
		total += int(info.Size())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(sizes)
	median, p95, mean := sizes[len(sizes)/2], sizes[len(sizes)*95/100], total/len(sizes)
	t.Logf("median %d p95 %d mean %d", median, p95, mean)
	if median < 900 || median > 1150 || p95 < 40000 || p95 > 50000 || mean < 10000 || mean > 14000 {
		t.Errorf("median %d p95 %d mean %d, want about 1000, 45000, 12000", median, p95, mean)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{
			name:    "no export",
			files:   map[string]string{"a.cconf": "x = 1\n"},
			wantErr: "a: export was not called",
		},
		{
			name:    "two exports",
			files:   map[string]string{"a.cconf": "export(1)\nexport(2)\n"},
			wantErr: "export: called more than once",
		},
		{
			name: "cycle",
			files: map[string]string{
				"a.cconf": `load("//m.cinc", "x")` + "\nexport(x)\n",
				"m.cinc":  `load("n.cinc", "y")` + "\nx = y\n",
				"n.cinc":  `load("//m.cinc", "x")` + "\ny = x\n",
			},
			wantErr: "cycle in load graph",
		},
		{
			name:    "not loadable",
			files:   map[string]string{"a.cconf": `load("//b.cconf", "x")` + "\nexport(x)\n"},
			wantErr: `cannot load "//b.cconf": only .thrift and .cinc files are loadable`,
		},
		{
			name:    "nan",
			files:   map[string]string{"a.cconf": `export({"x": float("nan")})` + "\n"},
			wantErr: "unsupported float NaN",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, text := range tt.files {
				p := filepath.Join(root, "source", name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := baseline.Run(root, 2)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunValues(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"schemas/s.thrift": `
const i32 N = 3
const string S = "s"
enum Color { RED = 1, GREEN = 2 }
struct Inner { 1: optional i64 id }
struct Outer { 1: required string name; 2: optional Inner inner; 3: list<double> xs; 4: map<i32, string> m }
`,
		"lib/m.cinc": `load("../schemas/s.thrift", "Inner")
def inner(i):
    return Inner(id = i)
`,
		"team/a.cconf": `load("//schemas/s.thrift", "Color", "N", "Outer", "S")
load("//lib/m.cinc", "inner")
o = Outer(name = "<a & b>\n\u2028é", xs = [1, 0.5, 1e21, 1e-7, 2.0], m = {N: S, 1: Color.GREEN})
o.inner = inner(1 << 62)
o.name = o.name + "!"
export(o)
`,
	}
	for name, text := range files {
		p := filepath.Join(root, "source", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := baseline.Run(root, 1); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "materialized_configs", "team", "a.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "<a & b>\n\u2028é!",
  "xs": [
    1,
    0.5,
    1e+21,
    1e-7,
    2
  ],
  "m": {
    "3": "s",
    "1": "GREEN"
  },
  "inner": {
    "id": 4611686018427387904
  }
}
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// BenchmarkBaseline runs a 1,000-config synthetic repository with one worker
// and with all CPUs.
func BenchmarkBaseline(b *testing.B) {
	root := b.TempDir()
	if err := synth.Generate(root, synth.Options{Configs: 1000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	for _, jobs := range []int{1, runtime.NumCPU()} {
		b.Run("j="+strconv.Itoa(jobs), func(b *testing.B) {
			var st baseline.Stats
			for b.Loop() {
				b.StopTimer()
				os.RemoveAll(filepath.Join(root, "materialized_configs"))
				b.StartTimer()
				var err error
				if st, err = baseline.Run(root, jobs); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(st.Bytes)
			b.ReportMetric(float64(st.Configs)*float64(b.N)/b.Elapsed().Seconds(), "configs/s")
		})
	}
}
