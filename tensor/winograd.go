package tensor

import (
	"math"
	"os"

	"tsdsr/internal/gemm"
	"tsdsr/internal/parallel"
)

// Winograd F(4x4, 3x3) for inference: a 3x3 stride-1 convolution computes
// each 4x4 output tile from a 6x6 input tile with 36 products per channel
// pair instead of 144, so the GEMMs do a quarter of im2col's arithmetic
// (Lavin & Gray 2015). Per call the weights become U = G g G^T
// ([36][Cout][Cin]); then, in bands of output tile rows (bands in parallel,
// as the im2col path, so scratch memory stays bounded), the input tiles
// become V = B^T d B ([36][Cin][tiles]), one GEMM per tile position gives
// M = U[p] V[p], and the outputs are Y = A^T M A plus the bias.
//
// It is forward only and rounds differently from im2col (about 5e-6 of the
// largest output at 64 channels, see TestWinogradMatchesIm2col), so Conv2d
// takes it only when no gradient is recorded; training keeps im2col.
//
// The thresholds come from timing both paths around them: with the AVX2
// transforms Winograd was 1.0-1.2x im2col's speed at Cin 16 and 32x32
// outputs and more above, whatever Cout (64->3 at 512x512, TAESD's last
// layer, is 2x faster: im2col's GEMM fills 3 of its 6-row register tiles);
// with the plain-Go transforms of other builds only 64->64 layers gain
// (1.0-1.2x at 32x32..64x64, 1.7x at 512x512).
var (
	// winogradMinChannels is the least Cin, the GEMMs' depth, worth the
	// transforms; winogradMinOutChannels the least Cout.
	winogradMinChannels    = 16
	winogradMinOutChannels = 1
	// winogradMinPixels is the least Ho*Wo: below it the weight transform
	// and the per-GEMM packing of U outweigh the saved arithmetic.
	winogradMinPixels = 32 * 32
	// winogradBandTiles is about how many tiles a band holds (measured
	// best of 64..512): its scratch is 37*max(Cin, Cout) floats per tile,
	// 1.4 MB at 64 channels.
	winogradBandTiles = 128
)

func init() {
	if !wgSIMD {
		winogradMinChannels, winogradMinOutChannels = 64, 64
	}
	if os.Getenv("TSDSR_WINOGRAD") == "0" {
		winogradMinChannels = math.MaxInt // off, to compare against im2col
	}
}

// recording reports whether record will keep a backward for an op on
// inputs: then the op must use its differentiable path.
func recording(inputs ...*Tensor) bool {
	if !GradEnabled() {
		return false
	}
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			return true
		}
	}
	return false
}

// winograd reports whether the forward pass should run in Winograd form.
func (g *convGeom) winograd() bool {
	return g.kh == 3 && g.kw == 3 && g.s == 1 && g.p <= 2 &&
		g.cin >= winogradMinChannels && g.cout >= winogradMinOutChannels &&
		g.ho*g.wo >= winogradMinPixels
}

// wgTransformWeights returns U [36][Cout][Cin] = G g G^T for every 3x3
// kernel g of w [Cout, Cin, 3, 3], in a pooled buffer, and the stride of
// its positions (padded by a cache line: see winogradForward).
func (g *convGeom) wgTransformWeights(w []float32) (*[]float32, int) {
	ps := g.cout*g.cin + 16
	buf := getConvCols(36 * ps)
	u := *buf
	parallel.For(g.cout, max(1, 2048/g.cin), func(lo, hi int) {
		for co := lo; co < hi; co++ {
			wgWeights(u[co*g.cin:], ps, w[co*g.cin*9:(co+1)*g.cin*9])
		}
	})
	return buf, ps
}

