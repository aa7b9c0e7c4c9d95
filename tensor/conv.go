package tensor

import (
	"fmt"
	"sync"

	"tsdsr/internal/gemm"
	"tsdsr/internal/parallel"
)

// Convolutions run in bands of whole output rows, im2col'ed into a column
// buffer, so a 2048x2048 image costs no more scratch memory than a 256x256
// one. The forward pass gives each worker its own bands of about
// convFwdCols columns (a buffer near L2 size; measured best of 128..2048).
// The backward pass, whose dW sums over bands, runs one band at a time with
// convBwdCols columns per worker so the GEMMs have work for every worker;
// convColBudget float32 elements bound its buffers.
var (
	convFwdCols   = 256
	convBwdCols   = 512
	convColBudget = 1 << 23
)

// Conv2d is a 2-D cross-correlation with zero padding, as torch.nn.functional
// .conv2d: x [N, Cin, H, W], w [Cout, Cin, kh, kw], b [Cout] or nil, output
// [N, Cout, Ho, Wo] with Ho = (H+2*padding-kh)/stride + 1 (likewise Wo).
//
// Each image is the GEMM W[Cout, Cin*kh*kw] x cols[Cin*kh*kw, Ho*Wo]
// (im2col), done in row bands that bound the column buffer, bands in
// parallel; 1x1 stride-1 convolutions multiply the image directly. Backward
// recomputes the columns instead of keeping them: dW = g x cols^T,
// db = sum of g, and dx = col2im(W^T x g), or for stride 1 the transposed
// convolution of g run by the forward path. When no gradient is recorded,
// 3x3 stride-1 convolutions run in Winograd form instead (winograd.go).
func Conv2d(x, w, b *Tensor, stride, padding int) *Tensor {
	if x.Dim() != 4 || w.Dim() != 4 || x.Shape[1] != w.Shape[1] {
		panic(fmt.Sprintf("tensor.Conv2d: x %v and w %v: want x [N, Cin, H, W], w [Cout, Cin, kh, kw]", x.Shape, w.Shape))
	}
	if b != nil && (b.Dim() != 1 || b.Shape[0] != w.Shape[0]) {
		panic(fmt.Sprintf("tensor.Conv2d: bias %v for %d output channels", b.Shape, w.Shape[0]))
	}
	if stride < 1 || padding < 0 {
		panic(fmt.Sprintf("tensor.Conv2d: stride %d, padding %d", stride, padding))
	}
	g := convGeom{
		n: x.Shape[0], cin: x.Shape[1], h: x.Shape[2], w: x.Shape[3],
		cout: w.Shape[0], kh: w.Shape[2], kw: w.Shape[3], s: stride, p: padding,
	}
	g.ho = (g.h+2*g.p-g.kh)/g.s + 1
	g.wo = (g.w+2*g.p-g.kw)/g.s + 1
	if g.h+2*g.p < g.kh || g.w+2*g.p < g.kw {
		panic(fmt.Sprintf("tensor.Conv2d: kernel %dx%d larger than padded input %v (padding %d)", g.kh, g.kw, x.Shape, padding))
	}
	out := New(g.n, g.cout, g.ho, g.wo) // [N, Cout, Ho, Wo]
	var bias []float32
	if b != nil {
		bias = b.Data
	}
	if g.winograd() && !recording(x, w, b) {
		g.winogradForward(x.Data, w.Data, bias, out.Data)
	} else {
		g.forward(x.Data, w.Data, bias, out.Data)
	}
	return record(out, func(gr *Tensor) {
		if b != nil && b.requiresGrad {
			b.accumulateOwned(g.biasGrad(gr.Data)) // [Cout]
		}
		var dx, dw []float32
		if x.requiresGrad {
			dx = make([]float32, len(x.Data)) // [N, Cin, H, W]
		}
		if w.requiresGrad {
			dw = make([]float32, len(w.Data)) // [Cout, Cin, kh, kw]
		}
		if dx == nil && dw == nil {
			return
		}
		g.backward(x.Data, w.Data, gr.Data, dx, dw)
		if dx != nil {
			x.accumulateOwned(dx)
		}
		if dw != nil {
			w.accumulateOwned(dw)
		}
	}, x, w, b)
}

