//go:build !amd64

package gemm

// asmPaths is empty off amd64: the micro-kernels are amd64 assembly.
func asmPaths() []*path { return nil }
