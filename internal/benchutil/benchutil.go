//go:build unix

// Package benchutil holds what tsdsr's benchmarks share: timing against a
// 1024^3 GEMM run in the same benchmark (the machine is shared and its load
// drifts, so absolute rates mean little and ratios to the engine's own
// GEMM are what the reports quote) and peak-heap sampling.
package benchutil

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
)

// CPUTime is the user+system CPU time this process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs f and returns its wall and CPU time.
func timed(f func()) (wall, cpu time.Duration) {
	t0, c0 := time.Now(), CPUTime()
	f()
	return time.Since(t0), CPUTime() - c0
}

// gemmOnce runs one 1024^3 Sgemm (2^31 flops).
var gemmOnce = func() func() {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = 2*r.Float32()-1, 2*r.Float32()-1
	}
	return func() { gemm.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n) }
}()

// Rate runs op in b.Loop, interleaved with untimed GEMMs, and reports
// the op's mean GFLOP/s (flops per call), the best wall-clock GFLOP/s of op
// and GEMM and their ratio, and the ratio of their GFLOP per CPU second.
func Rate(b *testing.B, flops float64, op func()) {
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

// PeakHeap runs f while sampling the heap (live and not yet swept objects)
// every millisecond through runtime/metrics, which does not stop the world,
// and returns the largest growth over the heap in use when f started.
func PeakHeap(f func()) float64 {
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
