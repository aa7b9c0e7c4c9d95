package gemm

import "unsafe"

// goPath is the portable micro-kernel: a 4x4 tile of scalar accumulators,
// the most the 15 usable float registers of amd64 Go code hold without
// spilling. Still several times faster than the triple loop because packing
// makes every load sequential.
var goPath = &path{name: "go", mr: 4, nr: 4, micro: microGo4x4}

func microGo4x4(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32) {
	as := unsafe.Slice((*float32)(a), kc*4)
	bs := unsafe.Slice((*float32)(b), (kc-1)*ldb+4)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for p := 0; p < kc; p++ {
		ap := as[p*4 : p*4+4 : p*4+4]
		bp := bs[p*ldb : p*ldb+4 : p*ldb+4]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		a0 := ap[0]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		a1 := ap[1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a2 := ap[2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		a3 := ap[3]
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	cs := unsafe.Slice((*float32)(c), 3*ldc+4)
	store4(cs[0:4:4], beta, c00, c01, c02, c03)
	store4(cs[ldc:ldc+4:ldc+4], beta, c10, c11, c12, c13)
	store4(cs[2*ldc:2*ldc+4:2*ldc+4], beta, c20, c21, c22, c23)
	store4(cs[3*ldc:3*ldc+4:3*ldc+4], beta, c30, c31, c32, c33)
}

// store4 writes one row of a tile with the beta rule of path.micro.
func store4(c []float32, beta float32, v0, v1, v2, v3 float32) {
	c = c[:4]
	switch beta {
	case 0:
		c[0], c[1], c[2], c[3] = v0, v1, v2, v3
	case 1:
		c[0] += v0
		c[1] += v1
		c[2] += v2
		c[3] += v3
	default:
		c[0] = beta*c[0] + v0
		c[1] = beta*c[1] + v1
		c[2] = beta*c[2] + v2
		c[3] = beta*c[3] + v3
	}
}