// convGeom holds the sizes of one convolution call.
type convGeom struct {
	n, cin, h, w int
	cout, kh, kw int
	s, p         int
	ho, wo       int
}

// pointwise reports whether the convolution is a plain per-pixel matrix
// product, which needs no column buffer at all.
func (g *convGeom) pointwise() bool {
	return g.kh == 1 && g.kw == 1 && g.s == 1 && g.p == 0
}

// k is the GEMM inner dimension Cin*kh*kw.
func (g *convGeom) k() int { return g.cin * g.kh * g.kw }

// bandRows is how many output rows make a band of about cols columns.
func (g *convGeom) bandRows(cols int) int {
	return min(g.ho, max(1, cols/g.wo))
}

func (g *convGeom) forward(x, w, bias, out []float32) {
	hw, ohw, k := g.h*g.w, g.ho*g.wo, g.k()
	if g.pointwise() {
		beta := float32(0) // the GEMM adds onto the bias when there is one
		if bias != nil {
			beta = 1
		}
		for n := range g.n {
			on := out[n*g.cout*ohw : (n+1)*g.cout*ohw] // [Cout, H*W]
			g.fillBias(on, bias, 0, ohw)
			gemm.Sgemm(false, false, g.cout, hw, g.cin, 1, w, g.cin, x[n*g.cin*hw:], hw, beta, on, hw)
		}
		return
	}
	// The bias rides along as one more GEMM inner row: a row of ones in the
	// columns and the bias as the last weight column, so the GEMM writes
	// the output once (beta 0) instead of reading a bias-filled one.
	kb, wb := k, w
	if bias != nil {
		kb = k + 1
		wb = make([]float32, g.cout*kb) // [Cout, Cin*kh*kw + 1]
		for co := range g.cout {
			copy(wb[co*kb:], w[co*k:(co+1)*k])
			wb[co*kb+k] = bias[co]
		}
	}
	rows := g.bandRows(convFwdCols)
	bands := (g.ho + rows - 1) / rows
	parallel.For(g.n*bands, 1, func(lo, hi int) {
		buf := getConvCols(kb * rows * g.wo)
		defer convCols.Put(buf)
		cols := *buf // [Cin*kh*kw (+1), band*Wo]
		for u := lo; u < hi; u++ {
			n, r0 := u/bands, u%bands*rows
			r1 := min(g.ho, r0+rows)
			np := (r1 - r0) * g.wo
			g.im2colRows(x[n*g.cin*hw:(n+1)*g.cin*hw], cols[:k*np], r0, r1, 0, k)
			if bias != nil {
				convFill(cols[k*np:(k+1)*np], 1)
			}
			gemm.Sgemm(false, false, g.cout, np, kb, 1, wb, kb, cols, np, 0, out[n*g.cout*ohw+r0*g.wo:], ohw)
		}
	})
}

// fillBias sets elements [off, off+np) of every channel of on [Cout, Ho*Wo]
// to the channel's bias (nothing when bias is nil).
func (g *convGeom) fillBias(on, bias []float32, off, np int) {
	ohw := g.ho * g.wo
	for co, bv := range bias {
		convFill(on[co*ohw+off:co*ohw+off+np], bv)
	}
}

