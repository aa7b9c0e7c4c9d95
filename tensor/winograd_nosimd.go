//go:build !goexperiment.simd || !amd64

package tensor

// wgSIMD: this build has only the plain-Go transforms.
const wgSIMD = false

// wgInput transforms the n tiles of one channel's tile row: d holds the
// six input rows deinterleaved by wgGather (it is overwritten), and
// position p of tile t goes to v[p*vs+t].
func wgInput(v []float32, vs int, d []float32, ld, n int) { wgInputGo(v, vs, d, ld, n) }

// wgOutput transforms the n tiles of one output channel's tile row: M's
// position p of tile t is m[p*ms+t], and pixel (r, s) of tile t plus bias
// goes to y[(4r+s)*ly+t].
func wgOutput(y []float32, ly int, m []float32, ms, n int, bias float32) {
	wgOutputGo(y, ly, m, ms, n, bias)
}

// wgDeinterleave splits blocks of 32 consecutive floats of src into phases
// 0..3 at d[q*ld+t0:], 8 floats each per block.
func wgDeinterleave(d []float32, ld, t0 int, src []float32, blocks int) {
	wgDeinterleaveGo(d, ld, t0, src, blocks)
}

// wgInterleave is the inverse of wgDeinterleave: it writes blocks of 8
// floats from each of y0..y3 (from t0 on) as groups of 4 into o.
func wgInterleave(o, y0, y1, y2, y3 []float32, t0, blocks int) {
	wgInterleaveGo(o, y0, y1, y2, y3, t0, blocks)
}

// wgWeights transforms the kernels w [Cin, 3, 3] of one output channel:
// position p of kernel c goes to u[p*ps+c].
func wgWeights(u []float32, ps int, w []float32) { wgWeightsGo(u, ps, w, 0) }
