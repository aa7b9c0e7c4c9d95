//go:build goexperiment.simd && amd64

package gemm

import (
	"simd/archsimd"
	"unsafe"
)

// simdPaths returns the SIMD micro-kernels this CPU can run, fastest first.
func simdPaths() []*path {
	var ps []*path
	if archsimd.X86.AVX512() {
		ps = append(ps, avx512Path)
	}
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		ps = append(ps, avx2Path)
	}
	return ps
}

// avx2Path keeps a 6x16 tile in 12 of the 16 ymm registers; two hold the B
// row and one the broadcast A element (the classic Haswell/Zen tile: 12 FMAs
// per 2 B loads and 6 broadcasts).
var avx2Path = &path{name: "avx2", mr: 6, nr: 16, micro: microAVX2x6x16}

// avx512Path keeps an 8x32 tile in 16 of the 32 zmm registers.
var avx512Path = &path{name: "avx512", mr: 8, nr: 32, micro: microAVX512x8x32}

func ld8(p unsafe.Pointer, off uintptr) archsimd.Float32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, off)))
}

func bc8(p unsafe.Pointer, off uintptr) archsimd.Float32x8 {
	return archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p, off)))
}

// row8 writes 16 floats of one tile row with the beta rule of path.micro.
func row8(c unsafe.Pointer, beta float32, bv archsimd.Float32x8, x0, x1 archsimd.Float32x8) {
	p0 := (*[8]float32)(c)
	p1 := (*[8]float32)(unsafe.Add(c, 32))
	switch beta {
	case 0:
	case 1:
		x0 = x0.Add(archsimd.LoadFloat32x8(p0))
		x1 = x1.Add(archsimd.LoadFloat32x8(p1))
	default:
		x0 = bv.MulAdd(archsimd.LoadFloat32x8(p0), x0)
		x1 = bv.MulAdd(archsimd.LoadFloat32x8(p1), x1)
	}
	x0.Store(p0)
	x1.Store(p1)
}

func microAVX2x6x16(kc int, a, b, c unsafe.Pointer, ldc int, beta float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 archsimd.Float32x8
	for ; kc > 0; kc-- {
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
		x = bc8(a, 16)
		c40 = x.MulAdd(b0, c40)
		c41 = x.MulAdd(b1, c41)
		x = bc8(a, 20)
		c50 = x.MulAdd(b0, c50)
		c51 = x.MulAdd(b1, c51)
		a = unsafe.Add(a, 24)
		b = unsafe.Add(b, 64)
	}
	bv := archsimd.BroadcastFloat32x8(beta)
	s := uintptr(ldc) * 4
	row8(c, beta, bv, c00, c01)
	row8(unsafe.Add(c, s), beta, bv, c10, c11)
	row8(unsafe.Add(c, 2*s), beta, bv, c20, c21)
	row8(unsafe.Add(c, 3*s), beta, bv, c30, c31)
	row8(unsafe.Add(c, 4*s), beta, bv, c40, c41)
	row8(unsafe.Add(c, 5*s), beta, bv, c50, c51)
}

func ld16(p unsafe.Pointer, off uintptr) archsimd.Float32x16 {
	return archsimd.LoadFloat32x16((*[16]float32)(unsafe.Add(p, off)))
}

func bc16(p unsafe.Pointer, off uintptr) archsimd.Float32x16 {
	return archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p, off)))
}

// row16 writes 32 floats of one tile row with the beta rule of path.micro.
func row16(c unsafe.Pointer, beta float32, bv archsimd.Float32x16, x0, x1 archsimd.Float32x16) {
	p0 := (*[16]float32)(c)
	p1 := (*[16]float32)(unsafe.Add(c, 64))
	switch beta {
	case 0:
	case 1:
		x0 = x0.Add(archsimd.LoadFloat32x16(p0))
		x1 = x1.Add(archsimd.LoadFloat32x16(p1))
	default:
		x0 = bv.MulAdd(archsimd.LoadFloat32x16(p0), x0)
		x1 = bv.MulAdd(archsimd.LoadFloat32x16(p1), x1)
	}
	x0.Store(p0)
	x1.Store(p1)
}

func microAVX512x8x32(kc int, a, b, c unsafe.Pointer, ldc int, beta float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x16
	var c40, c41, c50, c51, c60, c61, c70, c71 archsimd.Float32x16
	for ; kc > 0; kc-- {
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
		a = unsafe.Add(a, 32)
		b = unsafe.Add(b, 128)
	}
	bv := archsimd.BroadcastFloat32x16(beta)
	s := uintptr(ldc) * 4
	row16(c, beta, bv, c00, c01)
	row16(unsafe.Add(c, s), beta, bv, c10, c11)
	row16(unsafe.Add(c, 2*s), beta, bv, c20, c21)
	row16(unsafe.Add(c, 3*s), beta, bv, c30, c31)
	row16(unsafe.Add(c, 4*s), beta, bv, c40, c41)
	row16(unsafe.Add(c, 5*s), beta, bv, c50, c51)
	row16(unsafe.Add(c, 6*s), beta, bv, c60, c61)
	row16(unsafe.Add(c, 7*s), beta, bv, c70, c71)
}
