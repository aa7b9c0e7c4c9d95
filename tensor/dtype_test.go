package tensor_test

import (
	"math"
	"slices"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

func isNaN32(f float32) bool { return f != f }

// TestF16Exhaustive checks every half value: widening matches the IEEE
// formula computed in float64, and narrowing gives the value back.
func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := tensor.F16ToF32(h)
		exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
		var want float64
		switch {
		case exp == 0x1f && mant != 0:
			if !isNaN32(f) || tensor.F32ToF16(f)&0x7c00 != 0x7c00 || tensor.F32ToF16(f)&0x3ff == 0 {
				t.Fatalf("NaN %#04x widened to %v, back to %#04x", h, f, tensor.F32ToF16(f))
			}
			continue
		case exp == 0x1f:
			want = math.Inf(1)
		case exp == 0:
			want = math.Ldexp(mant, -24)
		default:
			want = math.Ldexp(1+mant/1024, exp-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
		if back := tensor.F32ToF16(f); back != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// TestF16RoundingExhaustive checks round-to-nearest-even at every midpoint
// between consecutive positive halves: the midpoint goes to the even one,
// a float32 step either side to the nearer one.
func TestF16RoundingExhaustive(t *testing.T) {
	for h := uint16(0); h < 0x7bff; h++ { // the step to infinity is in TestF16KnownValues
		lo, hi := float64(tensor.F16ToF32(h)), float64(tensor.F16ToF32(h+1))
		mid := float32((lo + hi) / 2) // exact: halves have 11-bit significands
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		for _, sgn := range []float32{1, -1} {
			sb := uint16(0)
			if sgn < 0 {
				sb = 0x8000
			}
			m := sgn * mid
			if got := tensor.F32ToF16(m); got != sb|even {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x (tie to even)", m, got, sb|even)
			}
			below := math.Nextafter32(m, 0)
			above := math.Nextafter32(m, sgn*float32(math.Inf(1)))
			if got := tensor.F32ToF16(below); got != sb|h {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", below, got, sb|h)
			}
			if got := tensor.F32ToF16(above); got != sb|(h+1) {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", above, got, sb|(h+1))
			}
		}
	}
}

func TestF16KnownValues(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {0.1, 0x2e66}, {65504, 0x7bff},
		{65519.99, 0x7bff}, {65520, 0x7c00}, {1e9, 0x7c00}, {-1e9, 0xfc00},
		{float32(math.Ldexp(1, -14)), 0x0400}, {float32(math.Ldexp(1, -24)), 0x0001},
		{float32(math.Ldexp(1, -25)), 0x0000}, {float32(math.Ldexp(1.5, -25)), 0x0001},
		{float32(math.Ldexp(1, -26)), 0x0000}, {math.SmallestNonzeroFloat32, 0x0000},
		{float32(math.Inf(1)), 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range cases {
		if got := tensor.F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	if h := tensor.F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
}

func TestBF16(t *testing.T) {
	// Widening then narrowing is the identity on every non-NaN bfloat16.
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := tensor.BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) bits %#08x", h, math.Float32bits(f))
		}
		back := tensor.F32ToBF16(f)
		if isNaN32(f) {
			if !isNaN32(tensor.BF16ToF32(back)) {
				t.Fatalf("NaN %#04x narrowed to %#04x", h, back)
			}
		} else if back != h {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, back)
		}
	}
	cases := []struct {
		bits uint32
		h    uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, odd below -> up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below the tie
		{0x7f7fffff, 0x7f80}, // max float32 rounds to inf
		{0xff7fffff, 0xff80},
		{0x7f800000, 0x7f80}, {0x00000001, 0x0000}, {0x80000000, 0x8000},
		{0x7f800001, 0x7fc0}, // signalling NaN with a low payload stays NaN
	}
	for _, c := range cases {
		if got := tensor.F32ToBF16(math.Float32frombits(c.bits)); got != c.h {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.bits, got, c.h)
		}
	}
}

func TestDtypeSlices(t *testing.T) {
	src := []float32{1, -0.5, 3.140625, 65504}
	h := make([]uint16, 4)
	back := make([]float32, 4)
	tensor.F32ToF16Slice(h, src)
	tensor.F16ToF32Slice(back, h)
	if !slices.Equal(back, src) {
		t.Errorf("f16 slice round trip %v", back)
	}
	tensor.F32ToBF16Slice(h[:3], src[:3])
	tensor.BF16ToF32Slice(back[:3], h[:3])
	if !slices.Equal(back[:3], src[:3]) {
		t.Errorf("bf16 slice round trip %v", back[:3])
	}
	if !tensortest.Panics(func() { tensor.F16ToF32Slice(back, h[:2]) }) {
		t.Error("length mismatch did not panic")
	}
}
