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
