//go:build amd64

#include "textflag.h"

// Micro-kernels in Go assembly: C[mr x nr] = acc or beta*C + acc, where acc
// is the product of a packed kc x mr A panel and a packed kc x nr B panel.
// Arguments (ABI0): kc+0, a+8, b+16, ldb+24 (B row advance per k step, in
// floats: nr for a packed panel), c+32, ldc+40 (in floats), beta+48.
// Every accumulator stays in a register for the whole k loop and the FMAs
// accumulate in place (VFMADD231PS). Equivalent kernels written with
// simd/archsimd (kernel_simd_amd64.go) run 2-4x slower: the compiler only
// emits the 213 FMA form, whose result overwrites a multiplicand, so every
// accumulator is copied each k step and registers spill.

// func microAVX2(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32)
// 6x16 tile: Y4..Y15 accumulate, Y0/Y1 hold the B row, Y2/Y3 broadcasts.
TEXT ·microAVX2(SB), NOSPLIT, $0-52
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R9
	SHLQ $2, R9
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	TESTQ CX, CX
	JLE avx2done

avx2loop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VBROADCASTSS (SI), Y2
	VBROADCASTSS 4(SI), Y3
	VFMADD231PS Y0, Y2, Y4
	VFMADD231PS Y1, Y2, Y5
	VFMADD231PS Y0, Y3, Y6
	VFMADD231PS Y1, Y3, Y7
	VBROADCASTSS 8(SI), Y2
	VBROADCASTSS 12(SI), Y3
	VFMADD231PS Y0, Y2, Y8
	VFMADD231PS Y1, Y2, Y9
	VFMADD231PS Y0, Y3, Y10
	VFMADD231PS Y1, Y3, Y11
	VBROADCASTSS 16(SI), Y2
	VBROADCASTSS 20(SI), Y3
	VFMADD231PS Y0, Y2, Y12
	VFMADD231PS Y1, Y2, Y13
	VFMADD231PS Y0, Y3, Y14
	VFMADD231PS Y1, Y3, Y15
	ADDQ $24, SI
	ADDQ R9, DI
	DECQ CX
	JNZ avx2loop

avx2done:
	// beta == 0 (either sign) stores without reading C.
	MOVL beta+48(FP), AX
	ANDL $0x7fffffff, AX
	JZ avx2store
	VBROADCASTSS beta+48(FP), Y0

#define ROW8BETA(r0, r1) \
	VFMADD231PS (DX), Y0, r0; \
	VFMADD231PS 32(DX), Y0, r1; \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ R8, DX

	ROW8BETA(Y4, Y5)
	ROW8BETA(Y6, Y7)
	ROW8BETA(Y8, Y9)
	ROW8BETA(Y10, Y11)
	ROW8BETA(Y12, Y13)
	ROW8BETA(Y14, Y15)
	VZEROUPPER
	RET

#define ROW8(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 32(DX); \
	ADDQ R8, DX

avx2store:
	ROW8(Y4, Y5)
	ROW8(Y6, Y7)
	ROW8(Y8, Y9)
	ROW8(Y10, Y11)
	ROW8(Y12, Y13)
	ROW8(Y14, Y15)
	VZEROUPPER
	RET

// func microAVX512(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32)
// 8x32 tile: Z16..Z31 accumulate, Z0/Z1 hold the B row; A elements are
// broadcast straight from memory by the FMA ({1to16} embedded broadcast).
TEXT ·microAVX512(SB), NOSPLIT, $0-52
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ ldb+24(FP), R9
	SHLQ $2, R9
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31
	TESTQ CX, CX
	JLE avx512done

avx512loop:
	VMOVUPS (DI), Z0
	VMOVUPS 64(DI), Z1
	VFMADD231PS.BCST (SI), Z0, Z16
	VFMADD231PS.BCST (SI), Z1, Z17
	VFMADD231PS.BCST 4(SI), Z0, Z18
	VFMADD231PS.BCST 4(SI), Z1, Z19
	VFMADD231PS.BCST 8(SI), Z0, Z20
	VFMADD231PS.BCST 8(SI), Z1, Z21
	VFMADD231PS.BCST 12(SI), Z0, Z22
	VFMADD231PS.BCST 12(SI), Z1, Z23
	VFMADD231PS.BCST 16(SI), Z0, Z24
	VFMADD231PS.BCST 16(SI), Z1, Z25
	VFMADD231PS.BCST 20(SI), Z0, Z26
	VFMADD231PS.BCST 20(SI), Z1, Z27
	VFMADD231PS.BCST 24(SI), Z0, Z28
	VFMADD231PS.BCST 24(SI), Z1, Z29
	VFMADD231PS.BCST 28(SI), Z0, Z30
	VFMADD231PS.BCST 28(SI), Z1, Z31
	ADDQ $32, SI
	ADDQ R9, DI
	DECQ CX
	JNZ avx512loop

avx512done:
	MOVL beta+48(FP), AX
	ANDL $0x7fffffff, AX
	JZ avx512store
	VBROADCASTSS beta+48(FP), Z0

#define ROW16BETA(r0, r1) \
	VFMADD231PS (DX), Z0, r0; \
	VFMADD231PS 64(DX), Z0, r1; \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 64(DX); \
	ADDQ R8, DX

	ROW16BETA(Z16, Z17)
	ROW16BETA(Z18, Z19)
	ROW16BETA(Z20, Z21)
	ROW16BETA(Z22, Z23)
	ROW16BETA(Z24, Z25)
	ROW16BETA(Z26, Z27)
	ROW16BETA(Z28, Z29)
	ROW16BETA(Z30, Z31)
	VZEROUPPER
	RET

#define ROW16(r0, r1) \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 64(DX); \
	ADDQ R8, DX

avx512store:
	ROW16(Z16, Z17)
	ROW16(Z18, Z19)
	ROW16(Z20, Z21)
	ROW16(Z22, Z23)
	ROW16(Z24, Z25)
	ROW16(Z26, Z27)
	ROW16(Z28, Z29)
	ROW16(Z30, Z31)
	VZEROUPPER
	RET

// func transpose8x8(dst unsafe.Pointer, lddst int, src unsafe.Pointer, ldsrc int)
// Writes the transpose of the 8x8 block at src (row stride ldsrc floats)
// to dst (row stride lddst floats). AVX only.
TEXT ·transpose8x8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ lddst+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ ldsrc+24(FP), R9
	SHLQ $2, R9
	VMOVUPS (SI), Y0
	ADDQ R9, SI
	VMOVUPS (SI), Y1
	ADDQ R9, SI
	VMOVUPS (SI), Y2
	ADDQ R9, SI
	VMOVUPS (SI), Y3
	ADDQ R9, SI
	VMOVUPS (SI), Y4
	ADDQ R9, SI
	VMOVUPS (SI), Y5
	ADDQ R9, SI
	VMOVUPS (SI), Y6
	ADDQ R9, SI
	VMOVUPS (SI), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS Y8, (DI)
	ADDQ R8, DI
	VMOVUPS Y9, (DI)
	ADDQ R8, DI
	VMOVUPS Y10, (DI)
	ADDQ R8, DI
	VMOVUPS Y11, (DI)
	ADDQ R8, DI
	VMOVUPS Y12, (DI)
	ADDQ R8, DI
	VMOVUPS Y13, (DI)
	ADDQ R8, DI
	VMOVUPS Y14, (DI)
	ADDQ R8, DI
	VMOVUPS Y15, (DI)
	VZEROUPPER
	RET
