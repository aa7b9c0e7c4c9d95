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

// Exp returns e^a; d/dx = e^x.
func Exp(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = float32(math.Exp(float64(v)))
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

// sigmoid is 1/(1+e^-x), evaluated without overflow for either sign.
func sigmoid(x float32) float32 {
	if x >= 0 {
		return float32(1 / (1 + math.Exp(-float64(x))))
	}
	e := math.Exp(float64(x))
	return float32(e / (1 + e))
}

// Sigmoid returns 1/(1+e^-a); d/dx = y(1-y).
func Sigmoid(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = sigmoid(v)
		}
	}, func(gx, g, _, y []float32) {
		for i, v := range g {
			gx[i] = v * y[i] * (1 - y[i])
		}
	})
}

// SiLU returns x*sigmoid(x) (swish); d/dx = s(1 + x(1-s)) with s = sigmoid(x).
func SiLU(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = v * sigmoid(v)
		}
	}, func(gx, g, x, _ []float32) {
		for i, v := range g {
			s := sigmoid(x[i])
			gx[i] = v * s * (1 + x[i]*(1-s))
		}
	})
}

// Tanh returns tanh(a); d/dx = 1 - y^2.
func Tanh(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			y[i] = float32(math.Tanh(float64(v)))
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
func GELU(a *Tensor) *Tensor {
	return unary(a, func(y, x []float32) {
		for i, v := range x {
			xv := float64(v)
			y[i] = float32(0.5 * xv * (1 + math.Tanh(geluC*(xv+geluA*xv*xv*xv))))
		}
	}, func(gx, g, x, _ []float32) {
		for i, v := range g {
			xv := float64(x[i])
			t := math.Tanh(geluC * (xv + geluA*xv*xv*xv))
			d := 0.5*(1+t) + 0.5*xv*(1-t*t)*geluC*(1+3*geluA*xv*xv)
			gx[i] = v * float32(d)
		}
	})
}
