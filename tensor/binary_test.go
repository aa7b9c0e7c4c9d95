package tensor_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// broadcastAt returns x's element for output coordinate coord (NumPy rules).
func broadcastAt(x *tensor.Tensor, coord []int) float64 {
	off := 0
	for d, s := range x.Shape {
		c := coord[len(coord)-len(x.Shape)+d]
		if s == 1 {
			c = 0
		}
		off = off*s + c
	}
	return float64(x.Data[off])
}

var binaryOps = []struct {
	name string
	op   func(a, b *tensor.Tensor) *tensor.Tensor
	ref  func(x, y float64) float64
}{
	{"Add", tensor.Add, func(x, y float64) float64 { return x + y }},
	{"Sub", tensor.Sub, func(x, y float64) float64 { return x - y }},
	{"Mul", tensor.Mul, func(x, y float64) float64 { return x * y }},
	{"Div", tensor.Div, func(x, y float64) float64 { return x / y }},
}

func TestBinaryBroadcastEdgeCases(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	cases := []struct{ a, b, out []int }{
		{[]int{}, []int{2, 3}, []int{2, 3}},                    // 0-dim scalar
		{[]int{2, 3}, []int{}, []int{2, 3}},                    // scalar on the right
		{[]int{1}, []int{3}, []int{3}},                         // unit vector
		{[]int{4, 1}, []int{1, 5}, []int{4, 5}},                // both broadcast (outer product)
		{[]int{2, 1, 4}, []int{3, 1}, []int{2, 3, 4}},          // ranks differ, both broadcast
		{[]int{2, 3, 4, 5}, []int{3, 1, 1}, []int{2, 3, 4, 5}}, // per-channel NCHW bias
		{[]int{2, 6, 8}, []int{8}, []int{2, 6, 8}},             // per-feature bias
		{[]int{1, 1}, []int{1}, []int{1, 1}},                   // all unit dims
		{[]int{3, 1, 2}, []int{3, 1, 2}, []int{3, 1, 2}},       // equal shapes with a unit dim
		{[]int{0, 3}, []int{3}, []int{0, 3}},                   // empty
		{[]int{2, 1}, []int{2, 0}, []int{2, 0}},                // broadcast to empty
	}
	for _, c := range cases {
		for _, op := range binaryOps {
			t.Run(fmt.Sprint(op.name, c.a, c.b), func(t *testing.T) {
				a, b := tensortest.Rand(r, c.a...), tensortest.Rand(r, c.b...)
				if op.name == "Div" {
					b = tensor.AddScalar(tensor.Square(b), 0.5) // keep the divisor away from 0
				}
				y := op.op(a, b)
				if !slices.Equal(y.Shape, c.out) {
					t.Fatalf("shape %v, want %v", y.Shape, c.out)
				}
				coord := make([]int, len(c.out))
				for k := range y.Data {
					rem := k
					for d := len(c.out) - 1; d >= 0; d-- {
						coord[d] = rem % c.out[d]
						rem /= c.out[d]
					}
					want := op.ref(broadcastAt(a, coord), broadcastAt(b, coord))
					if math.Abs(float64(y.Data[k])-want) > 1e-6*math.Max(1, math.Abs(want)) {
						t.Fatalf("elem %d: %g, want %g", k, y.Data[k], want)
					}
				}
				if len(y.Data) == 0 {
					return
				}
				tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return op.op(in[0], in[1]) }, 1e-2, 2e-3, a, b)
			})
		}
	}
	if !tensortest.Panics(func() { tensor.Add(tensor.New(2, 3), tensor.New(2)) }) {
		t.Error("non-broadcastable shapes did not panic")
	}
}

// TestBinaryLargeBroadcastGrad runs a per-channel product big enough for the
// parallel, private-buffer reduction of the broadcast input's gradient, and
// an operand used twice.
func TestBinaryLargeBroadcastGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 15))
	x := tensortest.Rand(r, 2, 16, 40, 41).SetRequiresGrad(true)
	s := tensortest.Rand(r, 16, 1, 1).SetRequiresGrad(true)
	tensor.Sum(tensor.Add(tensor.Mul(x, s), x)).Backward()
	for c := 0; c < 16; c++ {
		var want float64
		for n := 0; n < 2; n++ {
			for _, v := range x.Data[(n*16+c)*1640 : (n*16+c+1)*1640] {
				want += float64(v)
			}
		}
		if math.Abs(float64(s.Grad.Data[c])-want) > 1e-3 {
			t.Fatalf("channel %d: grad %g, want %g", c, s.Grad.Data[c], want)
		}
	}
	for i, g := range x.Grad.Data {
		if want := s.Data[(i/1640)%16] + 1; g != want {
			t.Fatalf("x grad %d = %g, want %g", i, g, want)
		}
	}
}

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
