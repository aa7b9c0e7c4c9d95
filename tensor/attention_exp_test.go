package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSoftmaxHelpers checks the exponential and maximum used by Attention,
// vector path (where the CPU has one) and pure Go, on lengths that leave
// scalar tails and on arguments past the clamping points.
func TestSoftmaxHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	defer func(v bool) { hasAVX2 = v }(hasAVX2)
	for _, vec := range []bool{false, hasAVX2} {
		hasAVX2 = vec
		for n := 1; n <= 41; n += 4 {
			x := make([]float32, n)
			for i := range x {
				x[i] = 30*r.Float32() - 20
			}
			x[r.IntN(n)] = -200 // underflows
			want := make([]float64, n)
			var wantSum float64
			wantMax := math.Inf(-1)
			in := append([]float32(nil), x...)
			for i, v := range x {
				want[i] = math.Exp(float64(v - 10)) // the float32 difference is the argument
				wantSum += want[i]
				wantMax = math.Max(wantMax, float64(v))
			}
			if m := rowMax(x); float64(m) != wantMax {
				t.Errorf("vector %v n %d: rowMax %g, want %g", vec, n, m, wantMax)
			}
			sum := expShiftSum(x, 10)
			for i, v := range x {
				if e := math.Abs(float64(v)-want[i]) / math.Max(want[i], 1e-30); e > 5e-7 {
					t.Errorf("vector %v n %d: e^(%g-10) = %g, want %g", vec, n, in[i], v, want[i])
				}
			}
			if e := math.Abs(float64(sum)-wantSum) / math.Max(wantSum, 1e-30); e > 1e-6 {
				t.Errorf("vector %v n %d: sum %g, want %g", vec, n, sum, wantSum)
			}
		}
	}
	for _, c := range []struct{ x, want float32 }{{0, 1}, {-100, 0}, {float32(math.Inf(-1)), 0}, {89, float32(math.Inf(1))}} {
		if got := flashExp(c.x); got != c.want {
			t.Errorf("flashExp(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if v := flashExp(float32(math.NaN())); v == v {
		t.Errorf("flashExp(NaN) = %g", v)
	}
}
