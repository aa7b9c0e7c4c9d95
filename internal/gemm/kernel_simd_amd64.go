//go:build goexperiment.simd && amd64

package gemm

import (
	"simd/archsimd"
	"unsafe"
)

// simdPaths returns the micro-kernels written with simd/archsimd that this
// CPU can run. They are kept beside the assembly kernels as a portable-Go
// reference for when the compiler's SIMD code generation catches up: today
// its FMA overwrites a multiplicand register, so every accumulator moves
// each k step and the kernels reach about half the assembly's speed.
func simdPaths() []*path {
	var ps []*path
	if archsimd.X86.AVX512() {
		ps = append(ps, &path{name: "avx512-archsimd", mr: 8, nr: 32, micro: microSimd512})
	}
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		ps = append(ps, &path{name: "avx2-archsimd", mr: 4, nr: 16, micro: microSimd256})
	}
	return ps
}

// microSimd256 is the 4x16 archsimd kernel. The k loop lives in its own
// function with no float arguments: a float32 live across the loop is
// reloaded with a legacy-SSE MOVSS, and mixing that with dirty YMM state made
// the loop 40x slower.
func microSimd256(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32) {
	var t [4 * 16]float32
	loopSimd256(kc, a, b, uintptr(ldb)*4, &t)
	finishTile(t[:], 16, 4, 16, c, ldc, beta)
}

func ld8(p unsafe.Pointer, off uintptr) archsimd.Float32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, off)))
}

func bc8(p unsafe.Pointer, off uintptr) archsimd.Float32x8 {
	return archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p, off)))
}

func loopSimd256(kc int, a0, b0 unsafe.Pointer, sb uintptr, t *[64]float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x8
	// Addresses are computed from the base for each step: advancing a
	// pointer past the last step would leave it outside its allocation,
	// which unsafe.Pointer's rules forbid (checkptr catches it).
	for p := range uintptr(kc) {
		a, b := unsafe.Add(a0, p*16), unsafe.Add(b0, p*sb)
		b0 := ld8(b, 0)
		b1 := ld8(b, 32)
		x := bc8(a, 0)
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = bc8(a, 4)
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = bc8(a, 8)
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = bc8(a, 12)
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
	}
	c00.Store((*[8]float32)(t[0:8]))
	c01.Store((*[8]float32)(t[8:16]))
	c10.Store((*[8]float32)(t[16:24]))
	c11.Store((*[8]float32)(t[24:32]))
	c20.Store((*[8]float32)(t[32:40]))
	c21.Store((*[8]float32)(t[40:48]))
	c30.Store((*[8]float32)(t[48:56]))
	c31.Store((*[8]float32)(t[56:64]))
}

// microSimd512 is the 8x32 archsimd kernel.
func microSimd512(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32) {
	var t [8 * 32]float32
	loopSimd512(kc, a, b, uintptr(ldb)*4, &t)
	finishTile(t[:], 32, 8, 32, c, ldc, beta)
}

func ld16(p unsafe.Pointer, off uintptr) archsimd.Float32x16 {
	return archsimd.LoadFloat32x16((*[16]float32)(unsafe.Add(p, off)))
}

func bc16(p unsafe.Pointer, off uintptr) archsimd.Float32x16 {
	return archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p, off)))
}

func loopSimd512(kc int, a0, b0 unsafe.Pointer, sb uintptr, t *[256]float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x16
	var c40, c41, c50, c51, c60, c61, c70, c71 archsimd.Float32x16
	for p := range uintptr(kc) {
		a, b := unsafe.Add(a0, p*32), unsafe.Add(b0, p*sb)
		b0 := ld16(b, 0)
		b1 := ld16(b, 64)
		x := bc16(a, 0)
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = bc16(a, 4)
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = bc16(a, 8)
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = bc16(a, 12)
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
		x = bc16(a, 16)
		c40 = x.MulAdd(b0, c40)
		c41 = x.MulAdd(b1, c41)
		x = bc16(a, 20)
		c50 = x.MulAdd(b0, c50)
		c51 = x.MulAdd(b1, c51)
		x = bc16(a, 24)
		c60 = x.MulAdd(b0, c60)
		c61 = x.MulAdd(b1, c61)
		x = bc16(a, 28)
		c70 = x.MulAdd(b0, c70)
		c71 = x.MulAdd(b1, c71)
	}
	for i, v := range [16]archsimd.Float32x16{c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71} {
		v.Store((*[16]float32)(t[i*16 : i*16+16]))
	}
}
