package tensor

// actSIMDAvailable is whether the build and CPU have the vector activation
// kernels.
var actSIMDAvailable = actSIMD

// SetActSIMD selects the vector Sigmoid, SiLU and GELU kernels (where
// available) or the Go ones, for bench_test.go, and reports whether the
// vector ones are now on.
func SetActSIMD(on bool) bool {
	actSIMD = on && actSIMDAvailable
	return actSIMD
}
