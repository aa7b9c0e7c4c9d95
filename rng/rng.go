// Package rng is tsdsr's deterministic random number generator. Training
// pairs, initialisations and noise must be byte-identical for a seed on any
// machine and Go version, so the algorithms are fixed here (PCG-XSL-RR 128/64
// for bits, the polar Box-Muller method for normals) rather than borrowed
// from math/rand, whose derived methods may change.
//
// A Rand is not safe for concurrent use; give each goroutine its own Child.
package rng

import (
	"math"
	"math/bits"
)

// Rand is a PCG-XSL-RR 128/64 generator.
type Rand struct {
	hi, lo    uint64 // 128-bit state
	spare     float64
	haveSpare bool
}

const (
	mulHi = 2549297995355413924
	mulLo = 4865540595714422341
	incHi = 6364136223846793005
	incLo = 1442695040888963407
)

// New returns a generator seeded with seed.
func New(seed uint64) *Rand {
	r := &Rand{hi: seed ^ 0x9e3779b97f4a7c15, lo: seed}
	r.Uint64()
	r.Uint64()
	return r
}

// Uint64 returns 64 uniformly random bits.
func (r *Rand) Uint64() uint64 {
	// state = state * mul + inc (mod 2^128)
	hi, lo := bits.Mul64(r.lo, mulLo)
	hi += r.hi*mulLo + r.lo*mulHi
	lo, c := bits.Add64(lo, incLo, 0)
	hi, _ = bits.Add64(hi, incHi, c)
	r.hi, r.lo = hi, lo
	return bits.RotateLeft64(hi^lo, -int(hi>>58))
}

// Float64 returns a uniform value in [0, 1) with 53 random bits.
func (r *Rand) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Float32 returns a uniform value in [0, 1) with 24 random bits.
func (r *Rand) Float32() float32 { return float32(r.Uint64()>>40) / (1 << 24) }

// Uniform returns a uniform value in [lo, hi).
func (r *Rand) Uniform(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// IntN returns a uniform integer in [0, n); n must be positive.
func (r *Rand) IntN(n int) int {
	if n <= 0 {
		panic("rng.IntN: n <= 0")
	}
	// Lemire's multiply-shift with rejection: unbiased.
	un := uint64(n)
	hi, lo := bits.Mul64(r.Uint64(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), un)
		}
	}
	return int(hi)
}

// Normal returns a standard normal value.
func (r *Rand) Normal() float64 {
	if r.haveSpare {
		r.haveSpare = false
		return r.spare
	}
	for {
		u := 2*r.Float64() - 1
		v := 2*r.Float64() - 1
		s := u*u + v*v
		if s > 0 && s < 1 {
			f := math.Sqrt(-2 * math.Log(s) / s)
			r.spare, r.haveSpare = v*f, true
			return u * f
		}
	}
}

// FillNormal fills dst with normal values of the given mean and std.
func (r *Rand) FillNormal(dst []float32, mean, std float32) {
	for i := range dst {
		dst[i] = mean + std*float32(r.Normal())
	}
}

// FillUniform fills dst with uniform values in [lo, hi).
func (r *Rand) FillUniform(dst []float32, lo, hi float32) {
	for i := range dst {
		dst[i] = lo + (hi-lo)*r.Float32()
	}
}

// Perm returns a random permutation of [0, n) (Fisher-Yates).
func (r *Rand) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// Child returns an independent generator derived from r's current state and
// id without advancing r: the same parent state and id give the same child,
// so work split across goroutines stays deterministic.
func (r *Rand) Child(id uint64) *Rand {
	c := &Rand{hi: r.hi ^ mix(id), lo: r.lo + mix(id^0x5851f42d4c957f2d)}
	c.Uint64()
	return c
}

// mix is SplitMix64's finaliser: spreads nearby ids over the state space.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
