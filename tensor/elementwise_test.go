package tensor_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// awayFrom moves every element at least margin away from the given points
// (kinks of ReLU and Clamp), so central differences do not straddle them.
func awayFrom(t *tensor.Tensor, margin float32, points ...float32) *tensor.Tensor {
	for i, v := range t.Data {
		for _, p := range points {
			if d := v - p; d > -margin && d < margin {
				if d >= 0 {
					v = p + margin
				} else {
					v = p - margin
				}
			}
		}
		t.Data[i] = v
	}
	return t
}

type unaryCase struct {
	name string
	op   func(*tensor.Tensor) *tensor.Tensor
	ref  func(float64) float64
	// prep adapts random inputs in [-1, 1) to the op's domain.
	prep func(*tensor.Tensor) *tensor.Tensor
}

func unaryCases() []unaryCase {
	id := func(t *tensor.Tensor) *tensor.Tensor { return t }
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	return []unaryCase{
		{"Scale", func(a *tensor.Tensor) *tensor.Tensor { return tensor.Scale(a, -2.5) }, func(x float64) float64 { return -2.5 * x }, id},
		{"AddScalar", func(a *tensor.Tensor) *tensor.Tensor { return tensor.AddScalar(a, 0.75) }, func(x float64) float64 { return x + 0.75 }, id},
		{"Neg", tensor.Neg, func(x float64) float64 { return -x }, id},
		{"Square", tensor.Square, func(x float64) float64 { return x * x }, id},
		{"Sqrt", tensor.Sqrt, math.Sqrt, func(t *tensor.Tensor) *tensor.Tensor { return tensor.AddScalar(t, 1.5) }},
		{"Exp", tensor.Exp, math.Exp, id},
		{"Clamp", func(a *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(a, -0.5, 0.25) },
			func(x float64) float64 { return math.Min(math.Max(x, -0.5), 0.25) },
			func(t *tensor.Tensor) *tensor.Tensor { return awayFrom(t, 0.05, -0.5, 0.25) }},
		{"ReLU", tensor.ReLU, func(x float64) float64 { return math.Max(x, 0) }, func(t *tensor.Tensor) *tensor.Tensor { return awayFrom(t, 0.05, 0) }},
		{"SiLU", tensor.SiLU, func(x float64) float64 { return x * sig(x) }, id},
		{"GELU", tensor.GELU, func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}, id},
		{"Tanh", tensor.Tanh, math.Tanh, id},
		{"Sigmoid", tensor.Sigmoid, sig, id},
	}
}

func TestUnaryForwardAndGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range unaryCases() {
		t.Run(c.name, func(t *testing.T) {
			// 3x scaled inputs reach the saturating tails of the activations.
			x := c.prep(tensor.Scale(tensortest.Rand(r, 3, 1+r.IntN(5), 7), 3))
			y := c.op(x)
			for i, v := range x.Data {
				if want := c.ref(float64(v)); math.Abs(float64(y.Data[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Fatalf("%s(%g) = %g, want %g", c.name, v, y.Data[i], want)
				}
			}
			g := c.prep(tensortest.Rand(r, 2, 1+r.IntN(4), 5))
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return c.op(in[0]) }, 1e-2, 1e-2, g)
		})
	}
}

// TestUnaryParallelChunks runs tensors larger than one parallel chunk, so the
// chunked kernels must cover every element exactly once.
func TestUnaryParallelChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	x := tensortest.Rand(r, 3, 40001)
	for _, c := range unaryCases() {
		in := c.prep(x.Clone())
		y := c.op(in)
		for i, v := range in.Data {
			if want := c.ref(float64(v)); math.Abs(float64(y.Data[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s elem %d: %g, want %g", c.name, i, y.Data[i], want)
			}
		}
		in.SetRequiresGrad(true)
		tensor.Sum(c.op(in)).Backward()
		if in.Grad == nil || len(in.Grad.Data) != len(in.Data) {
			t.Fatalf("%s: missing gradient", c.name)
		}
	}
}

func TestGELUKnownValues(t *testing.T) {
	// PyTorch gelu(approximate="tanh") values.
	x := tensor.FromData([]float32{-3, -1, -0.5, 0.5, 1, 3}, 6)
	want := []float64{-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.34571400982514394, 0.8411919906082768, 2.996362607918227}
	for i, v := range tensor.GELU(x).Data {
		if math.Abs(float64(v)-want[i]) > 1e-6 {
			t.Fatalf("GELU(%g) = %g, want %g", x.Data[i], v, want[i])
		}
	}
}

func TestSigmoidExtremes(t *testing.T) {
	y := tensor.Sigmoid(tensor.FromData([]float32{-200, 200, 0}, 3))
	if y.Data[0] != 0 || y.Data[1] != 1 || y.Data[2] != 0.5 {
		t.Fatalf("sigmoid(-200, 200, 0) = %v", y.Data)
	}
	s := tensor.SiLU(tensor.FromData([]float32{-200}, 1))
	if s.Data[0] != 0 || math.IsNaN(float64(s.Data[0])) {
		t.Fatalf("silu(-200) = %v", s.Data)
	}
}

func TestClampGradZeroOutside(t *testing.T) {
	x := tensor.FromData([]float32{-2, 0, 2}, 3).SetRequiresGrad(true)
	tensor.Sum(tensor.Clamp(x, -1, 1)).Backward()
	if g := x.Grad.Data; g[0] != 0 || g[1] != 1 || g[2] != 0 {
		t.Fatalf("clamp grad %v, want [0 1 0]", g)
	}
}

// TestExpTanhAccuracy sweeps the float32 Exp and Tanh kernels over their
// whole useful range against float64 math, in relative error.
func TestExpTanhAccuracy(t *testing.T) {
	var xs []float32
	for v := float32(-87); v <= 88.5; v += 0.0137 {
		xs = append(xs, v)
	}
	for _, v := range []float32{0, 1e-30, -1e-30, 1e-8, -3e-6, 0.624, 0.626, -0.625} {
		xs = append(xs, v)
	}
	x := tensor.FromData(xs, len(xs))
	e, th := tensor.Exp(x), tensor.Tanh(x)
	for i, v := range xs {
		if want := math.Exp(float64(v)); math.Abs(float64(e.Data[i])-want) > 3e-7*want {
			t.Fatalf("Exp(%g) = %g, want %g", v, e.Data[i], want)
		}
		if want := math.Tanh(float64(v)); math.Abs(float64(th.Data[i])-want) > 3e-7*math.Abs(want) {
			t.Fatalf("Tanh(%g) = %g, want %g", v, th.Data[i], want)
		}
	}
	inf := float32(math.Inf(1))
	special := tensor.Exp(tensor.FromData([]float32{-inf, inf, -100, 100, float32(math.NaN())}, 5)).Data
	if special[0] != 0 || special[1] != inf || special[2] != 0 || special[3] != inf || special[4] == special[4] {
		t.Fatalf("Exp(-inf, inf, -100, 100, NaN) = %v", special)
	}
	if th := tensor.Tanh(tensor.FromData([]float32{-inf, inf, 50}, 3)).Data; th[0] != -1 || th[1] != 1 || th[2] != 1 {
		t.Fatalf("Tanh(-inf, inf, 50) = %v", th)
	}
}
