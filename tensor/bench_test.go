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
	"testing"
	"time"

	"tsdsr/internal/benchutil"
	"tsdsr/internal/parallel"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// BenchmarkConv2d is the TAESD-sized 3x3 64->64 convolution on 1x64x256x256.
func BenchmarkConv2d(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	x, w, bias := tensortest.Rand(r, 1, 64, 256, 256), tensortest.Rand(r, 64, 64, 3, 3), tensortest.Rand(r, 64)
	flops := 2.0 * 64 * 64 * 9 * 256 * 256
	b.Run("forward", func(b *testing.B) {
		defer tensor.NoGrad()()
		benchutil.Rate(b, flops, func() { tensor.Conv2d(x, w, bias, 1, 1) })
	})
	b.Run("forward+backward", func(b *testing.B) {
		for _, p := range []*tensor.Tensor{x, w, bias} {
			p.SetRequiresGrad(true)
		}
		g := tensor.Full(1, 1, 64, 256, 256)
		// Forward, dW and dx are one GEMM-sized product each.
		benchutil.Rate(b, 3*flops, func() {
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
		benchutil.Rate(b, flops, op)
		b.ReportMetric(benchutil.PeakHeap(op)/1e6, "peak_heap_MB")
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
		benchutil.Rate(b, 3.5*flops, op)
		b.ReportMetric(benchutil.PeakHeap(op)/1e6, "peak_heap_MB")
	})
}

// BenchmarkActivations times Sigmoid, SiLU and GELU forward+backward on 2^20
// elements in [-4, 4) on one thread, the Go kernels and the vector ones
// (GOEXPERIMENT=simd on AVX2+FMA) one after the other in every iteration:
// the load drifts, so it reports the best time of each and their ratio,
// speedup = Go / vector. ns/op is both together.
//
//	GOEXPERIMENT=simd go test -run '^$' -bench Activations -benchtime 50x ./tensor/
func BenchmarkActivations(b *testing.B) {
	if !tensor.SetActSIMD(true) {
		b.Skip("no vector activation kernels in this build or on this CPU")
	}
	defer tensor.SetActSIMD(true)
	defer parallel.SetThreads(parallel.SetThreads(1))
	r := rand.New(rand.NewPCG(7, 8))
	x := tensor.Scale(tensortest.Rand(r, 1<<20), 4).SetRequiresGrad(true)
	g := tensortest.Rand(r, 1<<20)
	for _, c := range []struct {
		name string
		op   func(*tensor.Tensor) *tensor.Tensor
	}{{"Sigmoid", tensor.Sigmoid}, {"SiLU", tensor.SiLU}, {"GELU", tensor.GELU}} {
		b.Run(c.name, func(b *testing.B) {
			best := [2]time.Duration{math.MaxInt64, math.MaxInt64} // Go, vector
			for b.Loop() {
				for i := range best {
					tensor.SetActSIMD(i == 1)
					x.ZeroGrad()
					t0 := time.Now()
					c.op(x).BackwardWith(g)
					best[i] = min(best[i], time.Since(t0))
				}
			}
			b.ReportMetric(best[0].Seconds()*1e3, "go_ms")
			b.ReportMetric(best[1].Seconds()*1e3, "vector_ms")
			b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "speedup")
		})
	}
}
