//go:build !(goexperiment.simd && amd64)

package degrade

// simdConv is false: this build has no SIMD row kernels.
const simdConv = false

// correlateRows computes output rows y and y+1 (out1 may be nil) with the
// reference kernel.
func correlateRows(out0, out1, p []float32, pw int, k []float32, kh, kw int) {
	correlateRowGo(out0, p, pw, k, kh, kw)
	if out1 != nil {
		correlateRowGo(out1, p[pw:], pw, k, kh, kw)
	}
}
