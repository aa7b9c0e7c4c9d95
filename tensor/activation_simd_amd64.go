//go:build goexperiment.simd && amd64

package tensor

import "simd/archsimd"

// Sigmoid, SiLU and GELU 8 elements at a time. All three are built on one
// sigmoid: GELU's 0.5(1 + tanh u) is sigmoid(2u), which needs only e^-|2u|
// (no overflow, no 1+tanh cancellation for negative u) where the scalar
// tanhf needs a polynomial branch for small |u|. With e = e^-|w| and
// q = 1/(1+e), sigmoid(w) = q for w >= 0 and e*q below, and
// sigmoid'(w) = s(1-s) = e*q*q for either sign, again without cancellation.
// Tails of fewer than 8 elements take the Go kernels.

// actSIMD is true when the AVX2+FMA activation kernels can run; tests and
// benchmarks turn it off to compare with the Go kernels.
var actSIMD = archsimd.X86.AVX2() && archsimd.X86.FMA()

// Constants of expNeg8 (expf's) and the kernels.
var (
	actOne  = archsimd.BroadcastFloat32x8(1)
	actHalf = archsimd.BroadcastFloat32x8(0.5)
	actLog2 = archsimd.BroadcastFloat32x8(1.44269504088896341)
	actMC1  = archsimd.BroadcastFloat32x8(-0.693359375)
	actC2   = archsimd.BroadcastFloat32x8(2.12194440e-4)
	actP0   = archsimd.BroadcastFloat32x8(1.9875691500e-4)
	actP1   = archsimd.BroadcastFloat32x8(1.3981999507e-3)
	actP2   = archsimd.BroadcastFloat32x8(8.3334519073e-3)
	actP3   = archsimd.BroadcastFloat32x8(4.1665795894e-2)
	actP4   = archsimd.BroadcastFloat32x8(1.6666665459e-1)
	actP5   = archsimd.BroadcastFloat32x8(5.0000001201e-1)
	// Below actExpLo e^x is under the smallest normal float32: expf
	// returns 0 there, and clamping to it keeps 2^n in the exponent range.
	actExpLo = archsimd.BroadcastFloat32x8(-87.33654)
	actBias  = archsimd.BroadcastInt32x8(127)
	actSign  = archsimd.BroadcastUint32x8(1 << 31)
	actZero  = archsimd.BroadcastFloat32x8(0)
	// SiLU's and GELU's inputs are clamped where sigmoid is exactly 0 or 1
	// in float32 (e underflows), so that ±Inf and huge |x| give 0*finite
	// rather than 0*Inf = NaN; the results are unchanged.
	actSiLULo  = archsimd.BroadcastFloat32x8(-88)
	actSiLUHi  = archsimd.BroadcastFloat32x8(88)
	actGELULo  = archsimd.BroadcastFloat32x8(-16)
	actGELUHi  = archsimd.BroadcastFloat32x8(16)
	actGELU2C  = archsimd.BroadcastFloat32x8(2 * geluC)
	actGELU2CA = archsimd.BroadcastFloat32x8(2 * geluC * geluA)
	actGELU6CA = archsimd.BroadcastFloat32x8(6 * geluC * geluA)
)

// expNeg8 is expf on 8 lanes for x <= 0 (FMA roundings aside, the same
// steps): x = n ln2 + r, a degree-6 polynomial in r, 2^n built in the
// exponent bits. Results below actExpLo are 0, as expf's; NaN stays NaN.
func expNeg8(x vec) vec {
	xc := actExpLo.Max(x) // VMAXPS returns its second operand, x, for NaN
	n := xc.MulAdd(actLog2, actHalf).Floor()
	r := n.MulAdd(actC2, n.MulAdd(actMC1, xc))
	p := actP0.MulAdd(r, actP1).MulAdd(r, actP2).MulAdd(r, actP3).MulAdd(r, actP4).MulAdd(r, actP5)
	p = p.MulAdd(r.Mul(r), r).Add(actOne)
	pow := n.ConvertToInt32().Add(actBias).ShiftAllLeft(23).AsFloat32x8()
	return actZero.Merge(p.Mul(pow), x.Less(actExpLo))
}

