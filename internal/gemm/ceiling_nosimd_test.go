//go:build !(goexperiment.simd && amd64)

package gemm

// Without GOEXPERIMENT=simd on amd64 there is no ceiling kernel to compare
// with; the benchmarks report GFLOP/s only.
func ceilingName() string { return "" }

func ceilingGemm(a, b, c []float32, m, n, k, threads int) { panic("no ceiling kernel in this build") }

func fmaPeak(threads int) float64 { panic("no FMA peak loop in this build") }
