package degrade

import (
	"tsdsr/internal/parallel"
)

// reflect maps i into [0, n) by mirroring without repeating the edge
// sample (PyTorch's 'reflect', OpenCV's BORDER_REFLECT_101), repeatedly
// for pads wider than the plane.
func reflect(i, n int) int {
	if n == 1 {
		return 0
	}
	for i < 0 || i >= n {
		if i < 0 {
			i = -i
		} else {
			i = 2*(n-1) - i
		}
	}
	return i
}

// padPlane returns src (w x h) extended by rx columns and ry rows on each
// side by reflection; the result is (w+2rx) x (h+2ry).
func padPlane(src []float32, w, h, rx, ry int) []float32 {
	pw, ph := w+2*rx, h+2*ry
	p := make([]float32, pw*ph)
	for y := range ph {
		row := src[reflect(y-ry, h)*w:][:w]
		dst := p[y*pw : (y+1)*pw]
		copy(dst[rx:], row)
		for x := range rx {
			dst[x] = row[reflect(x-rx, w)]
			dst[rx+w+x] = row[reflect(w+x, w)]
		}
	}
	return p
}

// Correlate returns the cross-correlation of the w x h plane src with the
// kh x kw kernel k (row-major, centred at kh/2, kw/2), reading outside the
// plane by reflection: BasicSR's filter2D. Kernels here are point-symmetric,
// so this is also their convolution. Every output is summed over the taps
// in row-major order with products rounded to float32 before each add, on
// every code path, so SIMD and pure-Go builds give the same bits.
func Correlate(src []float32, w, h int, k []float32, kh, kw int) []float32 {
	return correlateRect(src, w, h, k, kh, kw, 0, 0, w, h)
}

// correlateRect is Correlate computed only on the ow x oh rectangle at
// (x0, y0): the same values, for callers that need part of the output.
func correlateRect(src []float32, w, h int, k []float32, kh, kw, x0, y0, ow, oh int) []float32 {
	ry, rx := kh/2, kw/2
	pw := w + 2*rx
	p := padPlane(src, w, h, rx, ry)
	dst := make([]float32, ow*oh)
	// Work items are pairs of rows, which the row kernel computes together.
	parallel.For((oh+1)/2, max(1, (1<<16)/max(1, 2*ow*kh*kw)), func(lo, hi int) {
		for y := 2 * lo; y < min(oh, 2*hi); y += 2 {
			var out1 []float32
			if y+1 < oh {
				out1 = dst[(y+1)*ow : (y+2)*ow]
			}
			correlateRows(dst[y*ow:(y+1)*ow], out1, p[(y0+y)*pw+x0:], pw, k, kh, kw)
		}
	})
	return dst
}

// correlateRowGo is the reference row kernel: out[x] = sum over taps
// (i, j) of k[i*kw+j] * p[i*pw+x+j].
func correlateRowGo(out, p []float32, pw int, k []float32, kh, kw int) {
	for x := range out {
		var s float32
		for i := range kh {
			row := p[i*pw+x:]
			kr := k[i*kw : (i+1)*kw]
			for j, kv := range kr {
				s += float32(kv * row[j])
			}
		}
		out[x] = s
	}
}

// filter applies the kernel kp describes to c planes of w x h values. An
// isotropic Gaussian runs as two 1-D passes (it is an exact outer product);
// the other kernels are not separable and run as direct 2-D correlations
// over their own size (the zero padding to 21 would add nothing).
func filter(pix []float32, w, h, c int, kp KernelParams) []float32 {
	out := make([]float32, 0, len(pix))
	n := w * h
	if kp.Type == KernelIso {
		g := toF32(GaussianKernel1D(kp.Size, kp.SigmaX))
		for ch := range c {
			out = append(out, separable(pix[ch*n:(ch+1)*n], w, h, g)...)
		}
		return out
	}
	kn := kp.Build()
	k := toF32(kn.W)
	for ch := range c {
		out = append(out, Correlate(pix[ch*n:(ch+1)*n], w, h, k, kn.Size, kn.Size)...)
	}
	return out
}

// separable filters a plane with the outer product g x g: rows then columns.
func separable(src []float32, w, h int, g []float32) []float32 {
	return separableRect(src, w, h, g, 0, 0, w, h)
}

// separableRect is separable computed only on the ow x oh rectangle at
// (x0, y0). The row pass covers the rectangle's columns on the band of rows
// the column pass reads; the band is clipped only at the plane's edges,
// where reflecting inside it is reflecting inside the plane.
func separableRect(src []float32, w, h int, g []float32, x0, y0, ow, oh int) []float32 {
	r := len(g) / 2
	b0, b1 := max(0, y0-r), min(h, y0+oh+r)
	t := correlateRect(src, w, h, g, 1, len(g), x0, b0, ow, b1-b0)
	return correlateRect(t, ow, b1-b0, g, len(g), 1, 0, y0-b0, ow, oh)
}

func toF32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}
