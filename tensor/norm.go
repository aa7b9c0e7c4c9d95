package tensor

import (
	"fmt"
	"math"

	"tsdsr/internal/parallel"
)

// checkVec panics unless v is nil or a vector of length n.
func checkVec(op, name string, v *Tensor, n int, x *Tensor) {
	if v != nil && (len(v.Shape) != 1 || v.Shape[0] != n) {
		panic(fmt.Sprintf("tensor.%s: %s has shape %v, want [%d] for input %v", op, name, v.Shape, n, x.Shape))
	}
}

// LayerNorm normalises x over its last dimension d and applies an optional
// per-feature affine map (weight, bias of shape [d]; either may be nil, as in
// SD3's adaLN which uses no affine and eps 1e-6):
//
//	y = (x - mean) / sqrt(var + eps) * weight + bias
//
// with the biased variance. Statistics accumulate in float64.
func LayerNorm(x, weight, bias *Tensor, eps float32) *Tensor {
	return lastDimNorm("LayerNorm", x, weight, bias, eps, true)
}

// RMSNorm scales x by the inverse root mean square over its last dimension,
// then by an optional weight of shape [d]:
//
//	y = x / sqrt(mean(x^2) + eps) * weight
func RMSNorm(x, weight *Tensor, eps float32) *Tensor {
	return lastDimNorm("RMSNorm", x, weight, nil, eps, false)
}

// lastDimNorm implements LayerNorm (center) and RMSNorm (!center). With
// xhat = (x - mean) * rstd and gh = g * weight, the input gradient per row is
//
//	dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
//
// (RMSNorm drops the mean(gh) term), dweight = sum_rows g*xhat and
// dbias = sum_rows g.
func lastDimNorm(op string, x, weight, bias *Tensor, eps float32, center bool) *Tensor {
	rows, d := lastDimRows(op, x)
	checkVec(op, "weight", weight, d, x)
	checkVec(op, "bias", bias, d, x)
	out := New(x.Shape...)
	mean := make([]float32, rows)
	rstd := make([]float32, rows)
	grain := max(1, elemGrain/max(1, d))
	parallel.For(rows, grain, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x.Data[r*d:(r+1)*d], out.Data[r*d:(r+1)*d]
			mf, rf := meanRstd(xr, eps, center)
			mean[r], rstd[r] = mf, rf
			for i, v := range xr {
				yr[i] = (v - mf) * rf
			}
			if weight != nil {
				for i, w := range weight.Data {
					yr[i] *= w
				}
			}
			if bias != nil {
				for i, b := range bias.Data {
					yr[i] += b
				}
			}
		}
	})
	return record(out, func(g *Tensor) {
		gx, dw, db := normGradBuffers(x, weight, bias, d)
		needW, needB := dw != nil, db != nil
		type partial struct{ w, b []float64 }
		parallel.Reduce(rows, grain, func(lo, hi int) partial {
			gh := make([]float32, d)
			var pw, pb []float64
			if needW {
				pw = make([]float64, d)
			}
			if needB {
				pb = make([]float64, d)
			}
			for r := lo; r < hi; r++ {
				xr, gr := x.Data[r*d:(r+1)*d], g.Data[r*d:(r+1)*d]
				mf, rf := mean[r], rstd[r]
				if needW {
					for i, v := range gr {
						pw[i] += float64(v * (xr[i] - mf) * rf)
					}
				}
				if needB {
					for i, v := range gr {
						pb[i] += float64(v)
					}
				}
				if gx == nil {
					continue
				}
				copy(gh, gr)
				if weight != nil {
					for i, w := range weight.Data {
						gh[i] *= w
					}
				}
				var m1, m2 float64
				for i, v := range gh {
					m1 += float64(v)
					m2 += float64(v * (xr[i] - mf) * rf)
				}
				m1 /= float64(d)
				m2 /= float64(d)
				if !center {
					m1 = 0
				}
				a, b := float32(m1), float32(m2)
				dx := gx[r*d : (r+1)*d]
				for i, v := range gh {
					dx[i] = rf * (v - a - (xr[i]-mf)*rf*b)
				}
			}
			return partial{pw, pb}
		}, func(p partial) {
			for i, v := range p.w {
				dw[i] += v
			}
			for i, v := range p.b {
				db[i] += v
			}
		})
		if gx != nil {
			x.accumulateOwned(gx)
		}
		if needW {
			weight.accumulateOwned(toF32(dw))
		}
		if needB {
			bias.accumulateOwned(toF32(db))
		}
	}, x, weight, bias)
}

// meanRstd returns the mean of v (0 unless center: RMSNorm's statistics)
// and 1/sqrt(mean((v - mean)^2) + eps), accumulated in float64.
func meanRstd(v []float32, eps float32, center bool) (mean, rstd float32) {
	var m float64
	if center {
		for _, x := range v {
			m += float64(x)
		}
		m /= float64(len(v))
	}
	var ss float64
	for _, x := range v {
		d := float64(x) - m
		ss += d * d
	}
	return float32(m), float32(1 / math.Sqrt(ss/float64(len(v))+float64(eps)))
}

