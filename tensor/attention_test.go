package tensor_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/internal/parallel"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// naiveAttention materialises softmax(Q K^T / sqrt(dh)) per head in float64
// and returns the output and, for the output gradient g, dQ, dK and dV.
func naiveAttention(q, k, v, g *tensor.Tensor, heads int) (out, dq, dk, dv []float64) {
	n, lq, lk, d := q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2]
	dh := d / heads
	scale := 1 / math.Sqrt(float64(dh))
	out = make([]float64, len(q.Data))
	dq, dk, dv = make([]float64, len(q.Data)), make([]float64, len(k.Data)), make([]float64, len(v.Data))
	qi := func(b, i, h, c int) int { return (b*lq+i)*d + h*dh + c }
	ki := func(b, j, h, c int) int { return (b*lk+j)*d + h*dh + c }
	p := make([]float64, lk)
	dp := make([]float64, lk)
	for b := range n {
		for h := range heads {
			for i := range lq {
				mx := math.Inf(-1)
				for j := range lk {
					var s float64
					for c := range dh {
						s += float64(q.Data[qi(b, i, h, c)]) * float64(k.Data[ki(b, j, h, c)])
					}
					p[j] = s * scale
					mx = math.Max(mx, p[j])
				}
				var sum float64
				for j := range lk {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				var dot float64 // sum_j P_ij dP_ij
				for j := range lk {
					p[j] /= sum
					dp[j] = 0
					for c := range dh {
						out[qi(b, i, h, c)] += p[j] * float64(v.Data[ki(b, j, h, c)])
						if g != nil {
							gv := float64(g.Data[qi(b, i, h, c)])
							dp[j] += gv * float64(v.Data[ki(b, j, h, c)])
							dv[ki(b, j, h, c)] += p[j] * gv
						}
					}
					dot += p[j] * dp[j]
				}
				if g == nil {
					continue
				}
				for j := range lk {
					ds := p[j] * (dp[j] - dot) * scale
					for c := range dh {
						dq[qi(b, i, h, c)] += ds * float64(k.Data[ki(b, j, h, c)])
						dk[ki(b, j, h, c)] += ds * float64(q.Data[qi(b, i, h, c)])
					}
				}
			}
		}
	}
	return out, dq, dk, dv
}

func TestAttentionGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ n, lq, lk, d, heads int }{
		{1, 4, 4, 4, 1},
		{2, 5, 7, 6, 2}, // Lq != Lk, batch 2
		{1, 6, 3, 12, 3},
		{2, 1, 5, 4, 2}, // a single query
		{1, 3, 1, 4, 1}, // a single key: the output is v
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			q := tensortest.Rand(r, c.n, c.lq, c.d)
			k, v := tensortest.Rand(r, c.n, c.lk, c.d), tensortest.Rand(r, c.n, c.lk, c.d)
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
				return tensor.Attention(in[0], in[1], in[2], c.heads)
			}, 1e-2, 2e-3, q, k, v)
		})
	}
}

// TestAttentionBlocked uses sequences longer than one query block and one
// key block, so the online softmax and the block-wise backward both span
// several blocks, and compares with the materialised float64 reference under
// both backward schedules (per head, and per key/query block).
func TestAttentionBlocked(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	const n, lq, lk, d, heads = 1, 150, 1100, 16, 2
	q := tensortest.Rand(r, n, lq, d)
	k, v := tensortest.Rand(r, n, lk, d), tensortest.Rand(r, n, lk, d)
	for i := range q.Data {
		q.Data[i] *= 3 // peaked softmax rows: the running maximum matters
	}
	g := tensortest.Rand(r, n, lq, d)
	want, dq, dk, dv := naiveAttention(q, k, v, g, heads)
	defer parallel.SetThreads(parallel.SetThreads(0))
	for _, threads := range []int{1, 8} { // 1: one unit per head; 8: per block
		parallel.SetThreads(threads)
		for _, x := range []*tensor.Tensor{q, k, v} {
			x.SetRequiresGrad(true).ZeroGrad()
		}
		out := tensor.Attention(q, k, v, heads) // [1, 150, 16]
		if e := maxRelErr(out.Data, want); e > 1e-5 {
			t.Errorf("threads %d: forward max rel err %.3g", threads, e)
		}
		out.BackwardWith(g)
		for name, c := range map[string]struct {
			got  []float32
			want []float64
		}{"dq": {q.Grad.Data, dq}, "dk": {k.Grad.Data, dk}, "dv": {v.Grad.Data, dv}} {
			if e := maxRelErr(c.got, c.want); e > 1e-5 {
				t.Errorf("threads %d: %s max rel err %.3g", threads, name, e)
			}
		}
	}
}

// TestAttentionOnlyValueGrad covers frozen queries and keys: only dV is made.
func TestAttentionOnlyValueGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	q, k := tensortest.Rand(r, 1, 3, 4), tensortest.Rand(r, 1, 5, 4)
	v := tensortest.Rand(r, 1, 5, 4).SetRequiresGrad(true)
	g := tensortest.Rand(r, 1, 3, 4)
	tensor.Attention(q, k, v, 2).BackwardWith(g)
	if q.Grad != nil || k.Grad != nil {
		t.Fatal("gradient for an input that does not require one")
	}
	_, _, _, dv := naiveAttention(q, k, v, g, 2)
	if e := maxRelErr(v.Grad.Data, dv); e > 1e-5 {
		t.Errorf("dv max rel err %.3g", e)
	}
}

func TestAttentionShapePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"heads": func() { tensor.Attention(tensor.New(1, 2, 6), tensor.New(1, 3, 6), tensor.New(1, 3, 6), 4) },
		"kv":    func() { tensor.Attention(tensor.New(1, 2, 6), tensor.New(1, 3, 6), tensor.New(1, 4, 6), 2) },
		"dim":   func() { tensor.Attention(tensor.New(1, 2, 6), tensor.New(1, 3, 4), tensor.New(1, 3, 4), 2) },
		"rank":  func() { tensor.Attention(tensor.New(2, 6), tensor.New(3, 6), tensor.New(3, 6), 2) },
		"empty": func() { tensor.Attention(tensor.New(1, 2, 6), tensor.New(1, 0, 6), tensor.New(1, 0, 6), 2) },
	} {
		if !tensortest.Panics(f) {
			t.Errorf("%s: no panic", name)
		}
	}
}
