package tensor_test

import (
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

func TestBackwardAccumulatesAndNoGrad(t *testing.T) {
	x := tensor.FromData([]float32{1, 2, 3}, 3).SetRequiresGrad(true)
	y := tensor.Full(2, 3)
	tensor.Sum(tensor.Mul(x, y)).Backward()
	tensor.Sum(tensor.Mul(x, x)).Backward() // reuse of x in one expression
	want := []float32{2 + 2, 2 + 4, 2 + 6}
	for i, g := range x.Grad.Data {
		if g != want[i] {
			t.Fatalf("grad %v, want %v", x.Grad.Data, want)
		}
	}
	restore := tensor.NoGrad()
	z := tensor.Mul(x, y)
	restore()
	if z.RequiresGrad() {
		t.Fatal("NoGrad still recorded a graph")
	}
	d := tensor.Mul(x.Detach(), y)
	if d.RequiresGrad() {
		t.Fatal("Detach did not stop the gradient")
	}
}

// TestNoGradRecordsNothing checks every op family: with inputs that require
// a gradient, the result is recorded normally and not at all under NoGrad.
func TestNoGradRecordsNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 18))
	x := tensortest.Rand(r, 2, 4, 3, 3).SetRequiresGrad(true)
	w := tensortest.Rand(r, 3, 3).SetRequiresGrad(true)
	v := tensortest.Rand(r, 3).SetRequiresGrad(true)
	c := tensortest.Rand(r, 4).SetRequiresGrad(true)
	ops := map[string]func() *tensor.Tensor{
		"elementwise": func() *tensor.Tensor { return tensor.GELU(x) },
		"scalar":      func() *tensor.Tensor { return tensor.Scale(x, 2) },
		"binary":      func() *tensor.Tensor { return tensor.Mul(x, v) },
		"sum":         func() *tensor.Tensor { return tensor.Sum(x) },
		"mean":        func() *tensor.Tensor { return tensor.Mean(x) },
		"sumaxis":     func() *tensor.Tensor { return tensor.SumAxis(x, 1, true) },
		"mse":         func() *tensor.Tensor { return tensor.MSE(x, x.Detach()) },
		"reshape":     func() *tensor.Tensor { return tensor.Reshape(x, -1) },
		"permute":     func() *tensor.Tensor { return tensor.Permute(x, 3, 2, 1, 0) },
		"slice":       func() *tensor.Tensor { return tensor.Slice(x, 1, 1, 3) },
		"split":       func() *tensor.Tensor { return tensor.Split(x, 1, 1, 3)[1] },
		"concat":      func() *tensor.Tensor { return tensor.Concat(0, x, x) },
		"pad":         func() *tensor.Tensor { return tensor.Pad2d(x, 1, 1, 1, 1, tensor.PadReflect) },
		"softmax":     func() *tensor.Tensor { return tensor.Softmax(x) },
		"layernorm":   func() *tensor.Tensor { return tensor.LayerNorm(x, v, v, 1e-5) },
		"rmsnorm":     func() *tensor.Tensor { return tensor.RMSNorm(x, v, 1e-5) },
		"groupnorm":   func() *tensor.Tensor { return tensor.GroupNorm(x, 2, c, c, 1e-5) },
		"matmul":      func() *tensor.Tensor { return tensor.MatMul(x, w) },
		"linear":      func() *tensor.Tensor { return tensor.Linear(x, w, v) },
	}
	for name, op := range ops {
		if !op().RequiresGrad() {
			t.Errorf("%s: not recorded with gradients on", name)
		}
		restore := tensor.NoGrad()
		y := op()
		restore()
		if y.RequiresGrad() {
			t.Errorf("%s: recorded under NoGrad", name)
		}
	}
}
