//go:build amd64

#include "textflag.h"

// Softmax helpers of the attention kernels, 8 floats per AVX2 instruction.
// The exponential is flashExp's: e^x = 2^k * p(r), k = round(x / ln 2),
// r = x - k ln 2, p a degree-6 Taylor polynomial; 2^k is built in the
// exponent bits. Arguments below -87.33 are clamped (giving ~1e-38, not 0);
// arguments must stay below 88 (they are <= 0 in a softmax).

// func expShiftSumAVX2(x *float32, n int, shift float32) float32
// x[i] = e^(x[i]-shift) for i < n (n a multiple of 8); returns the sum.
TEXT ·expShiftSumAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y15
	MOVL $0x3fb8aa3b, AX // log2(e)
	MOVL AX, X14
	VBROADCASTSS X14, Y14
	MOVL $0x4b40007f, AX // 1.5*2^23 + 127: rounds, and leaves k+127 in the low bits
	MOVL AX, X13
	VBROADCASTSS X13, Y13
	MOVL $0x3f318000, AX // ln2 high part 0.693359375
	MOVL AX, X12
	VBROADCASTSS X12, Y12
	MOVL $0xb95e8083, AX // ln2 low part -2.12194440e-4
	MOVL AX, X11
	VBROADCASTSS X11, Y11
	MOVL $0x3ab60b61, AX // 1/720
	MOVL AX, X10
	VBROADCASTSS X10, Y10
	MOVL $0x3c088889, AX // 1/120
	MOVL AX, X9
	VBROADCASTSS X9, Y9
	MOVL $0x3d2aaaab, AX // 1/24
	MOVL AX, X8
	VBROADCASTSS X8, Y8
	MOVL $0x3e2aaaab, AX // 1/6
	MOVL AX, X7
	VBROADCASTSS X7, Y7
	MOVL $0x3f000000, AX // 1/2
	MOVL AX, X6
	VBROADCASTSS X6, Y6
	MOVL $0x3f800000, AX // 1
	MOVL AX, X5
	VBROADCASTSS X5, Y5
	MOVL $0xc2aea8f6, AX // -87.33
	MOVL AX, X4
	VBROADCASTSS X4, Y4
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
