// Package resize resamples float32 image planes with the exact conventions
// super-resolution numbers depend on: PyTorch's F.interpolate (bicubic,
// bilinear, area: TSD-SR's preprocessing and Real-ESRGAN's degradations),
// MATLAB's imresize (the classic benchmarks and NIQE), and an antialiased
// Lanczos-3 for arbitrary output scales.
//
// Every resampler is separable: a 1-D filter with weights precomputed per
// output index (taps) is applied along rows, then along columns, and both
// passes are split over rows with internal/parallel. Plane functions take
// and return planes of w*h values, row-major; they panic on a plane whose
// length is not w*h or on a non-positive size, which are programmer errors.
// Results are not clamped: cubic and Lanczos filters overshoot [0, 1] near
// edges, and callers that need a range clamp (the image writers do).
package resize

import (
	"fmt"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
)

// Func is a plane resampler: it returns src (w x h) resized to ow x oh.
// Bicubic, Bilinear, Area and Lanczos are Funcs.
type Func func(src []float32, w, h, ow, oh int) []float32

// Image resizes every plane of m, colour and alpha alike, to ow x oh with f.
// Channels and BitDepth are kept; the result is not clamped.
func Image(m *imageio.Image, ow, oh int, f Func) *imageio.Image {
	out := &imageio.Image{Width: ow, Height: oh, Channels: m.Channels, BitDepth: m.BitDepth,
		Pix: make([]float32, 0, ow*oh*m.Channels)}
	for c := range m.Channels {
		out.Pix = append(out.Pix, f(m.Plane(c), m.Width, m.Height, ow, oh)...)
	}
	if m.Alpha != nil {
		out.Alpha = f(m.Alpha, m.Width, m.Height, ow, oh)
	}
	return out
}

// taps is a 1-D resampling precomputed for one axis: output sample o is
// sum_k w[o*n+k] * in[idx[o*n+k]], summed in k order. Indices are already
// inside the input (border handling is folded in); short filters are padded
// with zero weights.
type taps struct {
	n   int
	idx []int32
	w   []float32
}

func newTaps(out, n int) *taps {
	return &taps{n: n, idx: make([]int32, out*n), w: make([]float32, out*n)}
}

func (t *taps) out() int { return len(t.idx) / t.n }

// grain is the number of rows per parallel work item so that each item does
// at least about 32k multiply-adds.
func grain(perRow int) int { return max(1, (1<<15)/max(perRow, 1)) }

// passH resamples each of the h rows of src (w wide) with t.
func passH(src []float32, w, h int, t *taps) []float32 {
	ow, n := t.out(), t.n
	dst := make([]float32, ow*h)
	parallel.For(h, grain(ow*n), func(lo, hi int) {
		for y := lo; y < hi; y++ {
			row := src[y*w : (y+1)*w]
			out := dst[y*ow : (y+1)*ow]
			if n == 4 {
				for o := range out {
					ix, wt := t.idx[4*o:4*o+4], t.w[4*o:4*o+4]
					out[o] = row[ix[0]]*wt[0] + row[ix[1]]*wt[1] + row[ix[2]]*wt[2] + row[ix[3]]*wt[3]
				}
				continue
			}
			for o := range out {
				ix, wt := t.idx[o*n:(o+1)*n], t.w[o*n:(o+1)*n]
				var s float32
				for k, i := range ix {
					s += row[i] * wt[k]
				}
				out[o] = s
			}
		}
	})
	return dst
}

// passV resamples each of the w columns of src (h tall) with t; it works a
// whole row at a time so the inner loop runs over contiguous memory.
func passV(src []float32, w, h int, t *taps) []float32 {
	oh, n := t.out(), t.n
	dst := make([]float32, w*oh)
	parallel.For(oh, grain(w*n), func(lo, hi int) {
		for o := lo; o < hi; o++ {
			out := dst[o*w : (o+1)*w]
			if n == 4 { // bicubic: one sweep, same summation order as below
				ix, wt := t.idx[4*o:4*o+4], t.w[4*o:4*o+4]
				r0 := src[int(ix[0])*w : int(ix[0])*w+w]
				r1 := src[int(ix[1])*w : int(ix[1])*w+w]
				r2 := src[int(ix[2])*w : int(ix[2])*w+w]
				r3 := src[int(ix[3])*w : int(ix[3])*w+w]
				w0, w1, w2, w3 := wt[0], wt[1], wt[2], wt[3]
				r0, r1, r2, r3 = r0[:len(out)], r1[:len(out)], r2[:len(out)], r3[:len(out)]
				for x := range out {
					out[x] = r0[x]*w0 + r1[x]*w1 + r2[x]*w2 + r3[x]*w3
				}
				continue
			}
			for k := range n {
				i, wk := int(t.idx[o*n+k]), t.w[o*n+k]
				if k > 0 && wk == 0 {
					continue
				}
				in := src[i*w : (i+1)*w]
				if k == 0 {
					for x, v := range in {
						out[x] = v * wk
					}
					continue
				}
				for x, v := range in {
					out[x] += v * wk
				}
			}
		}
	})
	return dst
}

// resample is a plane Func built from the taps axisTaps(in, out) gives an
// axis: it checks the plane (name is the panic's), then applies the taps
// along rows, then columns. An axis that keeps its size is copied
// unchanged (PyTorch, too, copies there), without taps.
func resample(name string, axisTaps func(in, out int) *taps, src []float32, w, h, ow, oh int) []float32 {
	checkPlane(name, src, w, h, ow, oh)
	var tx, ty *taps
	if ow != w {
		tx = axisTaps(w, ow)
	}
	if oh != h {
		ty = axisTaps(h, oh)
	}
	return separable(src, w, h, tx, ty)
}

// separable applies tx along rows then ty along columns; a nil taps means
// that axis keeps its size and is copied unchanged.
func separable(src []float32, w, h int, tx, ty *taps) []float32 {
	out := src
	if tx != nil {
		out = passH(out, w, h, tx)
		w = tx.out()
	}
	if ty != nil {
		out = passV(out, w, h, ty)
	}
	if tx == nil && ty == nil {
		out = append([]float32(nil), src...)
	}
	return out
}

func checkPlane(name string, src []float32, w, h, ow, oh int) {
	if w <= 0 || h <= 0 || ow <= 0 || oh <= 0 || len(src) != w*h {
		panic(fmt.Sprintf("resize.%s: %d values for %dx%d -> %dx%d", name, len(src), w, h, ow, oh))
	}
}
