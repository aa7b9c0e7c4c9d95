package tensor

import (
	"math"

	"tsdsr/internal/parallel"
)

// elemGrain is the smallest chunk of an elementwise loop worth a goroutine:
// below ~16k elements the pool's overhead exceeds the work.
const elemGrain = 1 << 14

// unary applies fwd to a's data chunk by chunk (in parallel for large
// tensors) and records bwd, which writes dLoss/dx into gx from the output
// gradient g, the inputs x and the outputs y of the same chunk. Kernels work
// on slices so the per-element work inlines (no call per element).
func unary(a *Tensor, fwd func(y, x []float32), bwd func(gx, g, x, y []float32)) *Tensor {
	out := New(a.Shape...)
	parallel.For(len(a.Data), elemGrain, func(lo, hi int) {
		fwd(out.Data[lo:hi], a.Data[lo:hi])
	})
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(a.Data))
		parallel.For(len(gx), elemGrain, func(lo, hi int) {
			bwd(gx[lo:hi], g.Data[lo:hi], a.Data[lo:hi], out.Data[lo:hi])
		})
		a.accumulateOwned(gx)
	}, a)
}

// Scale returns s*a.
func Scale(a *Tensor, s float32) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = s * v
		}
	}, func(gx, g, _, _ []float32) {
		for i, v := range g {
			gx[i] = s * v
		}
	})
}

// AddScalar returns a + s.
func AddScalar(a *Tensor, s float32) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = v + s
		}
	}, func(gx, g, _, _ []float32) { copy(gx, g) })
}

// Neg returns -a.
func Neg(a *Tensor) *Tensor { return Scale(a, -1) }

// Square returns a^2; d/dx = 2x.
func Square(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = v * v
		}
	}, func(gx, g, x, _ []float32) {
		for i, v := range g {
			gx[i] = 2 * x[i] * v
		}
	})
}

// Sqrt returns sqrt(a); d/dx = 1/(2 sqrt(x)) (infinite at 0, as in PyTorch).
func Sqrt(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = float32(math.Sqrt(float64(v)))
		}
	}, func(gx, g, _, y []float32) {
		for i, v := range g {
			gx[i] = v * 0.5 / y[i]
		}
	})
}

// Exp returns e^a; d/dx = e^x. See expf for the accuracy.
func Exp(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = expf(v)
		}
	}, func(gx, g, _, y []float32) {
		for i, v := range g {
			gx[i] = v * y[i]
		}
	})
}

// Clamp returns min(max(a, lo), hi). The gradient is 1 where lo <= x <= hi
// and 0 outside, as torch.clamp.
func Clamp(a *Tensor, lo, hi float32) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = min(max(v, lo), hi)
		}
	}, func(gx, g, x, _ []float32) {
		for i, v := range g {
			if x[i] >= lo && x[i] <= hi {
				gx[i] = v
			}
		}
	})
}

// ReLU returns max(a, 0); d/dx = 1 for x > 0, else 0.
func ReLU(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = max(v, 0)
		}
	}, func(gx, g, x, _ []float32) {
		for i, v := range g {
			if x[i] > 0 {
				gx[i] = v
			}
		}
	})
}

// expf is a float32 e^x, about 1 ulp (relative error < 3e-7) and about
// twice as fast as math.Exp in float64 (Cephes expf): x = n ln2 + r with
// |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n put in the exponent bits.
// Results below the smallest normal float32 (x < -87.33) flush to 0; x above
// 88.72 gives +Inf; NaN stays NaN.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72284:
		return float32(math.Inf(1))
	case x < -87.33654:
		return 0
	}
	// n = round(x / ln2); r = x - n*ln2 with ln2 split in two for exactness.
	n := float32(math.Floor(float64(x*1.44269504088896341 + 0.5)))
	r := x - n*0.693359375 + n*2.12194440e-4
	z := r * r
	p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	p = p*z + r + 1
	// p is in [0.7, 1.42]: scaling by 2^n may leave the normal range at the
	// ends, so scale in two steps there.
	ni := int32(n)
	if ni > 126 || ni < -125 {
		h := ni / 2
		return p * math.Float32frombits(uint32(h+127)<<23) * math.Float32frombits(uint32(ni-h+127)<<23)
	}
	return p * math.Float32frombits(uint32(ni+127)<<23)
}

