//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// The transforms run 8 tiles at a time in AVX2 vectors: wgGather's phase
// layout puts consecutive tiles in consecutive floats, so every transform
// step is plain vector arithmetic; only the (de)interleaving of pixels and
// tiles needs shuffles.

// Each kernel ends with VZEROUPPER: the scalar Go code that follows
// (gathers, GEMM packing) otherwise runs several times slower on dirty
// upper register halves.

// wgSIMD is true when the AVX2+FMA kernels can run.
var wgSIMD = archsimd.X86.AVX2() && archsimd.X86.FMA()

type vec = archsimd.Float32x8

// ldv and stv load and store 8 floats at p + 4*i bytes.
func ldv(p unsafe.Pointer, i int) vec {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, 4*i)))
}

func stv(p unsafe.Pointer, i int, v vec) { v.Store((*[8]float32)(unsafe.Add(p, 4*i))) }

var (
	wgTwo   = archsimd.BroadcastFloat32x8(2)
	wgFour  = archsimd.BroadcastFloat32x8(4)
	wgEight = archsimd.BroadcastFloat32x8(8)
	wgM2    = archsimd.BroadcastFloat32x8(-2)
	wgM4    = archsimd.BroadcastFloat32x8(-4)
	wgM5    = archsimd.BroadcastFloat32x8(-5)
)

// bt8 is wgBT on 8 lanes.
func bt8(d0, d1, d2, d3, d4, d5 vec) (o0, o1, o2, o3, o4, o5 vec) {
	a, b := d2.MulAdd(wgM4, d4), d1.MulAdd(wgM4, d3)
	c, e := d4.Sub(d2), d3.Sub(d1)
	return d0.MulAdd(wgFour, d2.MulAdd(wgM5, d4)), a.Add(b), a.Sub(b),
		e.MulAdd(wgTwo, c), e.MulAdd(wgM2, c), d1.MulAdd(wgFour, d3.MulAdd(wgM5, d5))
}

// at8 is wgAT on 8 lanes.
func at8(m0, m1, m2, m3, m4, m5 vec) (o0, o1, o2, o3 vec) {
	a, b := m1.Add(m2), m3.Add(m4)
	c, e := m1.Sub(m2), m3.Sub(m4)
	return m0.Add(a).Add(b), e.MulAdd(wgTwo, c), b.MulAdd(wgFour, a), e.MulAdd(wgEight, c).Add(m5)
}

// wgInput transforms the n tiles of one channel's tile row: d holds the
// six input rows deinterleaved by wgGather (it is overwritten), and
// position p of tile t goes to v[p*vs+t].
func wgInput(v []float32, vs int, d []float32, ld, n int) {
	l := 4 * ld
	nv := n &^ 7
	if !wgSIMD || ld%8 != 0 || len(d) < 6*l || n >= ld || (nv > 0 && len(v) < 35*vs+nv) {
		wgInputGo(v, vs, d, ld, n)
		return
	}
	dp := unsafe.Pointer(unsafe.SliceData(d))
	// B^T down the columns, in place.
	for u := 0; u < l; u += 8 {
		p := unsafe.Add(dp, 4*u)
		o0, o1, o2, o3, o4, o5 := bt8(ldv(p, 0), ldv(p, l), ldv(p, 2*l), ldv(p, 3*l), ldv(p, 4*l), ldv(p, 5*l))
		stv(p, 0, o0)
		stv(p, l, o1)
		stv(p, 2*l, o2)
		stv(p, 3*l, o3)
		stv(p, 4*l, o4)
		stv(p, 5*l, o5)
	}
	if nv > 0 {
		vp := unsafe.Pointer(unsafe.SliceData(v))
		for i := range 6 {
			z := unsafe.Add(dp, 4*i*l)
			out := unsafe.Add(vp, 4*6*i*vs)
			for t := 0; t < nv; t += 8 {
				o0, o1, o2, o3, o4, o5 := bt8(ldv(z, t), ldv(z, ld+t), ldv(z, 2*ld+t), ldv(z, 3*ld+t), ldv(z, t+1), ldv(z, ld+t+1))
				stv(out, t, o0)
				stv(out, vs+t, o1)
				stv(out, 2*vs+t, o2)
				stv(out, 3*vs+t, o3)
				stv(out, 4*vs+t, o4)
				stv(out, 5*vs+t, o5)
			}
		}
	}
	archsimd.ClearAVXUpperBits()
	if nv < n {
		wgInputRowsGo(v, vs, d, ld, nv, n)
	}
}