// wgWeightsGo is wgWeights in plain Go, for kernels [c0, len(w)/9).
func wgWeightsGo(u []float32, ps int, w []float32, c0 int) {
	for c := c0; c < len(w)/9; c++ {
		k := w[9*c : 9*c+9 : 9*c+9]
		var t [6][3]float32 // G g
		for j := range 3 {
			t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j] = wgG(k[j], k[3+j], k[6+j])
		}
		for i := range 6 {
			o0, o1, o2, o3, o4, o5 := wgG(t[i][0], t[i][1], t[i][2])
			b := 6 * i * ps
			u[b+c], u[b+ps+c], u[b+2*ps+c], u[b+3*ps+c], u[b+4*ps+c], u[b+5*ps+c] = o0, o1, o2, o3, o4, o5
		}
	}
}

// wgG applies G to one 3-vector.
func wgG(a, b, c float32) (o0, o1, o2, o3, o4, o5 float32) {
	s, e, f := a+c, a*(1.0/24)+c*(1.0/6), b*(1.0/12)
	return a * 0.25, (s + b) * (-1.0 / 6), (s - b) * (-1.0 / 6), e + f, e - f, c
}

// winogradForward is forward (see Conv2d) for a convolution that passes
// winograd.
func (g *convGeom) winogradForward(x, w, bias, out []float32) {
	ubuf, ups := g.wgTransformWeights(w)
	defer convCols.Put(ubuf)
	u := *ubuf
	th, tw := (g.ho+3)/4, (g.wo+3)/4
	rows := max(1, min(th, winogradBandTiles/tw))
	// Enough bands to keep every worker busy on small maps, unless they
	// get so thin that repacking U for each band's GEMMs dominates.
	if per := (2*parallel.Threads() + g.n - 1) / g.n; (th+rows-1)/rows < per {
		rows = min(rows, max((th+per-1)/per, (64+tw-1)/tw))
	}
	bands := (th + rows - 1) / rows
	ld := (tw+7)/8*8 + 8 // a deinterleaved row: tw+1 used, SIMD slack
	hw, ohw := g.h*g.w, g.ho*g.wo
	parallel.For(g.n*bands, 1, func(lo, hi int) {
		// V and M share 37 slots of max(Cin, Cout) rows: GEMM p reads V[p]
		// from slot p+1 and writes M[p] over V[p-1] in slot p, which halves
		// the band's cache footprint. Rows are ntp floats apart and slots
		// a cache line more than their rows: the transforms touch all 36
		// positions at once, and power-of-two strides would map them (and
		// the GEMM's rows) onto the same cache sets.
		ntp := wgStride(rows * tw)
		ss := max(g.cin, g.cout)*ntp + 16
		buf := getConvCols(37*ss + 24*ld + 16*ld)
		defer convCols.Put(buf)
		s := *buf
		vm := s[:37*ss]
		d := s[37*ss : 37*ss+24*ld]
		y := s[37*ss+24*ld:]
		for unit := lo; unit < hi; unit++ {
			n, ty0 := unit/bands, unit%bands*rows
			ty1 := min(th, ty0+rows)
			nt := (ty1 - ty0) * tw
			xn := x[n*g.cin*hw : (n+1)*g.cin*hw]
			for c := range g.cin {
				plane := xn[c*hw : (c+1)*hw]
				for ty := ty0; ty < ty1; ty++ {
					g.wgGather(d, ld, plane, 4*ty-g.p, -g.p)
					wgInput(vm[ss+c*ntp+(ty-ty0)*tw:], ss, d, ld, tw)
				}
			}
			for p := range 36 {
				gemm.Sgemm(false, false, g.cout, nt, g.cin, 1, u[p*ups:], g.cin,
					vm[(p+1)*ss:], ntp, 0, vm[p*ss:], ntp)
			}
			on := out[n*g.cout*ohw : (n+1)*g.cout*ohw]
			for co := range g.cout {
				var b float32
				if bias != nil {
					b = bias[co]
				}
				for ty := ty0; ty < ty1; ty++ {
					wgOutput(y, ld, vm[co*ntp+(ty-ty0)*tw:], ss, tw, b)
					g.wgScatter(on[co*ohw:(co+1)*ohw], y, ld, 4*ty, tw)
				}
			}
		}
	})
}