// Expf is expf for packages that fuse exponentials into their own loops
// (the SD3 VAE's GroupNorm+SiLU), with the same results as SiLU's Go kernel
// here (its vector kernel differs by ~1e-7 relative).
func Expf(x float32) float32 { return expf(x) }

// tanhf is a float32 tanh (Cephes tanhf, relative error ~1e-7): an odd
// polynomial for |x| < 0.625, where 1 - 2/(e^2x + 1) would cancel, that
// formula above.
func tanhf(x float32) float32 {
	ax := x
	if ax < 0 {
		ax = -ax
	}
	if ax < 0.625 {
		z := x * x
		return ((((-5.70498872745e-3*z+2.06390887954e-2)*z-5.37397155531e-2)*z+1.33314422036e-1)*z-3.33332819422e-1)*z*x + x
	}
	t := 1 - 2/(expf(2*ax)+1)
	if x < 0 {
		return -t
	}
	return t
}

// sigmoid is 1/(1+e^-x), evaluated without overflow for either sign.
func sigmoid(x float32) float32 {
	if x >= 0 {
		return 1 / (1 + expf(-x))
	}
	e := expf(x)
	return e / (1 + e)
}

// Sigmoid returns 1/(1+e^-a); d/dx = y(1-y).
func Sigmoid(a *Tensor) *Tensor {
	return unary(a, sigmoidForward, func(gx, g, _, y []float32) {
		for i, v := range g {
			gx[i] = v * y[i] * (1 - y[i])
		}
	})
}

// SiLU returns x*sigmoid(x) (swish); d/dx = s(1 + x(1-s)) with s = sigmoid(x).
func SiLU(a *Tensor) *Tensor { return unary(a, siluForward, siluBackward) }

// The Go kernels of Sigmoid, SiLU and GELU: sigmoidForward, siluForward,
// siluBackward, geluForward and geluBackward (activation_*.go) run them
// where the build or CPU has no vector kernels, and on tails of fewer than
// 8 elements.

func sigmoidForwardGo(y, x []float32) {
	for i, v := range x {
		y[i] = sigmoid(v)
	}
}

func siluForwardGo(y, x []float32) {
	for i, v := range x {
		y[i] = v * sigmoid(v)
	}
}

func siluBackwardGo(gx, g, x, _ []float32) {
	for i, v := range g {
		s := sigmoid(x[i])
		gx[i] = v * s * (1 + x[i]*(1-s))
	}
}

// Tanh returns tanh(a); d/dx = 1 - y^2.
func Tanh(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = tanhf(v)
		}
	}, func(gx, g, _, y []float32) {
		for i, v := range g {
			gx[i] = v * (1 - y[i]*y[i])
		}
	})
}

// Constants of the tanh approximation of GELU.
const (
	geluC = 0.7978845608028654 // sqrt(2/pi)
	geluA = 0.044715
)

// GELU returns the tanh approximation of the Gaussian error linear unit, as
// PyTorch's gelu(approximate="tanh"):
//
//	y = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//	dy/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3*0.044715 x^2),  t = tanh(u)
//
// With GOEXPERIMENT=simd on AVX2+FMA CPUs it runs 8 elements at a time
// (activation_simd_amd64.go), within 2e-6 of the Go kernel below.
func GELU(a *Tensor) *Tensor { return unary(a, geluForward, geluBackward) }

func geluForwardGo(y, x []float32) {
	for i, v := range x {
		y[i] = 0.5 * v * (1 + tanhf(geluC*(v+geluA*v*v*v)))
	}
}

func geluBackwardGo(gx, g, x, _ []float32) {
	for i, v := range g {
		xv := x[i]
		t := tanhf(geluC * (xv + geluA*xv*xv*xv))
		gx[i] = v * (0.5*(1+t) + 0.5*xv*(1-t*t)*geluC*(1+3*geluA*xv*xv))
	}
}
