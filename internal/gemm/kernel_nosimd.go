//go:build !(goexperiment.simd && amd64)

package gemm

// simdPaths is empty without GOEXPERIMENT=simd on amd64: Sgemm falls back to
// the portable Go micro-kernel.
func simdPaths() []*path { return nil }
