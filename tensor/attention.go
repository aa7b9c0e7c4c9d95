package tensor

import (
	"fmt"
	"math"

	"tsdsr/internal/gemm"
	"tsdsr/internal/parallel"
)

// Block sizes of the flash attention kernels: a unit of work scores
// attnBlockQ queries against attnBlockK keys at a time, so scratch memory is
// O(attnBlockQ*attnBlockK) per worker whatever the sequence length.
const (
	attnBlockQ = 128
	attnBlockK = 512
)

// Attention is multi-head scaled dot-product attention,
// softmax(Q K^T / sqrt(dh)) V per head, without masking.
// q is [N, Lq, D], k and v are [N, Lk, D] with D = heads*dh; head h uses the
// features [h*dh, (h+1)*dh) of every token, as PyTorch's
// view(N, L, heads, dh) does. The result is [N, Lq, D], heads concatenated.
//
// The forward pass is FlashAttention-style: blocks of queries meet blocks of
// keys with an online softmax, and only the per-row logsumexp is kept, so
// memory grows like the inputs (plus a per-head transposed copy of K, and of
// V in the backward pass) instead of like Lq*Lk. The backward pass
// recomputes the probabilities block by block from that logsumexp
// (FlashAttention-2).
func Attention(q, k, v *Tensor, heads int) *Tensor {
	if q.Dim() != 3 || k.Dim() != 3 || !SameShape(k.Shape, v.Shape) || k.Shape[0] != q.Shape[0] || k.Shape[2] != q.Shape[2] {
		panic(fmt.Sprintf("tensor.Attention: q %v, k %v, v %v: want q [N, Lq, D], k and v [N, Lk, D]", q.Shape, k.Shape, v.Shape))
	}
	if k.Shape[1] == 0 {
		panic(fmt.Sprintf("tensor.Attention: no keys (k %v): the softmax is undefined", k.Shape))
	}
	if heads < 1 || q.Shape[2]%heads != 0 {
		panic(fmt.Sprintf("tensor.Attention: %d heads do not divide D = %d", heads, q.Shape[2]))
	}
	a := attnGeom{n: q.Shape[0], lq: q.Shape[1], lk: k.Shape[1], d: q.Shape[2], heads: heads}
	a.dh = a.d / heads
	a.scale = float32(1 / math.Sqrt(float64(a.dh)))
	out := New(a.n, a.lq, a.d)             // [N, Lq, D]
	lse := make([]float32, a.n*heads*a.lq) // [N, heads, Lq]
	a.forward(q.Data, k.Data, v.Data, out.Data, lse)
	return record(out, func(g *Tensor) {
		var dq, dk, dv []float32
		if q.requiresGrad {
			dq = make([]float32, len(q.Data)) // [N, Lq, D]
		}
		if k.requiresGrad {
			dk = make([]float32, len(k.Data)) // [N, Lk, D]
		}
		if v.requiresGrad {
			dv = make([]float32, len(v.Data)) // [N, Lk, D]
		}
		a.backward(q.Data, k.Data, v.Data, out.Data, lse, g.Data, dq, dk, dv)
		if dq != nil {
			q.accumulateOwned(dq)
		}
		if dk != nil {
			k.accumulateOwned(dk)
		}
		if dv != nil {
			v.accumulateOwned(dv)
		}
	}, q, k, v)
}

// attnGeom holds the sizes of one attention call.
type attnGeom struct {
	n, lq, lk, d, heads, dh int
	scale                   float32
}

func attnBlocks(a, b int) int { return (a + b - 1) / b }