// normGradBuffers allocates what a norm's backward fills: the input
// gradient when x needs one, and n float64 sums each for the weight and
// the bias when they need one (nil otherwise).
func normGradBuffers(x, weight, bias *Tensor, n int) (gx []float32, dw, db []float64) {
	if x.requiresGrad {
		gx = make([]float32, len(x.Data))
	}
	if weight != nil && weight.requiresGrad {
		dw = make([]float64, n)
	}
	if bias != nil && bias.requiresGrad {
		db = make([]float64, n)
	}
	return gx, dw, db
}

func toF32(v []float64) []float32 {
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = float32(x)
	}
	return r
}

// GroupNorm normalises x of shape [N, C, ...] (NCHW, or [N, C]) over groups
// of C/groups consecutive channels and all spatial positions, then applies an
// optional per-channel affine map (weight, bias of shape [C], may be nil):
//
//	y = (x - mean_g) / sqrt(var_g + eps) * weight_c + bias_c
//
// Statistics accumulate in float64 (groups of a 512x512 feature map hold
// millions of values). Backward per group, with xhat and gh = g*weight_c:
// dx = rstd * (gh - mean(gh) - xhat * mean(gh*xhat)).
func GroupNorm(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor {
	if len(x.Shape) < 2 || groups <= 0 || x.Shape[1]%groups != 0 {
		panic(fmt.Sprintf("tensor.GroupNorm: %d groups for input %v (want [N, C, ...] with C divisible by groups)", groups, x.Shape))
	}
	n, c := x.Shape[0], x.Shape[1]
	checkVec("GroupNorm", "weight", weight, c, x)
	checkVec("GroupNorm", "bias", bias, c, x)
	cpg, hw := c/groups, Numel(x.Shape[2:])
	gsize := cpg * hw
	tasks := n * groups
	out := New(x.Shape...)
	mean := make([]float32, tasks)
	rstd := make([]float32, tasks)
	if gsize == 0 {
		return out
	}
	grain := max(1, elemGrain/gsize)
	parallel.For(tasks, grain, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xg, yg := x.Data[t*gsize:(t+1)*gsize], out.Data[t*gsize:(t+1)*gsize]
			mf, rf := meanRstd(xg, eps, true)
			mean[t], rstd[t] = mf, rf
			c0 := (t % groups) * cpg
			for k := 0; k < cpg; k++ {
				sc, sh := rf, -mf*rf
				if weight != nil {
					sc *= weight.Data[c0+k]
					sh *= weight.Data[c0+k]
				}
				if bias != nil {
					sh += bias.Data[c0+k]
				}
				xc, yc := xg[k*hw:(k+1)*hw], yg[k*hw:(k+1)*hw]
				for i, v := range xc {
					yc[i] = v*sc + sh
				}
			}
		}
	})
	return record(out, func(g *Tensor) {
		// Per-(sample, channel) partial sums, reduced over samples below.
		gx, pw, pb := normGradBuffers(x, weight, bias, n*c)
		needW, needB := pw != nil, pb != nil
		parallel.For(tasks, grain, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				xg, gg := x.Data[t*gsize:(t+1)*gsize], g.Data[t*gsize:(t+1)*gsize]
				mf, rf := mean[t], rstd[t]
				c0 := (t % groups) * cpg
				nc0 := (t/groups)*c + c0
				var m1, m2 float64
				for k := 0; k < cpg; k++ {
					w := float32(1)
					if weight != nil {
						w = weight.Data[c0+k]
					}
					xc, gc := xg[k*hw:(k+1)*hw], gg[k*hw:(k+1)*hw]
					var sg, sgx float64
					for i, v := range gc {
						sg += float64(v)
						sgx += float64(v * (xc[i] - mf))
					}
					sgx *= float64(rf)
					if needW {
						pw[nc0+k] = sgx
					}
					if needB {
						pb[nc0+k] = sg
					}
					m1 += float64(w) * sg
					m2 += float64(w) * sgx
				}
				if gx == nil {
					continue
				}
				a, b := float32(m1/float64(gsize)), float32(m2/float64(gsize))
				for k := 0; k < cpg; k++ {
					w := rf
					if weight != nil {
						w *= weight.Data[c0+k]
					}
					xc, gc := xg[k*hw:(k+1)*hw], gg[k*hw:(k+1)*hw]
					dx := gx[t*gsize+k*hw : t*gsize+(k+1)*hw]
					for i, v := range gc {
						dx[i] = w*v - rf*(a+(xc[i]-mf)*rf*b)
					}
				}
			}
		})
		if gx != nil {
			x.accumulateOwned(gx)
		}
		sumSamples := func(p []float64) []float32 {
			r := make([]float32, c)
			for ch := range r {
				var s float64
				for i := 0; i < n; i++ {
					s += p[i*c+ch]
				}
				r[ch] = float32(s)
			}
			return r
		}
		if needW {
			weight.accumulateOwned(sumSamples(pw))
		}
		if needB {
			bias.accumulateOwned(sumSamples(pb))
		}
	}, x, weight, bias)
}
