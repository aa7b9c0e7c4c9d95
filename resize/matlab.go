package resize

import (
	"fmt"
	"math"

	"tsdsr/internal/parallel"
)

// MATLAB's imresize(x, scale, 'bicubic') is the resampler behind the classic
// SR benchmarks (LR = imresize(HR, 1/4), bicubic = imresize(LR, 4)) and
// NIQE's half-scale. The functions below reproduce it the way pyiqa's
// PyTorch port (matlab_utils.imresize) evaluates it on CUDA, because NIQE
// numbers in papers come from there:
//
//   - Keys cubic with a = -0.5; when downscaling with antialiasing the kernel
//     is widened by 1/scale (MATLAB's h(x) = scale*cubic(scale*x); the scale
//     cancels in the normalisation);
//   - source coordinate u = (o+0.5)/scale - 0.5, taps floor(u)-K/2+1 .. with
//     K = ceil(4/scale)+2 (or 4+2 when upscaling), weights normalised to sum
//     to 1;
//   - out-of-range taps mirrored with the edge sample repeated (MATLAB's
//     'symmetric': a b c | c b a);
//   - height first, then width;
//   - everything in float32 (pyiqa casts its input to float32), with the
//     division by the scale done as a multiplication by its float32
//     reciprocal and every sum over taps reduced in four interleaved
//     accumulators combined as ((a0+a1)+a2)+a3, as PyTorch's CUDA reduction
//     does.
//
// MATLAB itself computes in float64, so for uint8 images the two agree
// after rounding except for rare ties (see the Set5/Set14 test).

// MatlabBicubic resizes a w×h plane to ow×oh like MATLAB's
// imresize(x, [oh ow], 'bicubic') (antialiased when shrinking), with the
// scale along each axis taken as out/in. See the comment above for the
// exact arithmetic. Values are not clamped.
func MatlabBicubic(src []float32, w, h, ow, oh int) []float32 {
	checkMatlab("MatlabBicubic", src, w, h, ow, oh)
	return matlabResize(src, w, h, ow, oh, float64(ow)/float64(w), float64(oh)/float64(h), true)
}

// MatlabImresize resizes a w×h plane by scale like MATLAB's
// imresize(x, scale, 'bicubic'): the output is ceil(scale*w)×ceil(scale*h)
// and the coordinate mapping uses scale itself (not the ratio of the
// rounded sizes), exactly as MATLAB and pyiqa do. NIQE's half scale is
// MatlabImresize(y, w, h, 0.5).
func MatlabImresize(src []float32, w, h int, scale float64) (dst []float32, ow, oh int) {
	if !(scale > 0) || math.IsInf(scale, 0) {
		panic(fmt.Sprintf("resize: MatlabImresize scale %v", scale))
	}
	ow = int(math.Ceil(float64(w) * scale))
	oh = int(math.Ceil(float64(h) * scale))
	checkMatlab("MatlabImresize", src, w, h, ow, oh)
	return matlabResize(src, w, h, ow, oh, scale, scale, true), ow, oh
}

func checkMatlab(name string, src []float32, w, h, ow, oh int) {
	if w <= 0 || h <= 0 || ow <= 0 || oh <= 0 {
		panic(fmt.Sprintf("resize: %s sizes %dx%d -> %dx%d", name, w, h, ow, oh))
	}
	if len(src) != w*h {
		panic(fmt.Sprintf("resize: %s got %d values for %dx%d", name, len(src), w, h))
	}
}