// wgOutput transforms the n tiles of one output channel's tile row: M's
// position p of tile t is m[p*ms+t], and pixel (r, s) of tile t plus bias
// goes to y[(4r+s)*ly+t]. Whole vectors are computed, so m must hold 8
// floats past the last tile and y rows round n up to 8.
func wgOutput(y []float32, ly int, m []float32, ms, n int, bias float32) {
	nv := (n + 7) &^ 7
	if !wgSIMD || len(m) < 35*ms+nv || len(y) < 15*ly+nv || ly < nv {
		wgOutputGo(y, ly, m, ms, n, bias)
		return
	}
	mp, yp := unsafe.Pointer(unsafe.SliceData(m)), unsafe.Pointer(unsafe.SliceData(y))
	bv := archsimd.BroadcastFloat32x8(bias)
	var r [4][6]vec // A^T M for 8 tiles
	for t := 0; t < nv; t += 8 {
		p := unsafe.Add(mp, 4*t)
		for j := range 6 {
			r[0][j], r[1][j], r[2][j], r[3][j] = at8(ldv(p, j*ms), ldv(p, (6+j)*ms), ldv(p, (12+j)*ms), ldv(p, (18+j)*ms), ldv(p, (24+j)*ms), ldv(p, (30+j)*ms))
		}
		q := unsafe.Add(yp, 4*t)
		for i := range 4 {
			o0, o1, o2, o3 := at8(r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5])
			stv(q, 4*i*ly, o0.Add(bv))
			stv(q, (4*i+1)*ly, o1.Add(bv))
			stv(q, (4*i+2)*ly, o2.Add(bv))
			stv(q, (4*i+3)*ly, o3.Add(bv))
		}
	}
	archsimd.ClearAVXUpperBits()
}

// transpose4x8 transposes four vectors of 8 (rows) into eight groups of 4
// (columns) laid out as four vectors, and back: it is its own inverse up to
// the 128-bit lane order, which the callers fix with Select128FromPair.
func transpose4x8(a, b, c, d vec) (vec, vec, vec, vec) {
	ab0 := a.AsInt32x8().InterleaveLoGrouped(b.AsInt32x8()).AsUint64x4()
	ab1 := a.AsInt32x8().InterleaveHiGrouped(b.AsInt32x8()).AsUint64x4()
	cd0 := c.AsInt32x8().InterleaveLoGrouped(d.AsInt32x8()).AsUint64x4()
	cd1 := c.AsInt32x8().InterleaveHiGrouped(d.AsInt32x8()).AsUint64x4()
	return ab0.InterleaveLoGrouped(cd0).AsFloat32x8(), ab0.InterleaveHiGrouped(cd0).AsFloat32x8(),
		ab1.InterleaveLoGrouped(cd1).AsFloat32x8(), ab1.InterleaveHiGrouped(cd1).AsFloat32x8()
}

// wgDeinterleave splits blocks of 32 consecutive floats of src into phases
// 0..3 at d[q*ld+t0:], 8 floats each per block.
func wgDeinterleave(d []float32, ld, t0 int, src []float32, blocks int) {
	if !wgSIMD || len(src) < 32*blocks || len(d) < 3*ld+t0+8*blocks {
		wgDeinterleaveGo(d, ld, t0, src, blocks)
		return
	}
	sp, dp := unsafe.Pointer(unsafe.SliceData(src)), unsafe.Pointer(&d[t0])
	for k := range blocks {
		s := unsafe.Add(sp, 128*k)
		x0, x1, x2, x3 := ldv(s, 0), ldv(s, 8), ldv(s, 16), ldv(s, 24)
		p0, p1, p2, p3 := transpose4x8(x0.Select128FromPair(0, 2, x2), x0.Select128FromPair(1, 3, x2),
			x1.Select128FromPair(0, 2, x3), x1.Select128FromPair(1, 3, x3))
		o := unsafe.Add(dp, 32*k)
		stv(o, 0, p0)
		stv(o, ld, p1)
		stv(o, 2*ld, p2)
		stv(o, 3*ld, p3)
	}
	archsimd.ClearAVXUpperBits()
}

