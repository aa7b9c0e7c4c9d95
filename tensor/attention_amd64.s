//go:build amd64

#include "textflag.h"

// Softmax helpers of the attention kernels, 8 floats per AVX2 instruction.
// The exponential is flashExp's: e^x = 2^k * p(r), k = round(x / ln 2),
// r = x - k ln 2, p a degree-6 Taylor polynomial; 2^k is built in the
// exponent bits. Arguments below -87.33 are clamped (giving ~1e-38, not 0);
// arguments must stay below 88 (they are <= 0 in a softmax).

// Constants of the exponential, broadcast from memory (moving them through
// general registers would mix legacy SSE moves into AVX code).
DATA expconst<>+0(SB)/4, $0x3fb8aa3b
DATA expconst<>+4(SB)/4, $0x4b40007f
DATA expconst<>+8(SB)/4, $0x3f318000
DATA expconst<>+12(SB)/4, $0xb95e8083
DATA expconst<>+16(SB)/4, $0x3ab60b61
DATA expconst<>+20(SB)/4, $0x3c088889
DATA expconst<>+24(SB)/4, $0x3d2aaaab
DATA expconst<>+28(SB)/4, $0x3e2aaaab
DATA expconst<>+32(SB)/4, $0x3f000000
DATA expconst<>+36(SB)/4, $0x3f800000
DATA expconst<>+40(SB)/4, $0xc2aea8f6
GLOBL expconst<>(SB), RODATA|NOPTR, $44

// func expShiftSumAVX2(x *float32, n int, shift float32) float32
// x[i] = e^(x[i]-shift) for i < n (n a multiple of 8); returns the sum.
TEXT ·expShiftSumAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y15
	VBROADCASTSS expconst<>+0(SB), Y14 // log2(e)
	VBROADCASTSS expconst<>+4(SB), Y13 // 1.5*2^23 + 127: rounds, and leaves k+127 in the low bits
	VBROADCASTSS expconst<>+8(SB), Y12 // ln2 high part 0.693359375
	VBROADCASTSS expconst<>+12(SB), Y11 // ln2 low part -2.12194440e-4
	VBROADCASTSS expconst<>+16(SB), Y10 // 1/720
	VBROADCASTSS expconst<>+20(SB), Y9 // 1/120
	VBROADCASTSS expconst<>+24(SB), Y8 // 1/24
	VBROADCASTSS expconst<>+28(SB), Y7 // 1/6
	VBROADCASTSS expconst<>+32(SB), Y6 // 1/2
	VBROADCASTSS expconst<>+36(SB), Y5 // 1
	VBROADCASTSS expconst<>+40(SB), Y4 // -87.33
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ expdone

exploop:
	VMOVUPS (SI), Y1
	VSUBPS Y15, Y1, Y1          // x - shift
	VMAXPS Y4, Y1, Y1           // clamp below
	VMOVAPS Y13, Y2
	VFMADD231PS Y14, Y1, Y2     // z = x*log2e + magic
	VSUBPS Y13, Y2, Y3          // kf = z - magic = round(x/ln2)
	VFNMADD231PS Y12, Y3, Y1    // r = x - kf*ln2hi
	VFNMADD231PS Y11, Y3, Y1    //     - kf*ln2lo
	VPSLLD $23, Y2, Y2          // 2^k: (k+127) << 23, the magic's high bits shift out
	VMOVAPS Y10, Y3
	VFMADD213PS Y9, Y1, Y3      // p = p*r + c
	VFMADD213PS Y8, Y1, Y3
	VFMADD213PS Y7, Y1, Y3
	VFMADD213PS Y6, Y1, Y3
	VFMADD213PS Y5, Y1, Y3
	VFMADD213PS Y5, Y1, Y3
	VMULPS Y2, Y3, Y3           // p * 2^k
	VMOVUPS Y3, (SI)
	VADDPS Y3, Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ exploop

expdone:
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VADDPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func maxAVX2(x *float32, n int) float32
// The maximum of x[:n], n a positive multiple of 8.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS (SI), Y0
	SHRQ $3, CX

maxloop:
	VMAXPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ maxloop

	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET
