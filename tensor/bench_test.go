package tensor_test

// Benchmarks of the heavy ops, reported against the GEMM measured in the same
// run (the machine is shared; ratios are what carries over):
//
//	GOEXPERIMENT=simd go test -run '^$' -bench 'Conv2d|Attention' -benchtime 3x ./tensor/

import (
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"tsdsr/internal/gemm"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

var gemmRate = sync.OnceValue(func() float64 {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := tensortest.Rand(r, n, n), tensortest.Rand(r, n, n), tensor.New(n, n)
	best := time.Duration(1 << 62)
	for range 3 {
		t0 := time.Now()
		gemm.Sgemm(false, false, n, n, n, 1, a.Data, n, b.Data, n, 0, c.Data, n)
		best = min(best, time.Since(t0))
	}
	return 2 * n * n * n / best.Seconds() / 1e9
})

// reportRate reports GFLOP/s of flops per iteration and its ratio to the
// 1024^3 GEMM rate measured in this run.
func reportRate(b *testing.B, flops float64) {
	g := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(g, "GFLOP/s")
	b.ReportMetric(g/gemmRate(), "of_gemm")
	b.ReportMetric(gemmRate(), "gemm_GFLOP/s")
}

// BenchmarkConv2d is the TAESD-sized 3x3 64->64 convolution on 1x64x256x256.
func BenchmarkConv2d(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	x, w, bias := tensortest.Rand(r, 1, 64, 256, 256), tensortest.Rand(r, 64, 64, 3, 3), tensortest.Rand(r, 64)
	flops := 2.0 * 64 * 64 * 9 * 256 * 256
	gemmRate()
	b.Run("forward", func(b *testing.B) {
		defer tensor.NoGrad()()
		for b.Loop() {
			tensor.Conv2d(x, w, bias, 1, 1)
		}
		reportRate(b, flops)
	})
	b.Run("forward+backward", func(b *testing.B) {
		for _, p := range []*tensor.Tensor{x, w, bias} {
			p.SetRequiresGrad(true)
		}
		g := tensor.Full(1, 1, 64, 256, 256)
		for b.Loop() {
			for _, p := range []*tensor.Tensor{x, w, bias} {
				p.ZeroGrad()
			}
			tensor.Conv2d(x, w, bias, 1, 1).BackwardWith(g)
		}
		reportRate(b, 3*flops) // forward, dW and dx are one GEMM each
	})
}

// BenchmarkAttention is one 4096-token self-attention of width 256 with 4
// heads. peak_heap_MB is the largest heap growth seen while it runs (garbage
// not yet collected included); B/op bounds it from above. A materialised
// score matrix alone would take 4*4096*4096*4 bytes (268 MB).
func BenchmarkAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const l, d, heads = 4096, 256, 4
	q, k, v := tensortest.Rand(r, 1, l, d), tensortest.Rand(r, 1, l, d), tensortest.Rand(r, 1, l, d)
	flops := 4.0 * l * l * d // Q K^T and P V
	gemmRate()
	b.Run("forward", func(b *testing.B) {
		defer tensor.NoGrad()()
		b.ReportAllocs()
		peak := peakHeap(func() {
			for b.Loop() {
				tensor.Attention(q, k, v, heads)
			}
		})
		reportRate(b, flops)
		b.ReportMetric(peak/1e6, "peak_heap_MB")
	})
	b.Run("forward+backward", func(b *testing.B) {
		for _, p := range []*tensor.Tensor{q, k, v} {
			p.SetRequiresGrad(true)
		}
		g := tensortest.Rand(r, 1, l, d)
		b.ReportAllocs()
		peak := peakHeap(func() {
			for b.Loop() {
				for _, p := range []*tensor.Tensor{q, k, v} {
					p.ZeroGrad()
				}
				tensor.Attention(q, k, v, heads).BackwardWith(g)
			}
		})
		reportRate(b, 3.5*flops) // backward: 5 GEMMs of the forward's size
		b.ReportMetric(peak/1e6, "peak_heap_MB")
	})
}

// peakHeap runs f while sampling the heap (live and not yet swept objects)
// every millisecond through runtime/metrics, which does not stop the world,
// and returns the largest growth over the heap in use when f started.
func peakHeap(f func()) float64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	if peak < base {
		return 0
	}
	return float64(peak - base)
}