// backward fills dx and/or dw (either may be nil) from the output gradient gr.
func (g *convGeom) backward(x, w, gr, dx, dw []float32) {
	hw, ohw, k := g.h*g.w, g.ho*g.wo, g.k()
	if dx != nil && g.transposable() {
		g.transposed().forward(gr, g.flipped(w), nil, dx)
		dx = nil // done
		if dw == nil {
			return
		}
	}
	var cols, dcols []float32
	rows := g.bandRows(min(convBwdCols*parallel.Threads(), convColBudget/k))
	if !g.pointwise() {
		if dw != nil {
			cols = make([]float32, k*rows*g.wo) // [Cin*kh*kw, band*Wo]
		}
		if dx != nil {
			dcols = make([]float32, k*rows*g.wo) // [Cin*kh*kw, band*Wo]
		}
	}
	betaW := float32(0) // the first product initialises dw, later ones add
	for n := range g.n {
		xn := x[n*g.cin*hw : (n+1)*g.cin*hw]      // [Cin, H, W]
		gn := gr[n*g.cout*ohw : (n+1)*g.cout*ohw] // [Cout, Ho, Wo]
		if g.pointwise() {
			if dw != nil {
				gemm.Sgemm(false, true, g.cout, g.cin, hw, 1, gn, hw, xn, hw, betaW, dw, g.cin)
				betaW = 1
			}
			if dx != nil {
				gemm.Sgemm(true, false, g.cin, hw, g.cout, 1, w, g.cin, gn, hw, 0, dx[n*g.cin*hw:], hw)
			}
			continue
		}
		for r0 := 0; r0 < g.ho; r0 += rows {
			r1 := min(g.ho, r0+rows)
			np := (r1 - r0) * g.wo
			if dw != nil {
				g.im2col(xn, cols[:k*np], r0, r1)
				gemm.Sgemm(false, true, g.cout, k, np, 1, gn[r0*g.wo:], ohw, cols, np, betaW, dw, k)
				betaW = 1
			}
			if dx != nil {
				gemm.Sgemm(true, false, k, np, g.cout, 1, w, k, gn[r0*g.wo:], ohw, 0, dcols, np)
				g.col2im(dcols[:k*np], dx[n*g.cin*hw:(n+1)*g.cin*hw], r0, r1)
			}
		}
	}
}

// transposable reports whether dx is itself a convolution that the forward
// path can run: for stride 1 and a square kernel, dx = conv(g, W flipped and
// with in/out swapped, padding k-1-p). That trades col2im's scattered
// additions for the forward pass's parallel bands.
func (g *convGeom) transposable() bool {
	return !g.pointwise() && g.s == 1 && g.kh == g.kw && g.p <= g.kh-1
}

// transposed is the geometry of the convolution that computes dx.
func (g *convGeom) transposed() *convGeom {
	t := &convGeom{
		n: g.n, cin: g.cout, h: g.ho, w: g.wo,
		cout: g.cin, kh: g.kh, kw: g.kw, s: 1, p: g.kh - 1 - g.p,
	}
	t.ho, t.wo = g.h, g.w
	return t
}

// flipped returns w [Cout, Cin, kh, kw] as [Cin, Cout, kh, kw] with both
// kernel axes reversed: the weights of the transposed convolution.
func (g *convGeom) flipped(w []float32) []float32 {
	taps := g.kh * g.kw
	f := make([]float32, len(w)) // [Cin, Cout, kh, kw]
	for co := range g.cout {
		for c := range g.cin {
			src := w[(co*g.cin+c)*taps : (co*g.cin+c+1)*taps]
			dst := f[(c*g.cout+co)*taps : (c*g.cout+co+1)*taps]
			for t, v := range src {
				dst[taps-1-t] = v
			}
		}
	}
	return f
}

// biasGrad sums the output gradient over batch and pixels per channel, in
// float64: a channel of a large image holds millions of terms.
func (g *convGeom) biasGrad(gr []float32) []float32 {
	ohw := g.ho * g.wo
	db := make([]float32, g.cout)
	parallel.For(g.cout, max(1, 32768/(g.n*ohw)), func(lo, hi int) {
		for co := lo; co < hi; co++ {
			var s float64
			for n := range g.n {
				for _, v := range gr[(n*g.cout+co)*ohw : (n*g.cout+co+1)*ohw] {
					s += float64(v)
				}
			}
			db[co] = float32(s)
		}
	})
	return db
}

