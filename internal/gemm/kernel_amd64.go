//go:build amd64

package gemm

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// asmPaths returns the assembly micro-kernels this CPU (and OS) supports,
// fastest first. They need no GOEXPERIMENT, so the default build is fast too.
func asmPaths() []*path {
	var ps []*path
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ {
		ps = append(ps, &path{name: "avx512", mr: 8, nr: 32, micro: microAVX512})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ps = append(ps, &path{name: "avx2", mr: 6, nr: 16, micro: microAVX2})
	}
	return ps
}

func init() {
	if cpu.X86.HasAVX {
		transpose8 = transpose8x8
	}
}

// transpose8x8 writes the transpose of the 8x8 block at src (row stride ldsrc
// floats) to dst (row stride lddst floats).
//
//go:noescape
func transpose8x8(dst unsafe.Pointer, lddst int, src unsafe.Pointer, ldsrc int)

// microAVX2 is the 6x16 AVX2+FMA micro-kernel (see path.micro).
//
//go:noescape
func microAVX2(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32)

// microAVX512 is the 8x32 AVX-512F micro-kernel (see path.micro).
//
//go:noescape
func microAVX512(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32)
