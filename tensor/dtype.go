package tensor

import (
	"fmt"
	"math"
)

// Conversions between float32 and the 16-bit storage formats of checkpoints
// (safetensors BF16 and F16). Computation is always float32; these are only
// for loading and storing.

// BF16ToF32 widens a bfloat16 (the top 16 bits of a float32) exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even. Infinities stay
// infinite, finite values too large round to infinity, NaN stays NaN (quiet).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, force quiet
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the lowest kept bit rounds half to even.
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// F16ToF32 widens an IEEE 754 half-precision value exactly (subnormals,
// infinities and NaN payloads included).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: mant * 2^-24, exact in float32.
	v := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// F32ToF16 rounds f to the nearest IEEE 754 half, ties to even, producing
// subnormals below 2^-14, infinity above 65504 (from 65520 on, as IEEE
// rounding says), and a quiet NaN for NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // half's biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	var r, rem, half uint32
	if e <= 0 {
		// Subnormal half: its mantissa (units of 2^-24) is the 24-bit
		// significand 1.mant shifted right by 14-e. Tiny values, float32
		// subnormals included, are below half of 2^-24 and round to zero.
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		sig := mant | 0x800000
		r, rem, half = sig>>shift, sig&(1<<shift-1), 1<<(shift-1)
	} else {
		r, rem, half = uint32(e)<<10|mant>>13, mant&0x1fff, 0x1000
	}
	// A carry out of the mantissa correctly bumps the exponent (up to inf).
	if rem > half || (rem == half && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}

// convertSlice sets dst[i] = conv(src[i]) after checking the lengths match.
func convertSlice[D, S any](op string, dst []D, src []S, conv func(S) D) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("tensor.%s: dst has %d elements, src %d", op, len(dst), len(src)))
	}
	for i, v := range src {
		dst[i] = conv(v)
	}
}

// BF16ToF32Slice widens src into dst (equal lengths).
func BF16ToF32Slice(dst []float32, src []uint16) {
	convertSlice("BF16ToF32Slice", dst, src, BF16ToF32)
}

// F32ToBF16Slice rounds src into dst (equal lengths); see F32ToBF16.
func F32ToBF16Slice(dst []uint16, src []float32) {
	convertSlice("F32ToBF16Slice", dst, src, F32ToBF16)
}

// F16ToF32Slice widens src into dst (equal lengths).
func F16ToF32Slice(dst []float32, src []uint16) {
	convertSlice("F16ToF32Slice", dst, src, F16ToF32)
}

// F32ToF16Slice rounds src into dst (equal lengths); see F32ToF16.
func F32ToF16Slice(dst []uint16, src []float32) {
	convertSlice("F32ToF16Slice", dst, src, F32ToF16)
}
