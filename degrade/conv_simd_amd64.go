//go:build goexperiment.simd && amd64

package degrade

import (
	"simd/archsimd"
	"unsafe"
)

// simdConv is true when the AVX2 row kernels can run.
var simdConv = archsimd.X86.AVX2()

func ld8(p unsafe.Pointer, i int) archsimd.Float32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, 4*i)))
}

func bc8(p unsafe.Pointer, i int) archsimd.Float32x8 {
	return archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p, 4*i)))
}

// correlateRows computes output rows y and y+1 (out0, out1; see
// correlateRowGo) from the padded rows starting at p, 32 pixels per block:
// each input vector is loaded once and feeds both rows, and the eight
// accumulators stay in registers over all taps. Products are rounded
// before each add (no FMA) and taps are summed in the reference order, so
// the bits equal correlateRowGo's. out1 may be nil for a lone last row.
func correlateRows(out0, out1, p []float32, pw int, k []float32, kh, kw int) {
	w := len(out0)
	rows := 1
	if out1 != nil {
		rows = 2
	}
	x := 0
	// The last load reads index (kh+rows-2)*pw + (w-1) + (kw-1).
	if simdConv && len(p) >= (kh+rows-2)*pw+w+kw-1 && len(k) >= kh*kw {
		base := unsafe.Pointer(unsafe.SliceData(p))
		kp := unsafe.Pointer(unsafe.SliceData(k))
		for ; x+32 <= w; x += 32 {
			var a0, a1, a2, a3, b0, b1, b2, b3 archsimd.Float32x8
			for r := range kh + rows - 1 {
				row := unsafe.Add(base, 4*(r*pw+x))
				top, bot := r < kh, rows == 2 && r >= 1
				k0 := unsafe.Add(kp, 4*r*kw)
				k1 := unsafe.Add(kp, 4*(r-1)*kw)
				for j := range kw {
					s := unsafe.Add(row, 4*j)
					v0, v1, v2, v3 := ld8(s, 0), ld8(s, 8), ld8(s, 16), ld8(s, 24)
					if top {
						c := bc8(k0, j)
						a0 = a0.Add(c.Mul(v0))
						a1 = a1.Add(c.Mul(v1))
						a2 = a2.Add(c.Mul(v2))
						a3 = a3.Add(c.Mul(v3))
					}
					if bot {
						c := bc8(k1, j)
						b0 = b0.Add(c.Mul(v0))
						b1 = b1.Add(c.Mul(v1))
						b2 = b2.Add(c.Mul(v2))
						b3 = b3.Add(c.Mul(v3))
					}
				}
			}
			o := out0[x : x+32]
			a0.StoreSlice(o[0:8])
			a1.StoreSlice(o[8:16])
			a2.StoreSlice(o[16:24])
			a3.StoreSlice(o[24:32])
			if rows == 2 {
				o = out1[x : x+32]
				b0.StoreSlice(o[0:8])
				b1.StoreSlice(o[8:16])
				b2.StoreSlice(o[16:24])
				b3.StoreSlice(o[24:32])
			}
		}
		for ; x+8 <= w; x += 8 {
			for rr := range rows {
				var a0 archsimd.Float32x8
				for i := range kh {
					row := unsafe.Add(base, 4*((i+rr)*pw+x))
					ki := unsafe.Add(kp, 4*i*kw)
					for j := range kw {
						a0 = a0.Add(bc8(ki, j).Mul(ld8(row, j)))
					}
				}
				if rr == 0 {
					a0.StoreSlice(out0[x : x+8])
				} else {
					a0.StoreSlice(out1[x : x+8])
				}
			}
		}
	}
	if x < w {
		correlateRowGo(out0[x:], p[x:], pw, k, kh, kw)
		if out1 != nil {
			correlateRowGo(out1[x:], p[pw+x:], pw, k, kh, kw)
		}
	}
}
