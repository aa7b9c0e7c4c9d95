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

func TestSumMeanAxis(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	x := tensortest.Rand(r, 2, 3, 4)
	for axis := -3; axis < 3; axis++ {
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprint(axis, keep), func(t *testing.T) {
				a := (axis + 3) % 3
				shape := slices.Clone(x.Shape)
				if keep {
					shape[a] = 1
				} else {
					shape = slices.Delete(shape, a, a+1)
				}
				s, m := tensor.SumAxis(x, axis, keep), tensor.MeanAxis(x, axis, keep)
				if !slices.Equal(s.Shape, shape) || !slices.Equal(m.Shape, shape) {
					t.Fatalf("shapes %v %v, want %v", s.Shape, m.Shape, shape)
				}
				// Offsets into the reduced tensor, via its keep-dim shape.
				kept := []int{2, 3, 4}
				kept[a] = 1
				want := make([]float64, len(s.Data))
				for i := range 2 {
					for j := range 3 {
						for k := range 4 {
							c := []int{i, j, k}
							c[a] = 0
							o := (c[0]*kept[1]+c[1])*kept[2] + c[2]
							want[o] += float64(x.Data[(i*3+j)*4+k])
						}
					}
				}
				checkClose(t, "SumAxis", s.Data, want, 1e-6)
				for i := range want {
					want[i] /= float64(x.Shape[a])
				}
				checkClose(t, "MeanAxis", m.Data, want, 1e-6)
				tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
					return tensor.Mul(tensor.SumAxis(in[0], axis, keep), tensor.MeanAxis(in[0], axis, keep))
				}, 1e-2, 1e-3, tensortest.Rand(r, 2, 3, 4))
			})
		}
	}
}

func TestMeanAndLargeSumAxis(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 17))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Mean(tensor.Square(in[0])) }, 1e-2, 1e-3,
		tensortest.Rand(r, 3, 5))
	x := tensortest.Rand(r, 5, 300, 70)
	for _, axis := range []int{0, 1, 2} {
		s := tensor.SumAxis(x, axis, false)
		var got, want float64
		for _, v := range s.Data {
			got += float64(v)
		}
		for _, v := range x.Data {
			want += float64(v)
		}
		if math.Abs(got-want) > 1e-2 {
			t.Errorf("axis %d: total %g, want %g", axis, got, want)
		}
	}
	if m := tensor.Mean(tensor.Full(2.5, 4, 4)); m.Item() != 2.5 || len(m.Shape) != 0 {
		t.Errorf("Mean of 2.5s = %v", m)
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