// wgStride is the row stride for n tiles: an odd number of 16-float cache
// lines, so that consecutive rows fall into different cache sets, with at
// least 8 floats of slack for the SIMD output transform's last vector.
func wgStride(n int) int {
	s := (n + 8 + 15) / 16 * 16
	if s/16%2 == 0 {
		s += 16
	}
	return s
}

// wgGather copies the 6 input rows r0..r0+5 of plane [H, W], columns c0
// onwards, into d deinterleaved by column phase: row i, phase q, index t
// holds column c0+4t+q at d[(4i+q)*ld+t] (zero outside the image), so that
// tile tx's six columns are phases 0..3 at t = tx and phases 0, 1 at tx+1,
// and the transforms run over tiles with unit stride.
func (g *convGeom) wgGather(d []float32, ld int, plane []float32, r0, c0 int) {
	l := 4 * ld
	ulo, uhi := min(l, max(0, -c0)), max(0, min(l, g.w-c0)) // valid u = x - c0
	ta, tb := (ulo+3)/4, uhi/4                              // tiles wholly inside
	tz := max(tb+1, ta)                                     // tiles from tz on are zero
	for i := range 6 {
		di := d[i*l : (i+1)*l]
		r := r0 + i
		if r < 0 || r >= g.h || ulo >= uhi {
			clear(di)
			continue
		}
		src := plane[r*g.w : (r+1)*g.w]
		// Whole tiles 8 at a time, the last 8 overlapping the previous
		// ones rather than leaving a ragged end.
		if n := tb - ta; n >= 8 {
			wgDeinterleave(di, ld, ta, src[4*ta+c0:], n/8)
			if n%8 != 0 {
				wgDeinterleave(di, ld, tb-8, src[4*(tb-8)+c0:], 1)
			}
		} else {
			for t := ta; t < tb; t++ {
				q := src[4*t+c0 : 4*t+c0+4 : 4*t+c0+4]
				di[t], di[ld+t], di[2*ld+t], di[3*ld+t] = q[0], q[1], q[2], q[3]
			}
		}
		// Tiles that straddle an edge, one column at a time.
		edge := func(t int) {
			for q := range 4 {
				var v float32
				if u := 4*t + q; u >= ulo && u < uhi {
					v = src[u+c0]
				}
				di[q*ld+t] = v
			}
		}
		for t := range ta {
			edge(t)
		}
		for t := max(ta, tb); t < min(ld, tz); t++ {
			edge(t)
		}
		if tz < ld {
			for q := range 4 {
				clear(di[q*ld+tz : (q+1)*ld])
			}
		}
	}
}

// wgScatter writes the tile-row outputs y (row 4r+s holds pixel (r, s) of
// each of the n tiles, stride ly) into rows oy0..oy0+3 of the output plane
// on [Ho, Wo], dropping what lies outside it.
func (g *convGeom) wgScatter(on, y []float32, ly, oy0, n int) {
	full := g.wo / 4 // tiles wholly inside the row
	for r := range min(4, g.ho-oy0) {
		o := on[(oy0+r)*g.wo : (oy0+r+1)*g.wo]
		y0, y1, y2, y3 := y[(4*r)*ly:(4*r)*ly+n], y[(4*r+1)*ly:(4*r+1)*ly+n], y[(4*r+2)*ly:(4*r+2)*ly+n], y[(4*r+3)*ly:(4*r+3)*ly+n]
		if full >= 8 {
			wgInterleave(o, y0, y1, y2, y3, 0, full/8)
			if full%8 != 0 {
				wgInterleave(o[4*(full-8):], y0, y1, y2, y3, full-8, 1)
			}
		} else {
			for t := range full {
				q := o[4*t : 4*t+4 : 4*t+4]
				q[0], q[1], q[2], q[3] = y0[t], y1[t], y2[t], y3[t]
			}
		}
		for s := range g.wo - 4*full {
			o[4*full+s] = y[(4*r+s)*ly+full]
		}
	}
}