// forward computes out and the logsumexp of every score row, in parallel
// over (batch, head, query block).
func (a *attnGeom) forward(q, k, v, out, lse []float32) {
	kt := a.headsT(k) // [N, heads, dh, Lk]
	qBlocks := attnBlocks(a.lq, attnBlockQ)
	parallel.For(a.n*a.heads*qBlocks, 1, func(lo, hi int) {
		s := make([]float32, attnBlockQ*attnBlockK) // [bq, bk] scores, then probabilities
		o := make([]float32, attnBlockQ*a.dh)       // [bq, dh] unnormalised output
		m := make([]float32, attnBlockQ)            // running row maxima
		l := make([]float32, attnBlockQ)            // running row sums
		for u := lo; u < hi; u++ {
			n, h, q0 := u/(a.heads*qBlocks), u/qBlocks%a.heads, u%qBlocks*attnBlockQ
			nq := min(attnBlockQ, a.lq-q0)
			qoff := (n*a.lq+q0)*a.d + h*a.dh
			for i := range nq {
				m[i], l[i] = float32(math.Inf(-1)), 0
			}
			clear(o)
			for k0 := 0; k0 < a.lk; k0 += attnBlockK {
				nk := min(attnBlockK, a.lk-k0)
				koff := (n*a.lk+k0)*a.d + h*a.dh
				gemm.Sgemm(false, false, nq, nk, a.dh, a.scale, q[qoff:], a.d, kt[(n*a.heads+h)*a.dh*a.lk+k0:], a.lk, 0, s, nk)
				for i := range nq {
					row := s[i*nk : (i+1)*nk]
					mx := max(m[i], rowMax(row))
					sum := expShiftSum(row, mx)
					if c := flashExp(m[i] - mx); c != 1 {
						for j := range o[i*a.dh : (i+1)*a.dh] {
							o[i*a.dh+j] *= c
						}
						l[i] *= c
					}
					l[i] += sum
					m[i] = mx
				}
				gemm.Sgemm(false, false, nq, a.dh, nk, 1, s, nk, v[koff:], a.d, 1, o, a.dh)
			}
			for i := range nq {
				inv := 1 / l[i]
				dst := out[qoff+i*a.d : qoff+i*a.d+a.dh]
				for j, x := range o[i*a.dh : (i+1)*a.dh] {
					dst[j] = x * inv
				}
				lse[(n*a.heads+h)*a.lq+q0+i] = m[i] + float32(math.Log(float64(l[i])))
			}
		}
	})
}

// backward fills the requested gradients (nil slices are skipped) from the
// output gradient g. With P = exp(S - lse) recomputed per block and
// delta_i = sum_j dO_ij O_ij: dV = P^T dO, dS = P * (dO V^T - delta),
// dQ = scale dS K, dK = scale dS^T Q.
//
// When there are enough (batch, head) pairs to keep every worker busy, each
// pair is one unit that owns its rows of dQ, dK and dV. Otherwise dK and dV
// are computed per key block and dQ per query block, in two passes that
// recompute the scores twice but never write the same row from two workers.
func (a *attnGeom) backward(q, k, v, out, lse, g, dq, dk, dv []float32) {
	delta := make([]float32, a.n*a.heads*a.lq) // [N, heads, Lq]
	parallel.For(a.n*a.lq, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			n, i := r/a.lq, r%a.lq
			for h := range a.heads {
				var s float32
				for j := h * a.dh; j < (h+1)*a.dh; j++ {
					s += g[r*a.d+j] * out[r*a.d+j]
				}
				delta[(n*a.heads+h)*a.lq+i] = s
			}
		}
	})
	b := attnBwd{attnGeom: a, q: q, k: k, kt: a.headsT(k), vt: a.headsT(v), g: g, lse: lse, delta: delta}
	pairs := a.n * a.heads
	if pairs >= 2*parallel.Threads() {
		parallel.For(pairs, 1, func(lo, hi int) {
			sc := b.scratch()
			for u := lo; u < hi; u++ {
				b.block(sc, u/a.heads, u%a.heads, 0, a.lq, 0, a.lk, dq, dk, dv)
			}
		})
		return
	}
	if dk != nil || dv != nil {
		kBlocks := attnBlocks(a.lk, attnBlockK)
		parallel.For(pairs*kBlocks, 1, func(lo, hi int) {
			sc := b.scratch()
			for u := lo; u < hi; u++ {
				k0 := u % kBlocks * attnBlockK
				b.block(sc, u/kBlocks/a.heads, u/kBlocks%a.heads, 0, a.lq, k0, min(a.lk, k0+attnBlockK), nil, dk, dv)
			}
		})
	}
	if dq != nil {
		qBlocks := attnBlocks(a.lq, attnBlockQ)
		parallel.For(pairs*qBlocks, 1, func(lo, hi int) {
			sc := b.scratch()
			for u := lo; u < hi; u++ {
				q0 := u % qBlocks * attnBlockQ
				b.block(sc, u/qBlocks/a.heads, u/qBlocks%a.heads, q0, min(a.lq, q0+attnBlockQ), 0, a.lk, dq, nil, nil)
			}
		})
	}
}

// headsT returns x [N, L, D] (L = Lk) rearranged as [N, heads, dh, L]: with
// each head's keys as columns, the score products S = Q K^T read their
// right-hand side in place instead of transposing a key block for every
// query block.
func (a *attnGeom) headsT(x []float32) []float32 {
	t := make([]float32, len(x)) // [N, heads, dh, Lk]
	parallel.For(a.n*a.heads, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			n, h := u/a.heads, u%a.heads
			dst := t[u*a.dh*a.lk : (u+1)*a.dh*a.lk]
			for j := range a.lk {
				src := x[(n*a.lk+j)*a.d+h*a.dh : (n*a.lk+j)*a.d+(h+1)*a.dh]
				for c, v := range src {
					dst[c*a.lk+j] = v
				}
			}
		}
	})
	return t
}