// matlabResize runs the height pass, then the width pass. An axis whose
// scale is exactly 1 is left untouched, as in pyiqa.
func matlabResize(src []float32, w, h, ow, oh int, sx, sy float64, antialias bool) []float32 {
	cur := src
	if sy != 1 {
		t := matlabTaps(h, oh, sy, antialias)
		out := make([]float32, w*oh)
		parallel.For(oh, max(1, 4096/max(w*t.k, 1)), func(lo, hi int) {
			acc := make([]float32, 4*w)
			for o := lo; o < hi; o++ {
				clear(acc)
				for k, i := range t.idx[o*t.k : (o+1)*t.k] {
					a := acc[(k&3)*w : (k&3+1)*w]
					in := cur[int(i)*w : (int(i)+1)*w]
					wk := t.w[o*t.k+k]
					for x, v := range in {
						a[x] += float32(v * wk)
					}
				}
				a0, a1, a2, a3 := acc[:w], acc[w:2*w], acc[2*w:3*w], acc[3*w:]
				row := out[o*w : (o+1)*w]
				for x := range row {
					row[x] = ((a0[x] + a1[x]) + a2[x]) + a3[x]
				}
			}
		})
		cur = out
	}
	if sx == 1 {
		if sy == 1 {
			return append([]float32(nil), src...)
		}
		return cur
	}
	t := matlabTaps(w, ow, sx, antialias)
	out := make([]float32, ow*oh)
	parallel.For(oh, max(1, 4096/max(ow*t.k, 1)), func(lo, hi int) {
		for y := lo; y < hi; y++ {
			in := cur[y*w : (y+1)*w]
			row := out[y*ow : (y+1)*ow]
			for o := range row {
				idx, wt := t.idx[o*t.k:(o+1)*t.k], t.w[o*t.k:(o+1)*t.k]
				var a [4]float32
				for k, i := range idx {
					a[k&3] += float32(in[i] * wt[k])
				}
				row[o] = ((a[0] + a[1]) + a[2]) + a[3]
			}
		}
	})
	return out
}

// sum4 returns the sum of v reduced in four interleaved accumulators
// (k mod 4) combined as ((a0+a1)+a2)+a3, the order of PyTorch's CUDA sum.
func sum4(v []float32) float32 {
	var a [4]float32
	for k, x := range v {
		a[k&3] += x
	}
	return ((a[0] + a[1]) + a[2]) + a[3]
}

// mtaps holds k taps per output sample: input indices (already mirrored
// into range) and normalised float32 weights.
type mtaps struct {
	k   int
	idx []int32
	w   []float32
}

// matlabTaps computes the taps of one axis (in -> out samples at the given
// scale) in float32, following pyiqa's operation order.
func matlabTaps(in, out int, scale float64, antialias bool) *mtaps {
	k := 4
	aa := float32(1)
	if antialias && scale < 1 {
		aa = float32(scale)
		k = int(math.Ceil(4 / scale))
	}
	k += 2
	inv := float32(1) / float32(scale)
	t := &mtaps{k: k, idx: make([]int32, out*k), w: make([]float32, out*k)}
	for o := range out {
		pos := float32(float32(float32(o)+0.5)*inv) - 0.5
		base := float32(math.Floor(float64(pos))) - float32(k/2) + 1
		dist := pos - base
		wt := t.w[o*k : (o+1)*k]
		for j := range wt {
			x := dist - float32(j)
			if aa != 1 {
				x *= aa
			}
			wt[j] = cubicHalf(x)
		}
		s := sum4(wt)
		for j := range wt {
			wt[j] /= s
			t.idx[o*k+j] = int32(mirror(int(base)+j, in))
		}
	}
	return t
}

// cubicHalf is Keys' cubic convolution kernel with a = -0.5, evaluated in
// float32 with pyiqa's expressions and operation order:
// 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1] and -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on
// (1, 2].
func cubicHalf(x float32) float32 {
	ax := float32(math.Abs(float64(x)))
	ax2 := float32(ax * ax)
	ax3 := float32(ax * ax2)
	switch {
	case ax <= 1:
		return float32(float32(1.5*ax3)-float32(2.5*ax2)) + 1
	case ax <= 2:
		return float32(float32(float32(-0.5*ax3)-float32(-2.5*ax2))+float32(-4*ax)) + 2
	}
	return 0
}

// mirror maps index i into [0, n) by MATLAB's symmetric extension
// (period 2n, edge samples repeated).
func mirror(i, n int) int {
	m := 2 * n
	i %= m
	if i < 0 {
		i += m
	}
	if i >= n {
		i = m - 1 - i
	}
	return i
}
