package tensor_test

import (
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

func TestBroadcastBinaryGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ops := map[string]func(a, b *tensor.Tensor) *tensor.Tensor{
		"add": tensor.Add, "sub": tensor.Sub, "mul": tensor.Mul,
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			a, b := tensortest.Rand(r, 2, 3, 4), tensortest.Rand(r, 3, 1)
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return op(in[0], in[1]) }, 1e-2, 1e-3, a, b)
		})
	}
	a, b := tensortest.Rand(r, 4, 5), tensortest.Rand(r, 5)
	for i := range b.Data {
		b.Data[i] += 3 // keep the divisor away from 0
	}
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Div(in[0], in[1]) }, 1e-2, 1e-3, a, b)
}

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

func TestMSEGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MSE(in[0], in[1]) }, 1e-2, 1e-3,
		tensortest.Rand(r, 3, 7), tensortest.Rand(r, 3, 7))
}
