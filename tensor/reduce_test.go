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

func TestMSEGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MSE(in[0], in[1]) }, 1e-2, 1e-3,
		tensortest.Rand(r, 3, 7), tensortest.Rand(r, 3, 7))
}
