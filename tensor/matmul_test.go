package tensor_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// refMatMul multiplies in float64 with explicit batch broadcasting.
func refMatMul(a, b *tensor.Tensor) []float64 {
	m, k := a.Shape[len(a.Shape)-2], a.Shape[len(a.Shape)-1]
	n := b.Shape[len(b.Shape)-1]
	aB, bB := a.Shape[:len(a.Shape)-2], b.Shape[:len(b.Shape)-2]
	batch, _ := tensor.BroadcastShape(aB, bB)
	nb := tensor.Numel(batch)
	out := make([]float64, nb*m*n)
	// flat batch index of an operand for output batch i
	index := func(shape []int, i int) int {
		coord := make([]int, len(batch))
		for d := len(batch) - 1; d >= 0; d-- {
			coord[d] = i % batch[d]
			i /= batch[d]
		}
		off := 0
		for d, s := range shape {
			c := coord[len(batch)-len(shape)+d]
			if s == 1 {
				c = 0
			}
			off = off*s + c
		}
		return off
	}
	for bi := 0; bi < nb; bi++ {
		pa, pb := index(aB, bi)*m*k, index(bB, bi)*k*n
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					s += float64(a.Data[pa+i*k+p]) * float64(b.Data[pb+p*n+j])
				}
				out[bi*m*n+i*n+j] = s
			}
		}
	}
	return out
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	cases := []struct{ a, b, out []int }{
		{[]int{3, 4}, []int{4, 5}, []int{3, 5}},
		{[]int{2, 3, 4, 5}, []int{5, 2}, []int{2, 3, 4, 2}},       // folded into one GEMM
		{[]int{4, 5}, []int{3, 5, 2}, []int{3, 4, 2}},             // a broadcast over b's batch
		{[]int{2, 1, 3, 4}, []int{3, 4, 2}, []int{2, 3, 3, 2}},    // both broadcast
		{[]int{1, 3, 4}, []int{2, 4, 6}, []int{2, 3, 6}},          // unit batch of a
		{[]int{2, 4, 3, 8}, []int{2, 4, 8, 3}, []int{2, 4, 3, 3}}, // attention-like
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.a, "x", c.b), func(t *testing.T) {
			a, b := tensortest.Rand(r, c.a...), tensortest.Rand(r, c.b...)
			y := tensor.MatMul(a, b)
			if !slices.Equal(y.Shape, c.out) {
				t.Fatalf("shape %v, want %v", y.Shape, c.out)
			}
			checkClose(t, "MatMul", y.Data, refMatMul(a, b), 1e-5)
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1]) }, 1e-2, 1e-3, a, b)
		})
	}
	for _, bad := range [][2][]int{{{3, 4}, {5, 2}}, {{4}, {4, 2}}, {{2, 3, 4}, {3, 4, 2}}} {
		if !tensortest.Panics(func() { tensor.MatMul(tensor.New(bad[0]...), tensor.New(bad[1]...)) }) {
			t.Errorf("MatMul(%v, %v) did not panic", bad[0], bad[1])
		}
	}
}

func TestLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	x, w, b := tensortest.Rand(r, 2, 3, 5), tensortest.Rand(r, 4, 5), tensortest.Rand(r, 4)
	y := tensor.Linear(x, w, b)
	if !slices.Equal(y.Shape, []int{2, 3, 4}) {
		t.Fatalf("shape %v", y.Shape)
	}
	want := refMatMul(x, tensor.Transpose(w, 0, 1))
	for i := range want {
		want[i] += float64(b.Data[i%4])
	}
	checkClose(t, "Linear", y.Data, want, 1e-5)
	checkClose(t, "Linear no bias", tensor.Linear(x, w, nil).Data, refMatMul(x, tensor.Transpose(w, 0, 1)), 1e-5)
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Linear(in[0], in[1], in[2]) }, 1e-2, 1e-3, x, w, b)
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Linear(in[0], in[1], nil) }, 1e-2, 1e-3,
		tensortest.Rand(r, 7), tensortest.Rand(r, 3, 7))
	for name, f := range map[string]func(){
		"in features": func() { tensor.Linear(tensor.New(2, 5), tensor.New(4, 6), nil) },
		"bias":        func() { tensor.Linear(tensor.New(2, 5), tensor.New(4, 5), tensor.New(5)) },
		"weight rank": func() { tensor.Linear(tensor.New(2, 5), tensor.New(5), nil) },
	} {
		if !tensortest.Panics(f) {
			t.Errorf("%s: no panic", name)
		}
	}
}

// TestLinearLarge exercises a shape large enough for the bias fill and the
// bias gradient to run in parallel chunks.
func TestLinearLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	x, w, b := tensortest.Rand(r, 600, 48), tensortest.Rand(r, 40, 48), tensortest.Rand(r, 40)
	b.SetRequiresGrad(true)
	y := tensor.Linear(x, w, b)
	want := refMatMul(x, tensor.Transpose(w, 0, 1))
	for i := range want {
		want[i] += float64(b.Data[i%40])
	}
	checkClose(t, "Linear large", y.Data, want, 1e-4)
	tensor.Sum(y).Backward()
	for j, g := range b.Grad.Data {
		if g != 600 {
			t.Fatalf("bias grad %d = %g, want 600", j, g)
		}
	}
}
