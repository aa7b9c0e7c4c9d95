package sr

import (
	"math"

	"tsdsr/internal/parallel"
)

// PILBicubic resizes a w x h plane to ow x oh as Pillow's
// Image.resize(size, BICUBIC) (its default filter) does, in float instead
// of Pillow's 8-bit fixed point: Keys cubic with a = -0.5, sampled at
// (o + 0.5) * in/out, and, when downscaling, stretched by the scale so
// that it antialiases (support 2 * scale); taps beyond the border are
// dropped and the weights renormalised (Pillow's precompute_coeffs). The
// horizontal pass runs first, as in Pillow. Values are not clamped.
func PILBicubic(src []float32, w, h, ow, oh int) []float32 {
	if len(src) != w*h || w <= 0 || h <= 0 || ow <= 0 || oh <= 0 {
		panic("sr: PILBicubic: bad plane size")
	}
	tmp := src
	if ow != w {
		k := pilTaps(w, ow)
		tmp = make([]float32, ow*h)
		parallel.For(h, 8, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				row, dst := src[y*w:(y+1)*w], tmp[y*ow:(y+1)*ow]
				for o := range dst {
					var s float64
					for i, c := range k.w[o] {
						s += c * float64(row[k.lo[o]+i])
					}
					dst[o] = float32(s)
				}
			}
		})
	}
	if oh == h {
		if ow == w {
			return append([]float32(nil), src...)
		}
		return tmp
	}
	k := pilTaps(h, oh)
	out := make([]float32, ow*oh)
	parallel.For(oh, 8, func(lo, hi int) {
		acc := make([]float64, ow)
		for o := lo; o < hi; o++ {
			clear(acc)
			for i, c := range k.w[o] {
				row := tmp[(k.lo[o]+i)*ow : (k.lo[o]+i+1)*ow]
				for x, v := range row {
					acc[x] += c * float64(v)
				}
			}
			for x, v := range acc {
				out[o*ow+x] = float32(v)
			}
		}
	})
	return out
}

// pilTapSet holds Pillow's resampling coefficients for in -> out samples.
type pilTapSet struct {
	lo []int       // first input index of each output
	w  [][]float64 // normalised weights from lo on
}

// pilTaps computes Pillow's coefficients for in -> out samples.
func pilTaps(in, out int) pilTapSet {
	const support = 2.0 // bicubic
	scale := float64(in) / float64(out)
	fs := max(scale, 1)
	sup := support * fs
	t := pilTapSet{lo: make([]int, out), w: make([][]float64, out)}
	for o := range out {
		center := (float64(o) + 0.5) * scale
		// C's (int) truncates toward zero; both bounds are clamped.
		xmin := max(int(center-sup+0.5), 0)
		xmax := min(int(center+sup+0.5), in) - xmin
		ws := make([]float64, xmax)
		var sum float64
		for x := range ws {
			ws[x] = pilCubic((float64(x+xmin) - center + 0.5) / fs)
			sum += ws[x]
		}
		if sum != 0 {
			for x := range ws {
				ws[x] /= sum
			}
		}
		t.lo[o], t.w[o] = xmin, ws
	}
	return t
}

// pilCubic is Pillow's bicubic_filter, Keys cubic with a = -0.5.
func pilCubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}
