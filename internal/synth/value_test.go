package synth

import "testing"

func TestEncodedLen(t *testing.T) {
	u := &utilMod{memUnit: 1 << 28, disk: 40.5, gpus: true, portBase: 8000, qps: 500}
	j := &jobsMod{m: 7, util: u, restart: "NEVER", maxMem: 8 << 30, regions: []string{"eu-west"}}
	vals := []any{
		"", "abc", int64(-12), 0.125, 1e21, true, false, []any{}, object{},
		strs("a", "b"), object{{"x", object{}}, {"y", []any{int64(1), []any{}}}},
		j.makeJob("n", "o", []any{j.smallTask("p", 0), j.makeTask("p", 11)}, 3, "HIGH"),
	}
	for _, v := range vals {
		for depth := range 3 {
			if got, want := encodedLen(v, depth), len(encode(nil, v, depth)); got != want {
				t.Errorf("encodedLen(%v, %d) = %d, want %d", v, depth, got, want)
			}
		}
	}
}
