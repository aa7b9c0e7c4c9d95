package tensor

import (
	"math"
	"testing"
)

// actKernel is one activation's forward and (where it has its own)
// backward kernel, as run (vector where actSIMD) and in Go, and its float64
// value and derivative.
type actKernel struct {
	name       string
	fwd, fwdGo func(y, x []float32)
	bwd, bwdGo func(gx, g, x, y []float32)
	ref        func(x float64) (y, dy float64)
}

func actKernels() []actKernel {
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	return []actKernel{
		{"Sigmoid", sigmoidForward, sigmoidForwardGo, nil, nil, func(x float64) (float64, float64) {
			s := sig(x)
			return s, s * (1 - s)
		}},
		{"SiLU", siluForward, siluForwardGo, siluBackward, siluBackwardGo, func(x float64) (float64, float64) {
			s := sig(x)
			return x * s, s * (1 + x*(1-s))
		}},
		{"GELU", geluForward, geluForwardGo, geluBackward, geluBackwardGo, func(x float64) (float64, float64) {
			c := math.Sqrt(2 / math.Pi)
			t := math.Tanh(c * (x + 0.044715*x*x*x))
			return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*c*(1+3*0.044715*x*x)
		}},
	}
}

// actGrid is x in [-12, 12] every 2^-10, then the extremes: a length that is
// not a multiple of 8, so the last elements take the Go tail.
func actGrid() []float32 {
	var xs []float32
	for i := -12 << 10; i <= 12<<10; i++ {
		xs = append(xs, float32(i)/(1<<10))
	}
	negZero := float32(math.Copysign(0, -1))
	xs = append(xs, 88, -88, 87.33, -87.33, 16, -16, 1e4, -1e4, 0, negZero, 1e-30, -1e-30, 1e-40, -1e-40, math.SmallestNonzeroFloat32, -3e-8)
	return xs
}

// within is |got - want| <= tol (1 + |want|): absolute near 0, relative
// elsewhere.
func within(got float32, want, tol float64) bool {
	return math.Abs(float64(got)-want) <= tol*(1+math.Abs(want))
}

// TestActivationKernels: the vector Sigmoid, SiLU and GELU kernels (where
// the build and CPU have them) agree with the Go ones to 2e-6 and both with
// float64 math to 1e-5, in value and derivative, over the grid, over lengths
// 1..40 (vector bodies and tails of every length) and at the extremes.
func TestActivationKernels(t *testing.T) {
	if !actSIMD {
		t.Log("no vector kernels in this build or on this CPU: Go kernels against float64 only")
	}
	xs := actGrid()
	if len(xs)%8 == 0 {
		t.Fatal("grid length should leave a tail")
	}
	g := make([]float32, len(xs))
	for i := range g {
		g[i] = float32(1 + 0.5*math.Sin(float64(i)))
	}
	for _, k := range actKernels() {
		check := func(what string, x, got, gotGo []float32, ref func(i int, x float64) float64) {
			t.Helper()
			var worstGo, worstRef float64
			for i, v := range x {
				want := ref(i, float64(v))
				worstGo = max(worstGo, math.Abs(float64(got[i]-gotGo[i]))/(1+math.Abs(float64(gotGo[i]))))
				worstRef = max(worstRef, math.Abs(float64(got[i])-want)/(1+math.Abs(want)))
				if !within(got[i], float64(gotGo[i]), 2e-6) || !within(got[i], want, 1e-5) || !within(gotGo[i], want, 1e-5) {
					t.Fatalf("%s %s(%g) [%d of %d]: %g, Go kernel %g, float64 %g", k.name, what, v, i, len(x), got[i], gotGo[i], want)
				}
			}
			if len(x) == len(xs) {
				t.Logf("%s %s: worst error %.2g of the Go kernel's, %.2g of float64's", k.name, what, worstGo, worstRef)
			}
		}
		run := func(x []float32) {
			n := len(x)
			y, yGo := make([]float32, n), make([]float32, n)
			k.fwd(y, x)
			k.fwdGo(yGo, x)
			check("forward", x, y, yGo, func(_ int, v float64) float64 { w, _ := k.ref(v); return w })
			if k.bwd == nil {
				return
			}
			gx, gxGo := make([]float32, n), make([]float32, n)
			k.bwd(gx, g[:n], x, y)
			k.bwdGo(gxGo, g[:n], x, yGo)
			check("backward", x, gx, gxGo, func(i int, v float64) float64 { _, d := k.ref(v); return float64(g[i]) * d })
		}
		run(xs)
		for n := 1; n <= 40; n++ {
			run(xs[len(xs)-n:]) // the extremes, in vector lanes and in tails
			run(xs[3*n : 4*n])
		}
	}
}

// TestActivationKernelsInf: in the vector kernels ±Inf give the limits,
// value and derivative, and NaN stays NaN (the Go kernels give NaN for
// GELU(-Inf) and SiLU(-Inf), as -Inf*0, and for their derivatives at ±Inf).
func TestActivationKernelsInf(t *testing.T) {
	if !actSIMD {
		t.Skip("no vector kernels in this build or on this CPU")
	}
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	x := []float32{inf, -inf, nan, inf, -inf, nan, inf, -inf}
	g := []float32{1, 1, 1, 1, 1, 1, 1, 1}
	for _, k := range actKernels() {
		// Sigmoid tends to 1 and 0, SiLU and GELU to x and 0; the
		// derivatives of all three to 0 at -Inf, SiLU's and GELU's to 1 at
		// +Inf.
		limit := map[float32][2]float32{inf: {inf, 1}, -inf: {0, 0}}
		if k.name == "Sigmoid" {
			limit[inf] = [2]float32{1, 0}
		}
		y, gx := make([]float32, 8), make([]float32, 8)
		k.fwd(y, x)
		if k.bwd != nil {
			k.bwd(gx, g, x, y)
		}
		for i, v := range x {
			if v != v {
				if y[i] == y[i] {
					t.Errorf("%s(NaN) = %g", k.name, y[i])
				}
				continue
			}
			if y[i] != limit[v][0] {
				t.Errorf("%s(%g) = %g, want %g", k.name, v, y[i], limit[v][0])
			}
			if k.bwd != nil && gx[i] != limit[v][1] {
				t.Errorf("%s'(%g) = %g, want %g", k.name, v, gx[i], limit[v][1])
			}
		}
	}
}
