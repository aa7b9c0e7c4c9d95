//go:build unix

package mmdit

// Prior training throughput and inference time, against the engine's own
// 1024^3 GEMM measured in the same run (internal/benchutil):
//
//	GOEXPERIMENT=simd go test -run '^$' -bench . -benchtime 3x ./model/mmdit/

import (
	"fmt"
	"testing"

	"tsdsr/internal/benchutil"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

func BenchmarkPrior(b *testing.B) {
	shipped, err := LoadConfig("../../configs/prior-192x6.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"192x6", shipped}, {"small-256x8", Small()}} {
		p := nn.NewParams(rng.New(1))
		m, err := New(c.cfg, p)
		if err != nil {
			b.Fatal(err)
		}
		r := rng.New(2)
		for _, q := range p.List() {
			r.FillNormal(q.T.Data, 0, 0.02)
		}
		// Training: flow-matching loss on 8 latents of 32x32 (256 tokens),
		// forward + backward (about 3 forwards) + AdamW.
		b.Run(fmt.Sprintf("%s/train-batch8-32x32", c.name), func(b *testing.B) {
			const n = 8
			x, target := tensor.New(n, 16, 32, 32), tensor.New(n, 16, 32, 32)
			r.FillNormal(x.Data, 0, 1)
			r.FillNormal(target.Data, 0, 1)
			t := []float32{900, 800, 700, 600, 500, 400, 300, 200}
			opt := nn.NewAdamW(p.Trainable(), nn.DefaultAdamW())
			benchutil.Rate(b, 3*c.cfg.ForwardFLOPs(n, 32, 32), func() {
				opt.ZeroGrad()
				tensor.MSE(m.Velocity(x, t), target).Backward()
				opt.Step()
			})
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
		b.Run(fmt.Sprintf("%s/forward-64x64", c.name), func(b *testing.B) {
			defer tensor.NoGrad()()
			x := tensor.New(1, 16, 64, 64)
			r.FillNormal(x.Data, 0, 1)
			benchutil.Rate(b, c.cfg.ForwardFLOPs(1, 64, 64), func() { m.Velocity(x, []float32{1000}) })
		})
	}
}
