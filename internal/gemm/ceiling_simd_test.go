//go:build goexperiment.simd && amd64

package gemm

import (
	"simd/archsimd"
	"sync"
	"time"
)

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// ceilingName says which copy of the gemm-ceiling kernel ceilingGemm runs.
func ceilingName() string {
	if archsimd.X86.AVX512() {
		return "ceiling-avx512-4x32"
	}
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		return "ceiling-avx2-4x16"
	}
	return ""
}

// ceilingGemm is the kernel of ../shared/bench/gemm-ceiling (C = A*B,
// row-major, no packing, rows split over threads, kc = 256), generalised from
// n x n x n to m x n x k, the yardstick our GEMM is compared against. On CPUs
// without AVX-512 (where the original dies with SIGILL) it runs the same
// loop with Float32x8 and a 4x16 tile, the AVX2 analogue.
func ceilingGemm(a, b, c []float32, m, n, k, threads int) {
	if archsimd.X86.AVX512() {
		ceiling512(a, b, c, m, n, k, threads)
	} else {
		ceiling256(a, b, c, m, n, k, threads)
	}
}

func ceiling512(a, b, c []float32, m, n, k, threads int) {
	const kc = 256
	for i := range c {
		c[i] = 0
	}
	var wg sync.WaitGroup
	rowsPer := (m/4 + threads - 1) / threads * 4
	for t := 0; t < threads; t++ {
		r0, r1 := t*rowsPer, min(m, (t+1)*rowsPer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k0 := 0; k0 < k; k0 += kc {
				k1 := min(k, k0+kc)
				for j := 0; j+32 <= n; j += 32 {
					for i := r0; i+4 <= r1; i += 4 {
						c00 := archsimd.LoadFloat32x16Slice(c[i*n+j:])
						c01 := archsimd.LoadFloat32x16Slice(c[i*n+j+16:])
						c10 := archsimd.LoadFloat32x16Slice(c[(i+1)*n+j:])
						c11 := archsimd.LoadFloat32x16Slice(c[(i+1)*n+j+16:])
						c20 := archsimd.LoadFloat32x16Slice(c[(i+2)*n+j:])
						c21 := archsimd.LoadFloat32x16Slice(c[(i+2)*n+j+16:])
						c30 := archsimd.LoadFloat32x16Slice(c[(i+3)*n+j:])
						c31 := archsimd.LoadFloat32x16Slice(c[(i+3)*n+j+16:])
						for p := k0; p < k1; p++ {
							b0 := archsimd.LoadFloat32x16Slice(b[p*n+j:])
							b1 := archsimd.LoadFloat32x16Slice(b[p*n+j+16:])
							a0 := archsimd.BroadcastFloat32x16(a[i*k+p])
							c00 = a0.MulAdd(b0, c00)
							c01 = a0.MulAdd(b1, c01)
							a1 := archsimd.BroadcastFloat32x16(a[(i+1)*k+p])
							c10 = a1.MulAdd(b0, c10)
							c11 = a1.MulAdd(b1, c11)
							a2 := archsimd.BroadcastFloat32x16(a[(i+2)*k+p])
							c20 = a2.MulAdd(b0, c20)
							c21 = a2.MulAdd(b1, c21)
							a3 := archsimd.BroadcastFloat32x16(a[(i+3)*k+p])
							c30 = a3.MulAdd(b0, c30)
							c31 = a3.MulAdd(b1, c31)
						}
						c00.StoreSlice(c[i*n+j:])
						c01.StoreSlice(c[i*n+j+16:])
						c10.StoreSlice(c[(i+1)*n+j:])
						c11.StoreSlice(c[(i+1)*n+j+16:])
						c20.StoreSlice(c[(i+2)*n+j:])
						c21.StoreSlice(c[(i+2)*n+j+16:])
						c30.StoreSlice(c[(i+3)*n+j:])
						c31.StoreSlice(c[(i+3)*n+j+16:])
					}
				}
			}
		}()
	}
	wg.Wait()
}

