//go:build !(goexperiment.simd && amd64)

package degrade

// simdConv is false: this build has no SIMD row kernel.
const simdConv = false

// correlateRow computes one output row with the reference kernel.
func correlateRow(out, p []float32, pw int, k []float32, kh, kw int) {
	correlateRowGo(out, p, pw, k, kh, kw)
}
