// Package tensortest checks gradients of tensor ops against central finite
// differences, and holds the other helpers of their tests. It is used by the tests of every package that defines ops or
// layers.
package tensortest

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
)

// Panics reports whether f panics (the shape checks of the ops do).
func Panics(f func()) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	f()
	return false
}

// Rand returns a tensor of the given shape with values uniform in [-1, 1),
// from a deterministic generator.
func Rand(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = 2*r.Float32() - 1
	}
	return t
}

// GradCheck compares the analytic gradients of the scalar loss
// sum(f(inputs) * w) (w a fixed random weighting, so every output element
// matters) with central differences of step eps, computed in float64 where
// the op's float32 rounding allows. It fails t when any relative error
// |a - n| / max(1, |a|, |n|) exceeds tol.
func GradCheck(t testing.TB, f func(in []*tensor.Tensor) *tensor.Tensor, eps, tol float64, inputs ...*tensor.Tensor) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	for _, in := range inputs {
		in.SetRequiresGrad(true)
		in.ZeroGrad()
	}
	out := f(inputs)
	w := Rand(r, out.Shape...)
	loss := func() float64 {
		defer tensor.NoGrad()()
		o := f(inputs)
		var s float64
		for i, v := range o.Data {
			s += float64(v) * float64(w.Data[i])
		}
		return s
	}
	tensor.Sum(tensor.Mul(out, w)).Backward()
	for k, in := range inputs {
		if in.Grad == nil {
			t.Fatalf("input %d: no gradient", k)
		}
		// Check a bounded number of coordinates so big inputs stay fast.
		idx := r.Perm(len(in.Data))
		if len(idx) > 64 {
			idx = idx[:64]
		}
		for _, i := range idx {
			orig := in.Data[i]
			in.Data[i] = orig + float32(eps)
			lp := loss()
			in.Data[i] = orig - float32(eps)
			lm := loss()
			in.Data[i] = orig
			num := (lp - lm) / (2 * eps)
			ana := float64(in.Grad.Data[i])
			den := math.Max(1, math.Max(math.Abs(num), math.Abs(ana)))
			if e := math.Abs(num-ana) / den; e > tol || math.IsNaN(ana) {
				t.Errorf("input %d %v elem %d: analytic %.6g numeric %.6g (rel err %.3g)", k, in.Shape, i, ana, num, e)
			}
		}
	}
}
