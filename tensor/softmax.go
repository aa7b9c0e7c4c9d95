package tensor

import (
	"fmt"
	"math"

	"tsdsr/internal/parallel"
)

// lastDimRows views a as rows of its last dimension: [rows, d].
func lastDimRows(op string, a *Tensor) (rows, d int) {
	if len(a.Shape) == 0 {
		panic(fmt.Sprintf("tensor.%s: scalar input, want at least 1 dim", op))
	}
	d = a.Shape[len(a.Shape)-1]
	if d == 0 {
		return 0, 0
	}
	return len(a.Data) / d, d
}

// Softmax normalises over the last axis: y_i = e^(x_i - max x) / sum_j e^(x_j - max x)
// (subtracting the row maximum keeps e^x finite). Backward:
// dx_i = y_i (g_i - sum_j g_j y_j).
func Softmax(a *Tensor) *Tensor {
	rows, d := lastDimRows("Softmax", a)
	out := New(a.Shape...)
	parallel.For(rows, max(1, elemGrain/max(1, d)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := a.Data[r*d:(r+1)*d], out.Data[r*d:(r+1)*d]
			m := float32(math.Inf(-1))
			for _, v := range x {
				m = max(m, v)
			}
			var s float64
			for i, v := range x {
				e := expf(v - m)
				y[i] = e
				s += float64(e)
			}
			inv := float32(1 / s)
			for i := range y {
				y[i] *= inv
			}
		}
	})
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(a.Data))
		parallel.For(rows, max(1, elemGrain/max(1, d)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				y, gr, dx := out.Data[r*d:(r+1)*d], g.Data[r*d:(r+1)*d], gx[r*d:(r+1)*d]
				var dot float64
				for i, v := range gr {
					dot += float64(v * y[i])
				}
				dt := float32(dot)
				for i, v := range gr {
					dx[i] = y[i] * (v - dt)
				}
			}
		})
		a.accumulateOwned(gx)
	}, a)
}