// sigmoid8 returns sigmoid(w) and e*q*q = sigmoid'(w) (see the top).
func sigmoid8(w vec) (s, ds vec) {
	e := expNeg8(w.AsUint32x8().Or(actSign).AsFloat32x8()) // e^-|w|
	q := actOne.Div(actOne.Add(e))
	eq := e.Mul(q)
	return q.Merge(eq, w.GreaterEqual(actZero)), eq.Mul(q)
}

func sigmoidForward(y, x []float32) {
	n := 0
	if actSIMD {
		n = len(x) &^ 7
		y = y[:len(x)]
		for i := 0; i < n; i += 8 {
			s, _ := sigmoid8(archsimd.LoadFloat32x8((*[8]float32)(x[i:])))
			s.Store((*[8]float32)(y[i:]))
		}
		archsimd.ClearAVXUpperBits()
	}
	sigmoidForwardGo(y[n:], x[n:])
}

func siluForward(y, x []float32) {
	n := 0
	if actSIMD {
		n = len(x) &^ 7
		y = y[:len(x)]
		for i := 0; i < n; i += 8 {
			v := archsimd.LoadFloat32x8((*[8]float32)(x[i:]))
			s, _ := sigmoid8(v)
			actSiLULo.Max(v).Mul(s).Store((*[8]float32)(y[i:]))
		}
		archsimd.ClearAVXUpperBits()
	}
	siluForwardGo(y[n:], x[n:])
}

// siluBackward: d/dx = s + x s(1-s).
func siluBackward(gx, g, x, _ []float32) {
	n := 0
	if actSIMD {
		n = len(g) &^ 7
		gx, x = gx[:len(g)], x[:len(g)]
		for i := 0; i < n; i += 8 {
			v := actSiLUHi.Min(actSiLULo.Max(archsimd.LoadFloat32x8((*[8]float32)(x[i:]))))
			s, ds := sigmoid8(v)
			d := v.MulAdd(ds, s)
			d.Mul(archsimd.LoadFloat32x8((*[8]float32)(g[i:]))).Store((*[8]float32)(gx[i:]))
		}
		archsimd.ClearAVXUpperBits()
	}
	siluBackwardGo(gx[n:], g[n:], x[n:], nil)
}

// gelu8 returns sigmoid(2u) and its derivative sigmoid'(2u) for GELU's
// 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), and x^2, all from the clamped x.
func gelu8(xc vec) (s, ds, x2 vec) {
	x2 = xc.Mul(xc)
	s, ds = sigmoid8(xc.Mul(x2.MulAdd(actGELU2CA, actGELU2C)))
	return s, ds, x2
}

// geluForward: y = x sigmoid(2u).
func geluForward(y, x []float32) {
	n := 0
	if actSIMD {
		n = len(x) &^ 7
		y = y[:len(x)]
		for i := 0; i < n; i += 8 {
			v := actGELULo.Max(archsimd.LoadFloat32x8((*[8]float32)(x[i:])))
			s, _, _ := gelu8(actGELUHi.Min(v))
			v.Mul(s).Store((*[8]float32)(y[i:]))
		}
		archsimd.ClearAVXUpperBits()
	}
	geluForwardGo(y[n:], x[n:])
}

// geluBackward: dy/dx = s + x sigmoid'(2u) 2u', 2u' = 2 sqrt(2/pi) (1 + 3*0.044715 x^2).
func geluBackward(gx, g, x, _ []float32) {
	n := 0
	if actSIMD {
		n = len(g) &^ 7
		gx, x = gx[:len(g)], x[:len(g)]
		for i := 0; i < n; i += 8 {
			v := actGELUHi.Min(actGELULo.Max(archsimd.LoadFloat32x8((*[8]float32)(x[i:]))))
			s, ds, x2 := gelu8(v)
			d := v.Mul(ds).MulAdd(x2.MulAdd(actGELU6CA, actGELU2C), s)
			d.Mul(archsimd.LoadFloat32x8((*[8]float32)(g[i:]))).Store((*[8]float32)(gx[i:]))
		}
		archsimd.ClearAVXUpperBits()
	}
	geluBackwardGo(gx[n:], g[n:], x[n:], nil)
}