// validCols returns the output columns [lo, hi) whose input column
// ow*s - p + kj lies inside the image.
func (g *convGeom) validCols(kj int) (lo, hi int) {
	if d := g.p - kj; d > 0 {
		lo = (d + g.s - 1) / g.s
	}
	if e := g.w - 1 + g.p - kj; e >= 0 {
		hi = e/g.s + 1
	}
	hi = min(hi, g.wo)
	return min(lo, hi), hi
}

// im2col writes the columns of output rows [r0, r1) of one image xn
// [Cin, H, W] into cols [Cin*kh*kw, (r1-r0)*Wo], row (c, ki, kj) holding the
// input pixel each output pixel sees through kernel tap (ki, kj); the rows
// are split over the worker pool.
func (g *convGeom) im2col(xn, cols []float32, r0, r1 int) {
	np := (r1 - r0) * g.wo
	parallel.For(g.k(), max(1, 16384/np), func(lo, hi int) {
		g.im2colRows(xn, cols, r0, r1, lo, hi)
	})
}

// im2colRows is im2col for the column-buffer rows [lo, hi) only.
func (g *convGeom) im2colRows(xn, cols []float32, r0, r1, lo, hi int) {
	np := (r1 - r0) * g.wo
	taps := g.kh * g.kw
	for row := lo; row < hi; row++ {
		c, ki, kj := row/taps, row%taps/g.kw, row%g.kw
		plane := xn[c*g.h*g.w : (c+1)*g.h*g.w]
		dst := cols[row*np : (row+1)*np]
		clo, chi := g.validCols(kj)
		for oh := r0; oh < r1; oh++ {
			d := dst[(oh-r0)*g.wo : (oh-r0+1)*g.wo]
			ih := oh*g.s - g.p + ki
			if ih < 0 || ih >= g.h {
				clear(d)
				continue
			}
			src := plane[ih*g.w : (ih+1)*g.w]
			clear(d[:clo])
			clear(d[chi:])
			off := kj - g.p
			if g.s == 1 {
				copy(d[clo:chi], src[clo+off:chi+off])
				continue
			}
			for ow := clo; ow < chi; ow++ {
				d[ow] = src[ow*g.s+off]
			}
		}
	}
}

// col2im is the adjoint of im2col: it adds each column entry of dcols
// [Cin*kh*kw, (r1-r0)*Wo] back onto the input pixel it was copied from in
// dxn [Cin, H, W]. Work is split by channel, so no two workers write the
// same pixel.
func (g *convGeom) col2im(dcols, dxn []float32, r0, r1 int) {
	np := (r1 - r0) * g.wo
	taps := g.kh * g.kw
	parallel.For(g.cin, max(1, 16384/(np*taps)), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			plane := dxn[c*g.h*g.w : (c+1)*g.h*g.w]
			for t := range taps {
				ki, kj := t/g.kw, t%g.kw
				src := dcols[(c*taps+t)*np : (c*taps+t+1)*np]
				clo, chi := g.validCols(kj)
				off := kj - g.p
				for oh := r0; oh < r1; oh++ {
					ih := oh*g.s - g.p + ki
					if ih < 0 || ih >= g.h {
						continue
					}
					s := src[(oh-r0)*g.wo : (oh-r0+1)*g.wo]
					d := plane[ih*g.w : (ih+1)*g.w]
					if g.s == 1 {
						d = d[clo+off : chi+off]
						for i, v := range s[clo:chi] {
							d[i] += v
						}
						continue
					}
					for ow := clo; ow < chi; ow++ {
						d[ow*g.s+off] += s[ow]
					}
				}
			}
		}
	})
}

// convCols recycles the forward pass's per-worker column buffers: the pool
// hands out several chunks per worker, and big images would otherwise
// allocate tens of MB per chunk.
var convCols = sync.Pool{New: func() any { return new([]float32) }}

// getConvCols returns a pooled buffer of n floats (contents undefined).
func getConvCols(n int) *[]float32 {
	b := convCols.Get().(*[]float32)
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	*b = (*b)[:n]
	return b
}

func convFill(d []float32, v float32) {
	for i := range d {
		d[i] = v
	}
}