// wgInputGo is wgInput in plain Go.
func wgInputGo(v []float32, vs int, d []float32, ld, n int) {
	// B^T down the columns, in place: elementwise over the 6 rows.
	l := 4 * ld
	r0, r1, r2, r3, r4, r5 := d[:l], d[l:2*l], d[2*l:3*l], d[3*l:4*l], d[4*l:5*l], d[5*l:6*l]
	for u := range r0 {
		r0[u], r1[u], r2[u], r3[u], r4[u], r5[u] = wgBT(r0[u], r1[u], r2[u], r3[u], r4[u], r5[u])
	}
	wgInputRowsGo(v, vs, d, ld, 0, n)
}

// wgInputRowsGo applies B^T along the rows for tiles [t0, n), one tile
// per column of v, once the columns are done.
func wgInputRowsGo(v []float32, vs int, d []float32, ld, t0, n int) {
	l := 4 * ld
	for i := range 6 {
		z := d[i*l : (i+1)*l]
		for t := t0; t < n; t++ {
			o0, o1, o2, o3, o4, o5 := wgBT(z[t], z[ld+t], z[2*ld+t], z[3*ld+t], z[t+1], z[ld+t+1])
			b := 6 * i * vs
			v[b+t], v[b+vs+t], v[b+2*vs+t], v[b+3*vs+t], v[b+4*vs+t], v[b+5*vs+t] = o0, o1, o2, o3, o4, o5
		}
	}
}

// wgBT applies B^T to one 6-vector.
func wgBT(d0, d1, d2, d3, d4, d5 float32) (o0, o1, o2, o3, o4, o5 float32) {
	a, b := d4-4*d2, d3-4*d1
	c, e := d4-d2, 2*(d3-d1)
	return 4*d0 - 5*d2 + d4, a + b, a - b, c + e, c - e, 4*d1 - 5*d3 + d5
}

// wgAT applies A^T to one 6-vector.
func wgAT(m0, m1, m2, m3, m4, m5 float32) (o0, o1, o2, o3 float32) {
	a, b := m1+m2, m3+m4
	c, e := m1-m2, m3-m4
	return m0 + a + b, c + 2*e, a + 4*b, c + 8*e + m5
}

// wgOutputGo is wgOutput in plain Go.
func wgOutputGo(y []float32, ly int, m []float32, ms, n int, bias float32) {
	for t := range n {
		var r [4][6]float32 // A^T M
		for j := range 6 {
			r[0][j], r[1][j], r[2][j], r[3][j] = wgAT(m[j*ms+t], m[(6+j)*ms+t], m[(12+j)*ms+t], m[(18+j)*ms+t], m[(24+j)*ms+t], m[(30+j)*ms+t])
		}
		for i := range 4 {
			o0, o1, o2, o3 := wgAT(r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5])
			b := 4 * i * ly
			y[b+t], y[b+ly+t], y[b+2*ly+t], y[b+3*ly+t] = o0+bias, o1+bias, o2+bias, o3+bias
		}
	}
}

// wgDeinterleaveGo is wgDeinterleave in plain Go.
func wgDeinterleaveGo(d []float32, ld, t0 int, src []float32, blocks int) {
	p0, p1, p2, p3 := d[t0:t0+8*blocks], d[ld+t0:ld+t0+8*blocks], d[2*ld+t0:2*ld+t0+8*blocks], d[3*ld+t0:3*ld+t0+8*blocks]
	for t := range 8 * blocks {
		q := src[4*t : 4*t+4 : 4*t+4]
		p0[t], p1[t], p2[t], p3[t] = q[0], q[1], q[2], q[3]
	}
}

// wgInterleaveGo is wgInterleave in plain Go.
func wgInterleaveGo(o, y0, y1, y2, y3 []float32, t0, blocks int) {
	for t := t0; t < t0+8*blocks; t++ {
		q := o[4*(t-t0) : 4*(t-t0)+4 : 4*(t-t0)+4]
		q[0], q[1], q[2], q[3] = y0[t], y1[t], y2[t], y3[t]
	}
}