// wgInterleave is the inverse of wgDeinterleave: it writes blocks of 8
// floats from each of y0..y3 (from t0 on) as groups of 4 into o.
func wgInterleave(o, y0, y1, y2, y3 []float32, t0, blocks int) {
	e := t0 + 8*blocks
	if !wgSIMD || len(o) < 32*blocks || len(y0) < e || len(y1) < e || len(y2) < e || len(y3) < e {
		wgInterleaveGo(o, y0, y1, y2, y3, t0, blocks)
		return
	}
	op := unsafe.Pointer(unsafe.SliceData(o))
	p0, p1, p2, p3 := unsafe.Pointer(&y0[t0]), unsafe.Pointer(&y1[t0]), unsafe.Pointer(&y2[t0]), unsafe.Pointer(&y3[t0])
	for k := range blocks {
		a, b, c, d := transpose4x8(ldv(p0, 8*k), ldv(p1, 8*k), ldv(p2, 8*k), ldv(p3, 8*k))
		q := unsafe.Add(op, 128*k)
		stv(q, 0, a.Select128FromPair(0, 2, b))
		stv(q, 8, c.Select128FromPair(0, 2, d))
		stv(q, 16, a.Select128FromPair(1, 3, b))
		stv(q, 24, c.Select128FromPair(1, 3, d))
	}
	archsimd.ClearAVXUpperBits()
}

var (
	wgQuarter  = archsimd.BroadcastFloat32x8(0.25)
	wgMSixth   = archsimd.BroadcastFloat32x8(-1.0 / 6)
	wgSixth    = archsimd.BroadcastFloat32x8(1.0 / 6)
	wgTwelfth  = archsimd.BroadcastFloat32x8(1.0 / 12)
	wgTwentyFt = archsimd.BroadcastFloat32x8(1.0 / 24)
)

// g8 is wgG on 8 lanes.
func g8(a, b, c vec) (o0, o1, o2, o3, o4, o5 vec) {
	s, e, f := a.Add(c), a.MulAdd(wgTwentyFt, c.Mul(wgSixth)), b.Mul(wgTwelfth)
	return a.Mul(wgQuarter), s.Add(b).Mul(wgMSixth), s.Sub(b).Mul(wgMSixth), e.Add(f), e.Sub(f), c
}

// wgWeights transforms the kernels w [Cin, 3, 3] of one output channel:
// position p of kernel c goes to u[p*ps+c]. Eight kernels at a time, their
// taps transposed through a small array.
func wgWeights(u []float32, ps int, w []float32) {
	n := len(w) / 9
	nv := n &^ 7
	if !wgSIMD || nv == 0 || len(u) < 35*ps+nv {
		wgWeightsGo(u, ps, w, 0)
		return
	}
	up := unsafe.Pointer(unsafe.SliceData(u))
	var k [9][8]float32
	for c := 0; c < nv; c += 8 {
		for l := range 8 {
			g := w[9*(c+l) : 9*(c+l)+9 : 9*(c+l)+9]
			k[0][l], k[1][l], k[2][l], k[3][l], k[4][l], k[5][l], k[6][l], k[7][l], k[8][l] = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8]
		}
		var t [6][3]vec // G g
		for j := range 3 {
			g0, g1, g2 := archsimd.LoadFloat32x8(&k[j]), archsimd.LoadFloat32x8(&k[3+j]), archsimd.LoadFloat32x8(&k[6+j])
			t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j] = g8(g0, g1, g2)
		}
		p := unsafe.Add(up, 4*c)
		for i := range 6 {
			o0, o1, o2, o3, o4, o5 := g8(t[i][0], t[i][1], t[i][2])
			stv(p, 6*i*ps, o0)
			stv(p, (6*i+1)*ps, o1)
			stv(p, (6*i+2)*ps, o2)
			stv(p, (6*i+3)*ps, o3)
			stv(p, (6*i+4)*ps, o4)
			stv(p, (6*i+5)*ps, o5)
		}
	}
	archsimd.ClearAVXUpperBits()
	wgWeightsGo(u, ps, w, nv)
}
