package metrics

import (
	"math"

	"tsdsr/imageio"
)

// BT.601 luma weights for RGB in [0, 1] giving Y in [16, 235].
const (
	ycbcrR = 65.481
	ycbcrG = 128.553
	ycbcrB = 24.966
)

// yPyIQA is pyiqa's rgb2ycbcr luma on CUDA: RGB = v * float32(1/255), a
// float32 matrix product (fused multiply-adds over R, G, B), + 16, then
// * float32(1/255). The result is in [0, 1].
func yPyIQA(r, g, b uint8) float32 {
	fr := float32(float32(r) * inv255)
	fg := float32(float32(g) * inv255)
	fb := float32(float32(b) * inv255)
	y := fma32(fb, ycbcrB, fma32(fg, ycbcrG, float32(fr*ycbcrR)))
	return float32(float32(y+16) * inv255)
}

// yBasicSR is BasicSR's bgr2ycbcr(y_only=True) luma scaled to [16, 235]:
// float32 v/255, a float64 dot product, + 16, /255 cast to float32, then
// * 255 in float32.
func yBasicSR(r, g, b uint8) float64 {
	fb, fg, fr := float64(float32(b)/255), float64(float32(g)/255), float64(float32(r)/255)
	y := fb*ycbcrB + fg*ycbcrG + fr*ycbcrR + 16
	return float64(float32(float32(y/255) * 255))
}

// lumaPSNR returns the Y plane used by PSNR in the convention's units:
// [0, 1] for PyIQA, [0, 255] for BasicSR.
func lumaPSNR(m *rgb8, conv Convention) []float64 {
	out := make([]float64, m.w*m.h)
	for i := range out {
		r, g, b := m.c[0][i], m.c[1][i], m.c[2][i]
		if conv == BasicSR {
			out[i] = yBasicSR(r, g, b)
		} else {
			out[i] = float64(yPyIQA(r, g, b))
		}
	}
	return out
}

// lumaSSIM returns the Y plane (0..255) SSIM works on: pyiqa rounds
// Y*255 half to even (as MATLAB-style uint8 luma), BasicSR does not round.
func lumaSSIM(m *rgb8, conv Convention) []float64 {
	if conv == BasicSR {
		return lumaPSNR(m, BasicSR)
	}
	out := make([]float64, m.w*m.h)
	for i := range out {
		y := float32(yPyIQA(m.c[0][i], m.c[1][i], m.c[2][i]) * 255)
		out[i] = math.RoundToEven(float64(y))
	}
	return out
}

type psnrMetric struct{ o Options }

func newPSNR(o Options) (Metric, error) { return psnrMetric{o}, nil }

func (psnrMetric) Name() string         { return "psnr" }
func (psnrMetric) NeedsReference() bool { return true }
func (psnrMetric) HigherIsBetter() bool { return true }

// Compute returns PSNR in dB on the Y channel. PyIQA: 10 log10(1/(mse+1e-8))
// with Y in [0, 1] (finite for identical images); BasicSR:
// 10 log10(255^2/mse) with Y in [0, 255] (+Inf for identical images).
func (p psnrMetric) Compute(sr, gt *imageio.Image) (float64, error) { return compute(p, sr, gt) }

func (p psnrMetric) crop() int { return p.o.Crop }

func (p psnrMetric) compute8(a, b *rgb8) (float64, error) {
	ya, yb := lumaPSNR(a, p.o.Convention), lumaPSNR(b, p.o.Convention)
	var s float64
	for i := range ya {
		if p.o.Convention == BasicSR {
			d := ya[i] - yb[i]
			s += d * d
		} else {
			// float32 difference and square, as on the GPU.
			d := float32(ya[i]) - float32(yb[i])
			s += float64(d * d)
		}
	}
	mse := s / float64(len(ya))
	if p.o.Convention == BasicSR {
		return 10 * math.Log10(255*255/mse), nil
	}
	return 10 * math.Log10(1/(mse+1e-8)), nil
}

type ssimMetric struct {
	o   Options
	win []float64 // 1-D Gaussian, 11 taps, sum 1
}

func newSSIM(o Options) (Metric, error) { return ssimMetric{o, gaussian1D(11, 1.5)}, nil }

func (ssimMetric) Name() string         { return "ssim" }
func (ssimMetric) NeedsReference() bool { return true }
func (ssimMetric) HigherIsBetter() bool { return true }

