//go:build unix

package distill

// Training-step benchmark at the small prior's size (mmdit.Small: hidden
// 256, 8 layers, 4 heads, 8 prompt tokens) on 64x64 LR -> 256x256 HR crops,
// that is 32x32 latents (256 image tokens), batch 2. Each iteration of a
// step is followed by one untimed 1024^3 GEMM, and the best wall times are
// compared (of_gemm), as tensor's benchmarks do.
//
//	GOEXPERIMENT=simd go test -run '^$' -bench TrainStep -benchtime 3x ./distill/

import (
	"testing"

	"tsdsr/internal/benchutil"
	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// BenchmarkTrainStep times Trainer.Step (student step + fake-score step).
// Model flops per step, in forwards F of the batch: the student's
// forward + input-gradient backward is 2F with a LoRA (its base weights
// get no gradient) and 3F fully fine-tuned; each DASM point costs the
// teacher on both trajectories (2F) and the fake score (F), so TSD with
// N = 4 adds 12F; the fake score's LoRA step is 2F.
func BenchmarkTrainStep(b *testing.B) {
	const n, lat = 2, 32
	cfg := mmdit.Small()
	fwd := cfg.ForwardFLOPs(n, lat, lat)
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		units float64
	}{
		{"lora64-tsd-dasm4", func(*Config) {}, 2 + 12 + 2},
		{"lora64-mse-only", func(c *Config) { c.Reg = RegNone }, 2},
		{"full-tsd-dasm4", func(c *Config) { c.FullFinetune = true }, 3 + 12 + 2},
		{"full-mse-only", func(c *Config) { c.FullFinetune, c.Reg = true, RegNone }, 3},
	} {
		b.Run(c.name, func(b *testing.B) {
			prior, err := mmdit.New(cfg, nn.NewParams(rng.New(1)))
			if err != nil {
				b.Fatal(err)
			}
			rc := DefaultConfig()
			rc.Warmup = 0
			c.edit(&rc)
			tr, err := NewTrainer(rc, prior)
			if err != nil {
				b.Fatal(err)
			}
			r := rng.New(2)
			zh := tensor.New(n, 16, lat, lat)
			r.FillNormal(zh.Data, 0, 1)
			zl := tensor.New(n, 16, lat, lat)
			r.FillNormal(zl.Data, 0, 1)
			batch := Batch{ZL: zl, ZH: zh}
			flops := c.units * fwd
			s := 0
			b.ReportMetric(flops/1e9, "GFLOP/step")
			benchutil.Rate(b, flops, func() {
				if _, err := tr.Step(batch, r.Child(uint64(s))); err != nil {
					b.Fatal(err)
				}
				s++
			})
		})
	}
}