// attnBwd is the read-only state shared by the backward workers.
type attnBwd struct {
	*attnGeom
	q, k, g, lse, delta []float32
	kt, vt              []float32 // [N, heads, dh, Lk]: K and V per head, transposed
}

func (b *attnBwd) scratch() [2][]float32 {
	return [2][]float32{
		make([]float32, attnBlockQ*attnBlockK), // [bq, bk] probabilities P
		make([]float32, attnBlockQ*attnBlockK), // [bq, bk] dP, then dS
	}
}

// block adds the gradient contributions of queries [q0, q1) and keys
// [k0, k1) of head h of batch element n to the non-nil dq, dk, dv.
func (b *attnBwd) block(sc [2][]float32, n, h, q0, q1, k0, k1 int, dq, dk, dv []float32) {
	p, ds := sc[0], sc[1]
	d, dh := b.d, b.dh
	for qs := q0; qs < q1; qs += attnBlockQ {
		nq := min(attnBlockQ, q1-qs)
		qoff := (n*b.lq+qs)*d + h*dh
		rows := (n*b.heads+h)*b.lq + qs
		for ks := k0; ks < k1; ks += attnBlockK {
			nk := min(attnBlockK, k1-ks)
			koff := (n*b.lk+ks)*d + h*dh
			ktoff := (n*b.heads+h)*dh*b.lk + ks
			gemm.Sgemm(false, false, nq, nk, dh, b.scale, b.q[qoff:], d, b.kt[ktoff:], b.lk, 0, p, nk)
			for i := range nq {
				expShiftSum(p[i*nk:(i+1)*nk], b.lse[rows+i])
			}
			if dv != nil {
				gemm.Sgemm(true, false, nk, dh, nq, 1, p, nk, b.g[qoff:], d, 1, dv[koff:], d)
			}
			if dq == nil && dk == nil {
				continue
			}
			gemm.Sgemm(false, false, nq, nk, dh, 1, b.g[qoff:], d, b.vt[ktoff:], b.lk, 0, ds, nk)
			for i := range nq {
				di := b.delta[rows+i]
				pr, dr := p[i*nk:(i+1)*nk], ds[i*nk:(i+1)*nk]
				for j, x := range pr {
					dr[j] = x * (dr[j] - di)
				}
			}
			if dk != nil {
				gemm.Sgemm(true, false, nk, dh, nq, b.scale, ds, nk, b.q[qoff:], d, 1, dk[koff:], d)
			}
			if dq != nil {
				gemm.Sgemm(false, false, nq, dh, nk, b.scale, ds, nk, b.k[koff:], d, 1, dq[qoff:], d)
			}
		}
	}
}

// rowMax returns the maximum of a non-empty x.
func rowMax(x []float32) float32 {
	done, m := maxVec(x)
	if done == 0 {
		m = x[0]
	}
	for _, v := range x[done:] {
		m = max(m, v)
	}
	return m
}

// expShiftSum sets x[i] = e^(x[i]-shift) and returns the sum of the new x:
// the exponentials of a softmax row, whose arguments are <= 0.
func expShiftSum(x []float32, shift float32) float32 {
	done, sum := expShiftSumVec(x, shift)
	for i, v := range x[done:] {
		e := flashExp(v - shift)
		x[done+i] = e
		sum += e
	}
	return sum
}

// flashExp is e^x in float32 to about 2 ulp, several times faster than
// math.Exp: attention spends Lq*Lk exponentials per head, as many as it
// spends multiply-adds per feature. Results below 2^-126 flush to 0.
func flashExp(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375 // ln 2 split so that k*ln2hi is exact
		ln2lo = -2.12194440e-4
		magic = 12582912 // 1.5*2^23: adding it rounds to an integer in the low mantissa bits
	)
	if !(x >= -87.33) {
		if x != x {
			return x // NaN
		}
		return 0
	}
	if x > 88 {
		return float32(math.Inf(1))
	}
	z := x*log2e + magic
	kf := z - magic              // round(x / ln 2)
	r := x - kf*ln2hi - kf*ln2lo // |r| <= ln2/2, e^x = 2^k e^r
	p := float32(1.0 / 720)
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	k := int32(math.Float32bits(z) - math.Float32bits(magic))
	return p * math.Float32frombits(uint32(k+127)<<23)
}