func ceiling256(a, b, c []float32, m, n, k, threads int) {
	const kc = 256
	for i := range c {
		c[i] = 0
	}
	var wg sync.WaitGroup
	rowsPer := (m/4 + threads - 1) / threads * 4
	for t := 0; t < threads; t++ {
		r0, r1 := t*rowsPer, min(m, (t+1)*rowsPer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k0 := 0; k0 < k; k0 += kc {
				k1 := min(k, k0+kc)
				for j := 0; j+16 <= n; j += 16 {
					for i := r0; i+4 <= r1; i += 4 {
						c00 := archsimd.LoadFloat32x8Slice(c[i*n+j:])
						c01 := archsimd.LoadFloat32x8Slice(c[i*n+j+8:])
						c10 := archsimd.LoadFloat32x8Slice(c[(i+1)*n+j:])
						c11 := archsimd.LoadFloat32x8Slice(c[(i+1)*n+j+8:])
						c20 := archsimd.LoadFloat32x8Slice(c[(i+2)*n+j:])
						c21 := archsimd.LoadFloat32x8Slice(c[(i+2)*n+j+8:])
						c30 := archsimd.LoadFloat32x8Slice(c[(i+3)*n+j:])
						c31 := archsimd.LoadFloat32x8Slice(c[(i+3)*n+j+8:])
						for p := k0; p < k1; p++ {
							b0 := archsimd.LoadFloat32x8Slice(b[p*n+j:])
							b1 := archsimd.LoadFloat32x8Slice(b[p*n+j+8:])
							a0 := archsimd.BroadcastFloat32x8(a[i*k+p])
							c00 = a0.MulAdd(b0, c00)
							c01 = a0.MulAdd(b1, c01)
							a1 := archsimd.BroadcastFloat32x8(a[(i+1)*k+p])
							c10 = a1.MulAdd(b0, c10)
							c11 = a1.MulAdd(b1, c11)
							a2 := archsimd.BroadcastFloat32x8(a[(i+2)*k+p])
							c20 = a2.MulAdd(b0, c20)
							c21 = a2.MulAdd(b1, c21)
							a3 := archsimd.BroadcastFloat32x8(a[(i+3)*k+p])
							c30 = a3.MulAdd(b0, c30)
							c31 = a3.MulAdd(b1, c31)
						}
						c00.StoreSlice(c[i*n+j:])
						c01.StoreSlice(c[i*n+j+8:])
						c10.StoreSlice(c[(i+1)*n+j:])
						c11.StoreSlice(c[(i+1)*n+j+8:])
						c20.StoreSlice(c[(i+2)*n+j:])
						c21.StoreSlice(c[(i+2)*n+j+8:])
						c30.StoreSlice(c[(i+3)*n+j:])
						c31.StoreSlice(c[(i+3)*n+j+8:])
					}
				}
			}
		}()
	}
	wg.Wait()
}

// fmaPeak runs independent FMA chains (accumulating in place, no memory
// traffic) on each of threads goroutines and returns GFLOP/s: the arithmetic
// peak of the machine for the widest vectors this CPU has, which no GEMM can
// exceed.
func fmaPeak(threads int) float64 {
	const iters = 1 << 20
	var wg sync.WaitGroup
	t0 := nowSeconds()
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if archsimd.X86.AVX512() {
				peakSink512 = fmaChains512(iters)
			} else {
				peakSink256 = fmaChains256(iters)
			}
		}()
	}
	wg.Wait()
	lanes := 8.0
	if archsimd.X86.AVX512() {
		lanes = 16
	}
	return float64(threads) * iters * 10 * 2 * lanes / (nowSeconds() - t0) / 1e9
}

var (
	peakSink256 archsimd.Float32x8
	peakSink512 archsimd.Float32x16
)

func fmaChains256(n int) archsimd.Float32x8 {
	x := archsimd.BroadcastFloat32x8(1e-7)
	y := archsimd.BroadcastFloat32x8(0.999)
	var c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 archsimd.Float32x8
	for range n {
		c0 = c0.MulAdd(y, x)
		c1 = c1.MulAdd(y, x)
		c2 = c2.MulAdd(y, x)
		c3 = c3.MulAdd(y, x)
		c4 = c4.MulAdd(y, x)
		c5 = c5.MulAdd(y, x)
		c6 = c6.MulAdd(y, x)
		c7 = c7.MulAdd(y, x)
		c8 = c8.MulAdd(y, x)
		c9 = c9.MulAdd(y, x)
	}
	return c0.Add(c1).Add(c2).Add(c3).Add(c4).Add(c5).Add(c6).Add(c7).Add(c8).Add(c9)
}

func fmaChains512(n int) archsimd.Float32x16 {
	x := archsimd.BroadcastFloat32x16(1e-7)
	y := archsimd.BroadcastFloat32x16(0.999)
	var c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 archsimd.Float32x16
	for range n {
		c0 = c0.MulAdd(y, x)
		c1 = c1.MulAdd(y, x)
		c2 = c2.MulAdd(y, x)
		c3 = c3.MulAdd(y, x)
		c4 = c4.MulAdd(y, x)
		c5 = c5.MulAdd(y, x)
		c6 = c6.MulAdd(y, x)
		c7 = c7.MulAdd(y, x)
		c8 = c8.MulAdd(y, x)
		c9 = c9.MulAdd(y, x)
	}
	return c0.Add(c1).Add(c2).Add(c3).Add(c4).Add(c5).Add(c6).Add(c7).Add(c8).Add(c9)
}
