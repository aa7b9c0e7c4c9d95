package tensor_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// refNorm normalises groups of size n of x in float64: (x - mean)/sqrt(var + eps),
// or x/sqrt(mean(x^2) + eps) when !center.
func refNorm(x []float32, n int, eps float64, center bool) []float64 {
	out := make([]float64, len(x))
	for g := 0; g < len(x)/n; g++ {
		xs := x[g*n : (g+1)*n]
		var m float64
		if center {
			for _, v := range xs {
				m += float64(v)
			}
			m /= float64(n)
		}
		var ss float64
		for _, v := range xs {
			ss += (float64(v) - m) * (float64(v) - m)
		}
		rs := 1 / math.Sqrt(ss/float64(n)+eps)
		for i, v := range xs {
			out[g*n+i] = (float64(v) - m) * rs
		}
	}
	return out
}

func checkClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i, w := range want {
		if math.Abs(float64(got[i])-w) > tol*math.Max(1, math.Abs(w)) {
			t.Fatalf("%s elem %d: %g, want %g", name, i, got[i], w)
		}
	}
}

func TestLayerNormAndRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	x := tensortest.Rand(r, 3, 4, 8)
	w, b := tensortest.Rand(r, 8), tensortest.Rand(r, 8)
	want := refNorm(x.Data, 8, 1e-6, true)
	checkClose(t, "LayerNorm no affine", tensor.LayerNorm(x, nil, nil, 1e-6).Data, want, 1e-5)
	aff := make([]float64, len(want))
	for i := range aff {
		aff[i] = want[i]*float64(w.Data[i%8]) + float64(b.Data[i%8])
	}
	checkClose(t, "LayerNorm affine", tensor.LayerNorm(x, w, b, 1e-6).Data, aff, 1e-5)
	rms := refNorm(x.Data, 8, 1e-6, false)
	for i := range rms {
		rms[i] *= float64(w.Data[i%8])
	}
	checkClose(t, "RMSNorm", tensor.RMSNorm(x, w, 1e-6).Data, rms, 1e-5)

	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(in[0], in[1], in[2], 1e-5) },
		1e-3, 1e-2, tensortest.Rand(r, 2, 3, 6), tensortest.Rand(r, 6), tensortest.Rand(r, 6))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(in[0], nil, nil, 1e-6) },
		1e-3, 1e-2, tensortest.Rand(r, 5, 7))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.RMSNorm(in[0], in[1], 1e-6) },
		1e-3, 1e-2, tensortest.Rand(r, 4, 9), tensortest.Rand(r, 9))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.RMSNorm(in[0], nil, 1e-6) },
		1e-3, 1e-2, tensortest.Rand(r, 3, 5))
}

func TestGroupNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	x := tensortest.Rand(r, 2, 6, 3, 4)
	w, b := tensortest.Rand(r, 6), tensortest.Rand(r, 6)
	// Groups of 2 channels x 12 positions are contiguous in NCHW.
	want := refNorm(x.Data, 24, 1e-5, true)
	for i := range want {
		c := (i / 12) % 6
		want[i] = want[i]*float64(w.Data[c]) + float64(b.Data[c])
	}
	checkClose(t, "GroupNorm", tensor.GroupNorm(x, 3, w, b, 1e-5).Data, want, 1e-5)

	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.GroupNorm(in[0], 2, in[1], in[2], 1e-5) },
		1e-3, 1e-2, tensortest.Rand(r, 2, 4, 3, 3), tensortest.Rand(r, 4), tensortest.Rand(r, 4))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.GroupNorm(in[0], 2, nil, nil, 1e-5) },
		1e-3, 1e-2, tensortest.Rand(r, 2, 8))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.GroupNorm(in[0], 1, in[1], nil, 1e-5) },
		1e-3, 1e-2, tensortest.Rand(r, 1, 3, 2, 5), tensortest.Rand(r, 3))
}

// TestGroupNormLargeOffset checks float64 statistics: a big common offset
// with small variations must still normalise to zero mean and unit variance
// (float32 one-pass sums lose the variations entirely).
func TestGroupNormLargeOffset(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	x := tensortest.Rand(r, 1, 2, 256, 256)
	for i := range x.Data {
		x.Data[i] = 1000 + x.Data[i]*0.01
	}
	y := tensor.GroupNorm(x, 1, nil, nil, 1e-12)
	var s, ss float64
	for _, v := range y.Data {
		s += float64(v)
		ss += float64(v) * float64(v)
	}
	n := float64(len(y.Data))
	if m, v := s/n, ss/n-(s/n)*(s/n); math.Abs(m) > 1e-2 || math.Abs(v-1) > 1e-2 {
		t.Fatalf("normalised mean %g variance %g, want 0 and 1", m, v)
	}
}

func TestNormShapePanics(t *testing.T) {
	x := tensor.New(2, 6, 3)
	for name, f := range map[string]func(){
		"GroupNorm groups": func() { tensor.GroupNorm(x, 4, nil, nil, 1e-5) },
		"GroupNorm weight": func() { tensor.GroupNorm(x, 3, tensor.New(3), nil, 1e-5) },
		"LayerNorm weight": func() { tensor.LayerNorm(x, tensor.New(6), nil, 1e-5) },
		"RMSNorm weight":   func() { tensor.RMSNorm(x, tensor.New(3, 1), 1e-5) },
		"LayerNorm scalar": func() { tensor.LayerNorm(tensor.Scalar(1), nil, nil, 1e-5) },
		"GroupNorm 1-D in": func() { tensor.GroupNorm(tensor.New(6), 3, nil, nil, 1e-5) },
	} {
		if !tensortest.Panics(f) {
			t.Errorf("%s: no panic", name)
		}
	}
}

// TestRandomShapesGrad gradient-checks the shape-sensitive ops on a few
// randomly drawn shapes, beyond the hand-picked ones above.
func TestRandomShapesGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 19))
	dim := func() int { return 1 + r.IntN(4) }
	for trial := 0; trial < 4; trial++ {
		n, c, h, w := dim(), 2*dim(), dim(), dim()
		// Groups of at least 4 values: normalising 2 close values is too
		// curved for finite differences.
		x := tensortest.Rand(r, n, c, h+1, w+1)
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.GroupNorm(in[0], 2, in[1], in[2], 1e-5) },
			1e-3, 1e-2, x, tensortest.Rand(r, c), tensortest.Rand(r, c))
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(in[0], in[1], nil, 1e-6) },
			1e-3, 1e-2, tensortest.Rand(r, n, h, c+2), tensortest.Rand(r, c+2))
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Softmax(in[0]) },
			1e-2, 1e-2, tensortest.Rand(r, n, h+1))
		k := dim()
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1]) },
			1e-2, 1e-3, tensortest.Rand(r, n, 1, h, k), tensortest.Rand(r, c, k, w))
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Linear(in[0], in[1], in[2]) },
			1e-2, 1e-3, tensortest.Rand(r, n, h, k), tensortest.Rand(r, c, k), tensortest.Rand(r, c))
		perm := r.Perm(4)
		tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
			return tensor.Pad2d(tensor.Permute(in[0], perm...), 1, 0, 0, 1, tensor.PadReplicate)
		}, 1e-2, 1e-3, tensortest.Rand(r, n, c, h, w))
	}
}
