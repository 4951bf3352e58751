package gate

import "math/bits"

// Buckets is the number of sampling buckets: a percentage is a whole number
// of buckets, so percentages go in steps of 0.01.
const Buckets = 10000

// Hash returns the 32-bit MurmurHash3 (x86_32, seed 0) of the UTF-8 bytes of
// salt followed by those of id, the hash that sampling uses.
func Hash(salt, id string) uint32 {
	p := newPrefix(salt)
	return p.sum(id)
}

// Bucket returns the sampling bucket of the unit id in the population of
// the gate salted salt, in [0, Buckets): floor(Hash(salt, id) * 10000 / 2^32).
// A rule with percentage p passes the units whose bucket is below p * 100.
func Bucket(salt, id string) int {
	return bucketOf(Hash(salt, id))
}

func bucketOf(h uint32) int { return int(uint64(h) * Buckets >> 32) }

// MurmurHash3 x86_32 constants.
const (
	c1 = 0xcc9e2d51
	c2 = 0x1b873593
)

// prefix is the MurmurHash3 state after a salt: the hash of the salt's whole
// 4-byte blocks and the bytes left over, so that hashing salt+id reads the
// salt once, when a gate is loaded, and allocates nothing.
type prefix struct {
	h     uint32 // after the blocks
	carry uint32 // the bytes after the last block, little-endian
	nc    int    // how many (0 to 3)
	n     int    // the salt's length
}

func newPrefix(salt string) prefix { return prefix{}.write(salt) }

func mixK(k uint32) uint32 {
	k *= c1
	k = bits.RotateLeft32(k, 15)
	return k * c2
}

func mixH(h, k uint32) uint32 {
	h ^= mixK(k)
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

// write hashes s after what s has hashed.
func (p prefix) write(s string) prefix {
	p.n += len(s)
	i := 0
	// Complete the carried bytes into a block.
	for p.nc > 0 && p.nc < 4 && i < len(s) {
		p.carry |= uint32(s[i]) << (8 * p.nc)
		p.nc++
		i++
	}
	if p.nc == 4 {
		p.h = mixH(p.h, p.carry)
		p.carry, p.nc = 0, 0
	}
	for ; i+4 <= len(s); i += 4 {
		p.h = mixH(p.h, uint32(s[i])|uint32(s[i+1])<<8|uint32(s[i+2])<<16|uint32(s[i+3])<<24)
	}
	for ; i < len(s); i++ {
		p.carry |= uint32(s[i]) << (8 * p.nc)
		p.nc++
	}
	return p
}

// finish returns the hash of what p has hashed.
func (p prefix) finish() uint32 {
	h := p.h
	if p.nc > 0 {
		h ^= mixK(p.carry)
	}
	return fmix(h ^ uint32(p.n))
}

// fmix is MurmurHash3's finalization.
func fmix(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// sum returns the hash of the prefix followed by id: p.write(id).finish(),
// written out for a check (the bytes carried completed into a block, the
// id's blocks, its last bytes).
func (p *prefix) sum(id string) uint32 {
	h, k, i := p.h, p.carry, 0
	if p.nc > 0 {
		if len(id) < 4-p.nc {
			return p.write(id).finish()
		}
		for nc := p.nc; nc < 4; nc++ {
			k |= uint32(id[i]) << (8 * nc)
			i++
		}
		h, k = mixH(h, k), 0
	}
	for ; len(id)-i >= 4; i += 4 {
		h = mixH(h, le32(id[i:]))
	}
	switch len(id) - i {
	case 3:
		k |= uint32(id[i+2]) << 16
		fallthrough
	case 2:
		k |= uint32(id[i+1]) << 8
		fallthrough
	case 1:
		h ^= mixK(k | uint32(id[i]))
	}
	return fmix(h ^ uint32(p.n+len(id)))
}

// murmur3 returns MurmurHash3 x86_32 of data with seed, for tests against
// the published vectors, which use several seeds.
func murmur3(data string, seed uint32) uint32 {
	return prefix{h: seed}.write(data).finish()
}
