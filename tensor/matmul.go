package tensor

import (
	"fmt"
	"slices"

	"tsdsr/internal/gemm"
	"tsdsr/internal/parallel"
)

// MatMul multiplies the last two dimensions, [..., m, k] x [..., k, n] ->
// [..., m, n], broadcasting the leading (batch) dimensions as torch.matmul
// does for inputs of at least 2 dims. Each product is one gemm.Sgemm call;
// when b has no batch dimensions, a's batches fold into the rows of a single
// large GEMM. Backward uses transposed GEMMs (nothing is materialised):
//
//	dA = g B^T,  dB = A^T g  (summed over broadcast batches)
func MatMul(a, b *Tensor) *Tensor {
	if len(a.Shape) < 2 || len(b.Shape) < 2 || a.Shape[len(a.Shape)-1] != b.Shape[len(b.Shape)-2] {
		panic(fmt.Sprintf("tensor.MatMul: shapes %v and %v do not multiply", a.Shape, b.Shape))
	}
	m, k := a.Shape[len(a.Shape)-2], a.Shape[len(a.Shape)-1]
	n := b.Shape[len(b.Shape)-1]
	aBatch, bBatch := a.Shape[:len(a.Shape)-2], b.Shape[:len(b.Shape)-2]
	batch, err := BroadcastShape(aBatch, bBatch)
	if err != nil {
		panic(fmt.Sprintf("tensor.MatMul: batch dims of %v and %v do not broadcast", a.Shape, b.Shape))
	}
	out := New(append(slices.Clone(batch), m, n)...)
	nb := Numel(batch)
	mk, kn, mn := m*k, k*n, m*n
	// fold: b is shared by every batch and a is not broadcast, so the batches
	// stack into one (nb*m) x k matrix.
	fold := Numel(bBatch) == 1 && SameShape(aBatch, batch)
	var ia, ib []int32
	if !fold {
		ia, ib = broadcastIndex(aBatch, batch), broadcastIndex(bBatch, batch)
	}
	if fold {
		gemm.Sgemm(false, false, nb*m, n, k, 1, a.Data, k, b.Data, n, 0, out.Data, n)
	} else {
		for i := 0; i < nb; i++ {
			pa, pb := int(at32(ia, i)), int(at32(ib, i))
			gemm.Sgemm(false, false, m, n, k, 1, a.Data[pa*mk:], k, b.Data[pb*kn:], n, 0, out.Data[i*mn:], n)
		}
	}
	return record(out, func(g *Tensor) {
		if a.requiresGrad {
			ga := make([]float32, len(a.Data))
			if fold {
				gemm.Sgemm(false, true, nb*m, k, n, 1, g.Data, n, b.Data, n, 0, ga, k)
			} else {
				for i := 0; i < nb; i++ {
					pa, pb := int(at32(ia, i)), int(at32(ib, i))
					gemm.Sgemm(false, true, m, k, n, 1, g.Data[i*mn:], n, b.Data[pb*kn:], n, 1, ga[pa*mk:], k)
				}
			}
			a.accumulateOwned(ga)
		}
		if b.requiresGrad {
			gb := make([]float32, len(b.Data))
			if fold {
				gemm.Sgemm(true, false, k, n, nb*m, 1, a.Data, k, g.Data, n, 0, gb, n)
			} else {
				for i := 0; i < nb; i++ {
					pa, pb := int(at32(ia, i)), int(at32(ib, i))
					gemm.Sgemm(true, false, k, n, m, 1, a.Data[pa*mk:], k, g.Data[i*mn:], n, 1, gb[pb*kn:], n)
				}
			}
			b.accumulateOwned(gb)
		}
	}, a, b)
}

// at32 is the flat batch index i maps to (idx nil: i itself).
func at32(idx []int32, i int) int32 {
	if idx == nil {
		return int32(i)
	}
	return idx[i]
}

// Linear applies a fully connected layer with PyTorch's weight layout:
// x [..., in], w [out, in], b [out] or nil -> y [..., out], y = x W^T + b,
// as one GEMM over all leading dims (M = rows of x). Backward:
//
//	dX = g W,  dW = g^T X,  db = sum_rows g
func Linear(x, w, b *Tensor) *Tensor {
	if len(x.Shape) < 1 || len(w.Shape) != 2 || x.Shape[len(x.Shape)-1] != w.Shape[1] {
		panic(fmt.Sprintf("tensor.Linear: input %v and weight %v (want [..., in] and [out, in])", x.Shape, w.Shape))
	}
	in, o := w.Shape[1], w.Shape[0]
	checkVec("Linear", "bias", b, o, x)
	rows := Numel(x.Shape[:len(x.Shape)-1])
	out := New(append(slices.Clone(x.Shape[:len(x.Shape)-1]), o)...)
	if w.bf16 != nil && x.requiresGrad && GradEnabled() {
		panic("tensor.Linear: no gradient through a bfloat16-compacted weight")
	}
	beta := float32(0)
	if b != nil {
		// Start from the bias rows and let the GEMM add x W^T (beta = 1).
		parallel.For(rows, max(1, elemGrain/max(1, o)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				copy(out.Data[r*o:(r+1)*o], b.Data)
			}
		})
		beta = 1
	}
	if w.bf16 != nil {
		gemm.SgemmBF16(false, true, rows, o, in, 1, x.Data, in, w.bf16, in, beta, out.Data, o)
		return out
	}
	gemm.Sgemm(false, true, rows, o, in, 1, x.Data, in, w.Data, in, beta, out.Data, o)
	return record(out, func(g *Tensor) {
		if x.requiresGrad {
			gx := make([]float32, len(x.Data))
			gemm.Sgemm(false, false, rows, in, o, 1, g.Data, o, w.Data, in, 0, gx, in)
			x.accumulateOwned(gx)
		}
		if w.requiresGrad {
			gw := make([]float32, len(w.Data))
			gemm.Sgemm(true, false, o, in, rows, 1, g.Data, o, x.Data, in, 0, gw, in)
			w.accumulateOwned(gw)
		}
		if b != nil && b.requiresGrad {
			b.accumulateOwned(colSum(g.Data, rows, o))
		}
	}, x, w, b)
}

// colSum sums a row-major [rows, cols] matrix over its rows, with float64
// partial sums per parallel chunk.
func colSum(d []float32, rows, cols int) []float32 {
	acc := make([]float64, cols)
	parallel.Reduce(rows, max(1, elemGrain/max(1, cols)), func(lo, hi int) []float64 {
		p := make([]float64, cols)
		for r := lo; r < hi; r++ {
			for j, v := range d[r*cols : (r+1)*cols] {
				p[j] += float64(v)
			}
		}
		return p
	}, func(p []float64) {
		for j, v := range p {
			acc[j] += v
		}
	})
	return toF32(acc)
}
