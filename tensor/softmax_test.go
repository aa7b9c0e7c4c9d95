package tensor_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// refSoftmax is the float64 softmax of one row, shifted by its maximum.
func refSoftmax(xs []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range xs {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range xs {
		s += math.Exp(float64(v) - m)
	}
	want := make([]float64, len(xs))
	for i, v := range xs {
		want[i] = math.Exp(float64(v)-m) / s
	}
	return want
}

func TestSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	x := tensortest.Rand(r, 3, 2, 7)
	x.Data[0] = 1000 // would overflow e^x without the max shift
	y := tensor.Softmax(x)
	for row := 0; row < 6; row++ {
		checkClose(t, "Softmax", y.Data[row*7:(row+1)*7], refSoftmax(x.Data[row*7:(row+1)*7]), 1e-6)
	}
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Softmax(in[0]) }, 1e-2, 1e-2,
		tensor.Scale(tensortest.Rand(r, 2, 3, 5), 3))
}