// gaussian1D returns exp(-(i-c)^2/(2 sigma^2)) normalised to sum 1. Both
// MATLAB's fspecial (pyiqa) and cv2.getGaussianKernel (BasicSR) windows
// are its outer product with itself. pyiqa stores its 2-D window in
// float32; filtering separably in float64 instead changes SSIM by less
// than 1e-6.
func gaussian1D(n int, sigma float64) []float64 {
	g := make([]float64, n)
	c := float64(n-1) / 2
	var s float64
	for i := range g {
		x := float64(i) - c
		g[i] = math.Exp(-x * x / (2 * sigma * sigma))
		s += g[i]
	}
	for i := range g {
		g[i] /= s
	}
	return g
}

// Compute returns the mean SSIM on the Y channel (0..255, C1 =
// (0.01*255)^2, C2 = (0.03*255)^2) over the 'valid' 11x11 windows.
func (m ssimMetric) Compute(sr, gt *imageio.Image) (float64, error) { return compute(m, sr, gt) }

func (m ssimMetric) crop() int { return m.o.Crop }

func (m ssimMetric) compute8(a, b *rgb8) (float64, error) {
	w, h := a.w, a.h
	k := len(m.win)
	if w < k || h < k {
		return 0, errTooSmall("ssim", w, h, k, k)
	}
	x, y := lumaSSIM(a, m.o.Convention), lumaSSIM(b, m.o.Convention)
	return m.raw(x, y, w, h, m.o.Convention == BasicSR), nil
}

// raw is the SSIM of two luma planes; basic selects BasicSR's formula
// (no clamp). The Gaussian is symmetric, so each weight multiplies the sum
// of its two samples (this only changes float64 rounding).
func (m ssimMetric) raw(x, y []float64, w, h int, basic bool) float64 {
	k := len(m.win)
	half := k / 2
	ow, oh := w-k+1, h-k+1
	// The five planes to average: x, y, x^2, y^2, xy.
	planes := [5][]float64{x, y, make([]float64, w*h), make([]float64, w*h), make([]float64, w*h)}
	for i := range x {
		planes[2][i], planes[3][i], planes[4][i] = x[i]*x[i], y[i]*y[i], x[i]*y[i]
	}
	// filter writes sum_t win[t]*src(t)[c] for c < len(dst), src(t) being
	// the t-th of k consecutive inputs.
	filter := func(dst []float64, src func(t int) []float64) {
		mid := src(half)
		g := m.win[half]
		for c := range dst {
			dst[c] = g * mid[c]
		}
		for t := range half {
			g := m.win[t]
			a, b := src(t)[:len(dst)], src(k - 1 - t)[:len(dst)]
			for c := range dst {
				dst[c] += g * (a[c] + b[c])
			}
		}
	}
	var hor [5][]float64
	for i, p := range planes {
		hor[i] = make([]float64, ow*h)
		for r := range h {
			row := p[r*w : (r+1)*w]
			filter(hor[i][r*ow:(r+1)*ow], func(t int) []float64 { return row[t:] })
		}
	}
	c1v, c2v := 0.01, 0.03 // as Python evaluates (0.01*255)**2 at run time
	c1v *= 255
	c2v *= 255
	c1, c2 := c1v*c1v, c2v*c2v
	var mo [5][]float64
	for i := range mo {
		mo[i] = make([]float64, ow)
	}
	var total float64
	for r := range oh {
		for i := range mo {
			hp := hor[i]
			filter(mo[i], func(t int) []float64 { return hp[(r+t)*ow : (r+t+1)*ow] })
		}
		var sum float64
		for c := range ow {
			mu1, mu2 := mo[0][c], mo[1][c]
			mu11, mu22, mu12 := mu1*mu1, mu2*mu2, mu1*mu2
			s11, s22, s12 := mo[2][c]-mu11, mo[3][c]-mu22, mo[4][c]-mu12
			if basic {
				sum += ((2*mu12 + c1) * (2*s12 + c2)) / ((mu11 + mu22 + c1) * (s11 + s22 + c2))
				continue
			}
			cs := max(0, (2*s12+c2)/(s11+s22+c2))
			sum += (2*mu12 + c1) / (mu11 + mu22 + c1) * cs
		}
		total += sum
	}
	return total / float64(ow*oh)
}
