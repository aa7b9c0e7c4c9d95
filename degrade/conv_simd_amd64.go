//go:build goexperiment.simd && amd64

package degrade

import "simd/archsimd"

// simdConv is true when the AVX2 row kernel can run.
var simdConv = archsimd.X86.AVX2()

// correlateRow computes one output row (see correlateRowGo) eight pixels
// per vector, 32 per block so the four accumulators stay in registers over
// all taps. It multiplies then adds (no FMA) in the reference tap order, so
// it returns the same bits as correlateRowGo.
func correlateRow(out, p []float32, pw int, k []float32, kh, kw int) {
	w := len(out)
	x := 0
	if simdConv {
		for ; x+32 <= w; x += 32 {
			var a0, a1, a2, a3 archsimd.Float32x8
			for i := range kh {
				row := p[i*pw+x:]
				for j, kv := range k[i*kw : (i+1)*kw] {
					kb := archsimd.BroadcastFloat32x8(kv)
					s := row[j : j+32]
					a0 = a0.Add(kb.Mul(archsimd.LoadFloat32x8Slice(s[0:8])))
					a1 = a1.Add(kb.Mul(archsimd.LoadFloat32x8Slice(s[8:16])))
					a2 = a2.Add(kb.Mul(archsimd.LoadFloat32x8Slice(s[16:24])))
					a3 = a3.Add(kb.Mul(archsimd.LoadFloat32x8Slice(s[24:32])))
				}
			}
			o := out[x : x+32]
			a0.StoreSlice(o[0:8])
			a1.StoreSlice(o[8:16])
			a2.StoreSlice(o[16:24])
			a3.StoreSlice(o[24:32])
		}
		for ; x+8 <= w; x += 8 {
			var a0 archsimd.Float32x8
			for i := range kh {
				row := p[i*pw+x:]
				for j, kv := range k[i*kw : (i+1)*kw] {
					a0 = a0.Add(archsimd.BroadcastFloat32x8(kv).Mul(archsimd.LoadFloat32x8Slice(row[j : j+8])))
				}
			}
			a0.StoreSlice(out[x : x+8])
		}
	}
	if x < w {
		correlateRowGo(out[x:], p[x:], pw, k, kh, kw)
	}
}
