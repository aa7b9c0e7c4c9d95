//go:build unix

package tensor_test

// Benchmarks of the heavy ops against the GEMM they are built on. The machine
// is shared and its load drifts, so each iteration of an op is followed by
// one 1024^3 GEMM and the best wall times are compared (of_gemm), as well as
// the flops per second of CPU time this process got (of_gemm_cpu: blind to
// other processes, but also to threads left idle). ns/op and GFLOP/s are the
// usual means over the op's iterations.
//
//	GOEXPERIMENT=simd go test -run '^$' -bench 'Conv2d|Attention' -benchtime 5x ./tensor/

import (
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	"tsdsr/internal/gemm"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs f and returns its wall and CPU time.
func timed(f func()) (wall, cpu time.Duration) {
	t0, c0 := time.Now(), cpuTime()
	f()
	return time.Since(t0), cpuTime() - c0
}

// gemmOnce runs one 1024^3 Sgemm (2^31 flops).
var gemmOnce = func() func() {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := tensortest.Rand(r, n, n), tensortest.Rand(r, n, n), tensor.New(n, n)
	return func() { gemm.Sgemm(false, false, n, n, n, 1, a.Data, n, b.Data, n, 0, c.Data, n) }
}()

// benchRate runs op in b.Loop, interleaved with untimed GEMMs, and reports
// the op's mean GFLOP/s (flops per call), the best wall-clock GFLOP/s of op
// and GEMM and their ratio, and the ratio of their GFLOP per CPU second.
func benchRate(b *testing.B, flops float64, op func()) {
	gemmOnce() // warm the GEMM's scratch buffers
	bestOp, bestGemm := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	var cpuOp, cpuGemm time.Duration
	for b.Loop() {
		wall, cpu := timed(op)
		bestOp, cpuOp = min(bestOp, wall), cpuOp+cpu
		b.StopTimer()
		wall, cpu = timed(gemmOnce)
		bestGemm, cpuGemm = min(bestGemm, wall), cpuGemm+cpu
		b.StartTimer()
	}
	const gemmFlops = 2 * 1024 * 1024 * 1024
	gemmRate := gemmFlops / bestGemm.Seconds() / 1e9
	opRate := flops / bestOp.Seconds() / 1e9
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(opRate, "best_GFLOP/s")
	b.ReportMetric(gemmRate, "gemm_GFLOP/s")
	b.ReportMetric(opRate/gemmRate, "of_gemm")
	b.ReportMetric(flops/cpuOp.Seconds()/(gemmFlops/cpuGemm.Seconds()), "of_gemm_cpu")
}

// BenchmarkConv2d is the TAESD-sized 3x3 64->64 convolution on 1x64x256x256.
func BenchmarkConv2d(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	x, w, bias := tensortest.Rand(r, 1, 64, 256, 256), tensortest.Rand(r, 64, 64, 3, 3), tensortest.Rand(r, 64)
	flops := 2.0 * 64 * 64 * 9 * 256 * 256
	b.Run("forward", func(b *testing.B) {
		defer tensor.NoGrad()()
		benchRate(b, flops, func() { tensor.Conv2d(x, w, bias, 1, 1) })
	})
	b.Run("forward+backward", func(b *testing.B) {
		for _, p := range []*tensor.Tensor{x, w, bias} {
			p.SetRequiresGrad(true)
		}
		g := tensor.Full(1, 1, 64, 256, 256)
		// Forward, dW and dx are one GEMM-sized product each.
		benchRate(b, 3*flops, func() {
			for _, p := range []*tensor.Tensor{x, w, bias} {
				p.ZeroGrad()
			}
			tensor.Conv2d(x, w, bias, 1, 1).BackwardWith(g)
		})
	})
}

// BenchmarkAttention is one 4096-token self-attention of width 256 with 4
// heads. peak_heap_MB is the largest heap growth seen during one more call
// after the timed ones, starting from a collected heap (the 4 MB output
// included); B/op is everything one call allocates. A materialised score
// matrix alone would take 4*4096*4096*4 bytes (268 MB).
func BenchmarkAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const l, d, heads = 4096, 256, 4
	q, k, v := tensortest.Rand(r, 1, l, d), tensortest.Rand(r, 1, l, d), tensortest.Rand(r, 1, l, d)
	flops := 4.0 * l * l * d // Q K^T and P V
	b.Run("forward", func(b *testing.B) {
		defer tensor.NoGrad()()
		b.ReportAllocs()
		op := func() { tensor.Attention(q, k, v, heads) }
		benchRate(b, flops, op)
		b.ReportMetric(peakHeap(op)/1e6, "peak_heap_MB")
	})
	b.Run("forward+backward", func(b *testing.B) {
		for _, p := range []*tensor.Tensor{q, k, v} {
			p.SetRequiresGrad(true)
		}
		g := tensortest.Rand(r, 1, l, d)
		b.ReportAllocs()
		op := func() {
			for _, p := range []*tensor.Tensor{q, k, v} {
				p.ZeroGrad()
			}
			tensor.Attention(q, k, v, heads).BackwardWith(g)
		}
		// The backward recomputes the scores and runs 5 products of the
		// forward's size: 7 in all, 3.5 times the forward's flops.
		benchRate(b, 3.5*flops, op)
		b.ReportMetric(peakHeap(op)/1e6, "peak_heap_MB")
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
