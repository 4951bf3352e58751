package gate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/sampling.json")

// TestMurmur3PublishedVectors checks the hash against the MurmurHash3
// x86_32 verification values published for the reference implementation
// (SMHasher's MurmurHash3.cpp), with several seeds.
func TestMurmur3PublishedVectors(t *testing.T) {
	for _, v := range []struct {
		data       string
		seed, want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514E28B7},
		{"", 0xffffffff, 0x81F16F39},
		{"\xff\xff\xff\xff", 0, 0x76293B50},
		{"\x21\x43\x65\x87", 0, 0xF55B516B},
		{"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE},
		{"\x21\x43\x65", 0, 0x7E4A8634},
		{"\x21\x43", 0, 0xA0F7B07A},
		{"\x21", 0, 0x72661CF4},
		{"\x00\x00\x00\x00", 0, 0x2362F9DE},
		{"\x00\x00\x00", 0, 0x85F0B427},
		{"\x00\x00", 0, 0x30F4C306},
		{"\x00", 0, 0x514E28B7},
		{"Hello, world!", 1234, 0xFAF6CDB3},
		{"The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723},
		{"aaaa", 0x9747b28c, 0x5A97808A},
		{"Hello, world!", 0x9747b28c, 0x24884CBA},
		{"The quick brown fox jumps over the lazy dog", 0x9747b28c, 0x2FA826CD},
	} {
		if got := murmur3(v.data, v.seed); got != v.want {
			t.Errorf("murmur3(%q, %#x) = %#x, want %#x", v.data, v.seed, got, v.want)
		}
	}
}

// TestBucketAgreesWithFlagd checks buckets against the expectations of
// flagd's own tests of its fractional operation (flagd 0.15.0 and later):
// flag "headerColor" split four ways by 25 (bucketing by the flag key and
// the e-mail), the same with the seed "my-seed", footerColor bucketing by
// the e-mail alone, and a 50/50 split by flag key and targeting key. Four
// equal weights put a unit in variant floor(bucket / 2500).
func TestBucketAgreesWithFlagd(t *testing.T) {
	for _, v := range []struct {
		salt, unit string
		quarter    int // red, blue, green, yellow
	}{
		{"headerColor", "rachel@faas.com", 1},
		{"headerColor", "monica@faas.com", 3},
		{"headerColor", "joey@faas.com", 0},
		{"headerColor", "ross@faas.com", 1},
		{"my-seed", "rachel@faas.com", 2},
		{"my-seed", "monica@faas.com", 0},
		{"my-seed", "joey@faas.com", 1},
		{"my-seed", "ross@faas.com", 2},
		{"", "ross@faas.com", 0},
	} {
		if got := Bucket(v.salt, v.unit) / 2500; got != v.quarter {
			t.Errorf("Bucket(%q, %q) is in quarter %d, want %d", v.salt, v.unit, got, v.quarter)
		}
	}
	// [["blue", 50], ["green", 50]] by flag key and targeting key: green.
	if b := Bucket("headerColor", "foo@foo.com"); b < 5000 {
		t.Errorf("Bucket(headerColor, foo@foo.com) = %d, want the upper half", b)
	}
}

// referenceMurmur3 is MurmurHash3 x86_32 written from the reference
// implementation over one byte slice, to check the streaming one.
func referenceMurmur3(data []byte, seed uint32) uint32 {
	h := seed
	n := len(data) / 4
	for i := 0; i < n; i++ {
		k := binary.LittleEndian.Uint32(data[4*i:])
		k *= 0xcc9e2d51
		k = bits.RotateLeft32(k, 15)
		k *= 0x1b873593
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	tail := data[4*n:]
	var k uint32
	switch len(tail) {
	case 3:
		k ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(tail[0])
		k *= 0xcc9e2d51
		k = bits.RotateLeft32(k, 15)
		k *= 0x1b873593
		h ^= k
	}
	h ^= uint32(len(data))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// TestHashStreamsSaltAndID checks that hashing the salt once and then the
// ID (every split of a string, every length of carry) gives the hash of the
// concatenation.
func TestHashStreamsSaltAndID(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		s := string(b)
		want := referenceMurmur3(b, 0)
		for cut := 0; cut <= len(s); cut++ {
			if got := Hash(s[:cut], s[cut:]); got != want {
				t.Fatalf("Hash(%q, %q) = %#x, want %#x", s[:cut], s[cut:], got, want)
			}
		}
	}
}

// samplingFile is testdata/sampling.json, the cross-language vectors.
type samplingFile struct {
	Comment []string         `json:"comment"`
	Vectors []samplingVector `json:"vectors"`
}

type samplingVector struct {
	Salt   string `json:"salt"`
	Unit   string `json:"unit"`
	Hash   uint32 `json:"hash"`
	Bucket int    `json:"bucket"`
	// Passes holds the percentages, among 0.01, 1, 10, 50 and 99.99, at
	// which the unit passes.
	Passes []float64 `json:"passes"`
}

func samplingInputs() [][2]string {
	var in [][2]string
	// Every length of salt and unit up to 5: every carry and tail.
	for i := 0; i <= 5; i++ {
		for j := 0; j <= 5; j++ {
			in = append(in, [2]string{"gatex"[:i], "12345"[:j]})
		}
	}
	in = append(in,
		[2]string{"feed/new_ranker", "user-1"},
		[2]string{"feed/new_ranker", "user-2"},
		[2]string{"feed/new_ranker", "7f3c2a9e-0b1d-4c6e-9a8f-1e2d3c4b5a69"},
		[2]string{"checkout-v2", "42"},
		[2]string{"headerColor", "rachel@faas.com"},
		[2]string{"headerColor", "foo@foo.com"},
		[2]string{"my-seed", "ross@faas.com"},
		[2]string{"ünïcödé", "用户-十二"},
		[2]string{"emoji 🚀", "👩‍💻"},
		[2]string{"long", strings.Repeat("0123456789", 13)},
	)
	return in
}

var samplingPercents = []float64{0.01, 1, 10, 50, 99.99}

// TestSamplingVectors checks the hash, the bucket and decisions against
// testdata/sampling.json, the vectors other runtimes check themselves
// against (go test ./gate -run SamplingVectors -update rewrites it).
func TestSamplingVectors(t *testing.T) {
	var vs []samplingVector
	for _, in := range samplingInputs() {
		h := Hash(in[0], in[1])
		if want := referenceMurmur3([]byte(in[0]+in[1]), 0); h != want {
			t.Fatalf("Hash(%q, %q) = %#x, reference %#x", in[0], in[1], h, want)
		}
		v := samplingVector{Salt: in[0], Unit: in[1], Hash: h, Bucket: Bucket(in[0], in[1]), Passes: []float64{}}
		if want := int(float64(h) * 10000 / (1 << 32)); v.Bucket != want {
			t.Fatalf("Bucket(%q, %q) = %d, want floor(%d * 10000 / 2^32) = %d", in[0], in[1], v.Bucket, h, want)
		}
		for _, p := range samplingPercents {
			pass := in[1] != "" && v.Bucket < int(math.Round(p*100))
			if pass {
				v.Passes = append(v.Passes, p)
			}
			if in[0] == "" { // a gate needs a salt
				continue
			}
			g := mustCompile(t, fmt.Sprintf(`{"salt": %q, "rules": [{"name": "all", "percent": %v}]}`, in[0], p), Options{})
			d := g.Check(Unit{ID: in[1]})
			if in[1] == "" && !errors.Is(d.Err, ErrNoUnitID) || in[1] != "" && (d.Err != nil || d.Pass != pass) {
				t.Errorf("salt %q unit %q at %v %%: %+v, want pass %v (bucket %d)", in[0], in[1], p, d, pass, v.Bucket)
			}
		}
		vs = append(vs, v)
	}
	file := samplingFile{
		Comment: []string{
			"Sampling vectors of cfg's feature gates (package gate). A unit passes a rule of percentage p",
			"when bucket < p * 100, where bucket = floor(hash * 10000 / 2^32) and hash is MurmurHash3",
			"x86_32 with seed 0 of the UTF-8 bytes of salt immediately followed by those of unit, as an",
			"unsigned 32-bit integer. passes lists the percentages among 0.01, 1, 10, 50 and 99.99 at",
			"which the unit passes (a unit without an ID cannot be sampled). This is flagd's fractional",
			"bucketing (flagd 0.15.0 and later) with the salt as the flag key.",
		},
		Vectors: vs,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(file); err != nil {
		t.Fatal(err)
	}
	want := buf.Bytes()
	if *update {
		if err := os.WriteFile("testdata/sampling.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("testdata/sampling.json")
	if err != nil {
		t.Fatal(err)
	}
	var committed samplingFile
	if err := json.Unmarshal(got, &committed); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("testdata/sampling.json differs from what the implementation computes (run with -update only if the change is intended: it changes every sample)")
	}
}

// TestSamplingMonotone: over 200,000 units, every unit in at a percentage
// stays in at every larger one, and each percentage passes its share of
// the units within what 200,000 allow (4 standard deviations).
func TestSamplingMonotone(t *testing.T) {
	steps := []float64{0.01, 0.1, 1, 5, 10, 25, 50, 90, 99.99, 100}
	var gates []*Gate
	for _, p := range steps {
		gates = append(gates, mustCompile(t, fmt.Sprintf(`{"salt": "feed/new_ranker", "rules": [{"name": "all", "percent": %v}]}`, p), Options{}))
	}
	const n = 200000
	passed := make([]int, len(steps))
	for i := range n {
		u := Unit{ID: fmt.Sprintf("user-%d", i)}
		prev := false
		for j, g := range gates {
			d := g.Check(u)
			if prev && !d.Pass {
				t.Fatalf("unit %s passes at %v %% but not at %v %%", u.ID, steps[j-1], steps[j])
			}
			prev = d.Pass
			if d.Pass {
				passed[j]++
			}
		}
	}
	for j, p := range steps {
		want := p / 100
		sd := math.Sqrt(want * (1 - want) / n)
		if got := float64(passed[j]) / n; math.Abs(got-want) > 4*sd+1e-12 {
			t.Errorf("at %v %%: %d of %d pass (%.4f %%), want %v %% ± %.4f %%", p, passed[j], n, got*100, p, 4*sd*100)
		}
	}
}

// TestSamplingIndependentSalts: two gates at 10 % and 30 % with different
// salts both pass 3 % of units (10 % of 30 %), within 4 standard
// deviations over 200,000 units; with the same salt, the 10 % are all
// inside the 30 %.
func TestSamplingIndependentSalts(t *testing.T) {
	a := mustCompile(t, `{"salt": "feed/new_ranker", "rules": [{"name": "all", "percent": 10}]}`, Options{})
	b := mustCompile(t, `{"salt": "checkout/v2", "rules": [{"name": "all", "percent": 30}]}`, Options{})
	c := mustCompile(t, `{"salt": "feed/new_ranker", "rules": [{"name": "all", "percent": 30}]}`, Options{})
	const n = 200000
	var inA, both, sameSalt int
	for i := range n {
		u := Unit{ID: fmt.Sprintf("user-%d", i)}
		pa := a.Check(u).Pass
		if pa {
			inA++
		}
		if pa && b.Check(u).Pass {
			both++
		}
		if pa && c.Check(u).Pass {
			sameSalt++
		}
	}
	want := 0.1 * 0.3
	sd := math.Sqrt(want * (1 - want) / n)
	if got := float64(both) / n; math.Abs(got-want) > 4*sd {
		t.Errorf("different salts: %d of %d pass both (%.3f %%), want %.3f %% ± %.3f %%", both, n, got*100, want*100, 4*sd*100)
	}
	if sameSalt != inA {
		t.Errorf("same salt: %d units pass both, want all %d of the 10 %%", sameSalt, inA)
	}
}

// TestSamplingPopulation: population(salt, p) holds for exactly the units
// that a gate salted salt passes at p %, the units whose bucket is at the
// edge of the percentage included.
func TestSamplingPopulation(t *testing.T) {
	for _, p := range []float64{0.01, 10, 33.33, 99.99} {
		edge := int(math.Round(p * 100))
		sampled := mustCompile(t, fmt.Sprintf(`{"salt": "feed/new_ranker", "rules": [{"name": "all", "percent": %v}]}`, p), Options{})
		population := mustCompile(t, fmt.Sprintf(`{"salt": "checkout/v2", "rules": [{"name": "in", "restraints": [
		  {"condition": {"population": {"salt": "feed/new_ranker", "percent": %v}}}], "percent": 100}]}`, p), Options{})
		ids := []string{
			firstUnit("edge", func(id string) bool { return Bucket("feed/new_ranker", id) == edge-1 }),
			firstUnit("edge", func(id string) bool { return Bucket("feed/new_ranker", id) == edge }),
		}
		for i := range 20000 {
			ids = append(ids, fmt.Sprint("user-", i))
		}
		for _, id := range ids {
			s, q := sampled.Check(Unit{ID: id}), population.Check(Unit{ID: id})
			if s.Err != nil || q.Err != nil || s.Pass != q.Pass {
				t.Fatalf("at %v %%, unit %s (bucket %d): the gate salted feed/new_ranker %s, population(\"feed/new_ranker\", %v) %s",
					p, id, Bucket("feed/new_ranker", id), decision(s), p, decision(q))
			}
		}
	}
}
