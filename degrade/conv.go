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
	ry, rx := kh/2, kw/2
	pw := w + 2*rx
	p := padPlane(src, w, h, rx, ry)
	dst := make([]float32, w*h)
	// Work items are pairs of rows, which the row kernel computes together.
	parallel.For((h+1)/2, max(1, (1<<16)/max(1, 2*w*kh*kw)), func(lo, hi int) {
		for y := 2 * lo; y < min(h, 2*hi); y += 2 {
			var out1 []float32
			if y+1 < h {
				out1 = dst[(y+1)*w : (y+2)*w]
			}
			correlateRows(dst[y*w:(y+1)*w], out1, p[y*pw:], pw, k, kh, kw)
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

// filter applies kernel kn to every plane of m (c planes of w x h). An
// isotropic Gaussian is applied as two 1-D passes (it is an exact outer
// product); other kernels are not separable and are applied directly.
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
	t := Correlate(src, w, h, g, 1, len(g))
	return Correlate(t, w, h, g, len(g), 1)
}

func toF32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}
