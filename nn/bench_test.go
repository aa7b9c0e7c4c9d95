//go:build linux

package nn

import (
	"fmt"
	"runtime"
	"testing"

	"tsdsr/internal/benchutil"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// BenchmarkTrainStep times one AdamW training step (forward, MSE,
// backward, clip, step) of the tiny transformer and reports the peak RSS
// of the process during the benchmark (peak-RSS-MB) and the bytes allocated
// per step (B/op).
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range []struct{ n, l, in, dim, heads int }{
		{2, 16, 8, 32, 4},     // the training test's model
		{1, 1024, 16, 256, 4}, // 1024 tokens, 0.8M parameters
		{1, 4096, 16, 256, 4}, // 4096 tokens
	} {
		b.Run(fmt.Sprintf("N%d_L%d_dim%d", c.n, c.l, c.dim), func(b *testing.B) {
			x := tensor.New(c.n, c.l, c.in)
			rng.New(1).FillNormal(x.Data, 0, 1)
			y := tensor.New(c.n, c.l, c.in)
			rng.New(2).FillNormal(y.Data, 0, 1)
			p := NewParams(rng.New(3))
			m := newTinyTransformer(p, c.in, c.dim, c.heads)
			o := NewAdamW(p.Trainable(), DefaultAdamW())
			step := func() {
				o.ZeroGrad()
				tensor.MSE(m.forward(x), y).Backward()
				ClipGradNorm(o.Params(), 1)
				o.Step()
			}
			step() // warm-up: first allocations of moments' users, GEMM packing
			runtime.GC()
			reset := benchutil.ResetPeakRSS()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.StopTimer()
			if reset {
				b.ReportMetric(benchutil.PeakRSS()/(1<<20), "peak-RSS-MB")
			}
			b.ReportMetric(float64(p.Count()), "params")
		})
	}
}
