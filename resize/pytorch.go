package resize

import "math"

// The PyTorch resamplers reproduce F.interpolate on float32 CPU tensors
// given an output size (scale = in/out along each axis). Weights are
// computed in float32 with PyTorch's formulas and operation order, so the
// results agree with PyTorch's to float32 rounding of the final sums. When
// F.interpolate is called with scale_factor instead, PyTorch maps
// coordinates with 1/scale_factor, which is the same thing whenever
// out = in*scale_factor exactly (integer factors such as TSD-SR's x4).

// cubicA is the Keys cubic parameter PyTorch uses for bicubic.
const cubicA = -0.75

// Bicubic resizes a plane like PyTorch's
// F.interpolate(mode="bicubic", align_corners=False, antialias=False), the
// upsampling TSD-SR applies to its input: Keys cubic with a = -0.75, source
// coordinate (o+0.5)*in/out - 0.5, four taps at floor(x)-1..floor(x)+2 with
// indices clamped to the border (replicate). There is no antialiasing, so
// downscaling aliases, as in PyTorch. Values may overshoot [0, 1] and are
// not clamped.
func Bicubic(src []float32, w, h, ow, oh int) []float32 {
	return resample("Bicubic", bicubicTaps, src, w, h, ow, oh)
}

// bicubicTaps follows upsample_bicubic2d: area_pixel_compute_source_index
// with cubic=true (no clamp at 0), guard_index_and_lambda, and
// get_cubic_upsample_coefficients.
func bicubicTaps(in, out int) *taps {
	t := newTaps(out, 4)
	scale := float32(in) / float32(out)
	for o := range out {
		real := float32(scale*(float32(o)+0.5)) - 0.5
		i0, l := guard(real, in)
		x1 := l
		x2 := 1 - l
		c := [4]float32{
			cubic2(x1 + 1),
			cubic1(x1),
			cubic1(x2),
			cubic2(x2 + 1),
		}
		for k := range 4 {
			t.idx[4*o+k] = int32(min(max(i0-1+k, 0), in-1))
			t.w[4*o+k] = c[k]
		}
	}
	return t
}

// guard is PyTorch's guard_index_and_lambda: the integer part (at most
// in-1) and the fraction clamped to [0, 1].
func guard(real float32, in int) (int, float32) {
	i := min(int(math.Floor(float64(real))), in-1)
	l := min(max(real-float32(i), 0), 1)
	return i, l
}

// cubic1 is the Keys kernel for |x| <= 1: ((A+2)x - (A+3))x^2 + 1.
func cubic1(x float32) float32 {
	const a = cubicA
	return float32(float32(float32(a+2)*x-(a+3))*x)*x + 1
}

// cubic2 is the Keys kernel for 1 < |x| < 2: ((Ax - 5A)x + 8A)x - 4A.
func cubic2(x float32) float32 {
	const a = cubicA
	return float32(float32(float32(float32(a*x)-5*a)*x)+8*a)*x - 4*a
}

// Bilinear resizes a plane like PyTorch's
// F.interpolate(mode="bilinear", align_corners=False, antialias=False):
// source coordinate max((o+0.5)*in/out - 0.5, 0), two taps floor(x) and
// floor(x)+1 (the latter clamped to the last pixel), weights 1-f and f.
func Bilinear(src []float32, w, h, ow, oh int) []float32 {
	return resample("Bilinear", bilinearTaps, src, w, h, ow, oh)
}

func bilinearTaps(in, out int) *taps {
	t := newTaps(out, 2)
	scale := float32(in) / float32(out)
	for o := range out {
		real := max(float32(scale*(float32(o)+0.5))-0.5, 0)
		i0, l := guard(real, in)
		i1 := i0
		if i0 < in-1 {
			i1++
		}
		t.idx[2*o], t.idx[2*o+1] = int32(i0), int32(i1)
		t.w[2*o], t.w[2*o+1] = 1-l, l
	}
	return t
}

// Area resizes a plane like PyTorch's F.interpolate(mode="area"), which is
// adaptive_avg_pool2d: output o averages inputs
// [floor(o*in/out), ceil((o+1)*in/out)). Downscaling by an integer factor k
// is the mean of k x k blocks; for upscaling the windows hold one or two
// pixels (adaptive pooling, not nearest neighbour).
func Area(src []float32, w, h, ow, oh int) []float32 {
	return resample("Area", areaTaps, src, w, h, ow, oh)
}

func areaTaps(in, out int) *taps {
	n := 0
	for o := range out {
		n = max(n, ((o+1)*in+out-1)/out-o*in/out)
	}
	t := newTaps(out, n)
	for o := range out {
		lo := o * in / out
		hi := ((o+1)*in + out - 1) / out
		wk := 1 / float32(hi-lo)
		for k := range n {
			if lo+k < hi {
				t.idx[o*n+k], t.w[o*n+k] = int32(lo+k), wk
			} else {
				t.idx[o*n+k] = int32(lo)
			}
		}
	}
	return t
}
