//go:build linux

package sr

// End-to-end speed of the one-step upscaler at the shipped student's size
// (configs/prior-192x6.json, random weights: the same arithmetic), with the
// share of each stage, against sampling the teacher with 50 Euler steps on
// the same latent (TSD-SR's one-step speed-up claim); and time and peak
// memory for growing images:
//
//	GOEXPERIMENT=simd go test -run '^$' -bench OneStep -benchtime 2x ./sr/

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/internal/benchutil"
	"tsdsr/internal/sysmem"
	"tsdsr/model/mmdit"
	"tsdsr/model/sd3vae"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

func benchModel(b *testing.B) *OneStep {
	cfg, err := mmdit.LoadConfig("../configs/prior-192x6.json")
	if err != nil {
		b.Fatal(err)
	}
	m, err := mmdit.New(cfg, nn.NewParams(rng.New(1)))
	if err != nil {
		b.Fatal(err)
	}
	r := rng.New(2)
	for _, p := range m.Params.List() {
		r.FillNormal(p.T.Data, 0, 0.02)
	}
	enc, dec, err := taesd.Embedded()
	if err != nil {
		b.Fatal(err)
	}
	return &OneStep{AE: TAESD{Enc: enc, Dec: dec}, Student: m, ModelName: "bench", Tile: cfg.SampleSize, Overlap: 4}
}

func BenchmarkOneStep(b *testing.B) {
	o := benchModel(b)
	ctx := context.Background()
	img := imageio.NewImage(128, 128, 3)
	rng.New(3).FillUniform(img.Pix, 0, 1)
	b.Run("128to512-stages", func(b *testing.B) {
		defer tensor.NoGrad()()
		x := tensor.New(1, 3, 512, 512)
		rng.New(4).FillUniform(x.Data, 0, 1)
		stu := stageTimes(b, o, x)
		// The teacher's 50-step Euler sampling on the same 64x64 latent,
		// tiled like the student, once.
		z := tensor.New(1, 16, 64, 64)
		rng.New(5).FillNormal(z.Data, 0, 1)
		sig := flow.SD3().InferenceSigmas(50)
		t0 := time.Now()
		for i := 0; i+1 < len(sig); i++ {
			v, _ := o.velocity(ctx, z, o.Tile, o.Overlap)
			z = tensor.Add(z, tensor.Scale(v, sig[i+1]-sig[i]))
		}
		teacher := time.Since(t0).Seconds()
		b.ReportMetric(teacher, "teacher50_s")
		b.ReportMetric(teacher/stu, "student_speedup")
	})
	for _, side := range []int{128, 256, 512} {
		b.Run(fmt.Sprintf("pipeline-%dto%d", side, 4*side), func(b *testing.B) {
			in := imageio.NewImage(side, side, 3)
			rng.New(6).FillUniform(in.Pix, 0, 1)
			p := New(o, nil)
			benchutil.ResetPeakRSS()
			for b.Loop() {
				if _, err := p.UpscaleImage(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/image")
			b.ReportMetric(benchutil.PeakRSS()/1e6, "peak_RSS_MB")
		})
	}
}

// stageTimes runs encode, student and decode on x [1, 3, H, W] per
// iteration, reports seconds per image and each stage's share, and returns
// the student's seconds per image.
func stageTimes(b *testing.B, o *OneStep, x *tensor.Tensor) float64 {
	ctx := context.Background()
	var enc, stu, dec time.Duration
	for b.Loop() {
		t0 := time.Now()
		z, err := o.AE.Encode(ctx, x)
		if err != nil {
			b.Fatal(err)
		}
		z = tensor.Scale(z, o.latentScale())
		t1 := time.Now()
		v, _ := o.velocity(ctx, z, o.Tile, o.Overlap)
		t2 := time.Now()
		if _, err := o.AE.Decode(ctx, tensor.Scale(tensor.Sub(z, v), 1/o.latentScale())); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		enc, stu, dec = enc+t1.Sub(t0), stu+t2.Sub(t1), dec+t3.Sub(t2)
	}
	tot := (enc + stu + dec).Seconds()
	b.ReportMetric(tot/float64(b.N), "s/image")
	b.ReportMetric(enc.Seconds()/tot, "encode_share")
	b.ReportMetric(stu.Seconds()/tot, "student_share")
	b.ReportMetric(dec.Seconds()/tot, "decode_share")
	return stu.Seconds() / float64(b.N)
}

// BenchmarkSD3Medium is the official TSD-SR model's cost on 2 cores:
// SD3-medium's transformer (2 B parameters) and VAE (84 M) in float32 with
// random weights - the same arithmetic as the released ones - upscaling
// 128 -> 512 (one 64x64 latent tile, TSD-SR's) with its 333-token prompt.
// It needs about 11 GB of memory and minutes:
//
//	GOEXPERIMENT=simd go test -run '^$' -bench SD3Medium -benchtime 1x ./sr/
func BenchmarkSD3Medium(b *testing.B) {
	if err := sysmem.Check(11<<30, "BenchmarkSD3Medium", "SD3-medium in float32"); err != nil {
		b.Skip(err)
	}
	defer tensor.NoGrad()()
	defer debug.SetGCPercent(debug.SetGCPercent(20)) // as models.LoadSD3 does
	t0 := time.Now()
	tr, err := mmdit.New(mmdit.SD3Medium(), nn.NewParams(rng.New(1)))
	if err != nil {
		b.Fatal(err)
	}
	vae, err := sd3vae.New(sd3vae.SD3(), nn.NewParams(rng.New(2)))
	if err != nil {
		b.Fatal(err)
	}
	prompt, pooled := tensor.New(1, 333, 4096), tensor.New(1, 2048)
	rng.New(3).FillNormal(prompt.Data, 0, 1)
	rng.New(4).FillNormal(pooled.Data, 0, 1)
	o := &OneStep{AE: SD3VAE{VAE: vae}, Student: tr, Prompt: prompt, Pooled: pooled,
		LatentScale: float32(vae.Config.ScalingFactor), Tile: 64, Overlap: 8}
	b.Logf("built SD3-medium (%d + %d parameters) in %.0f s, RSS %.0f MB", tr.Params.Count(), vae.Params.Count(),
		time.Since(t0).Seconds(), benchutil.PeakRSS()/1e6)
	x := tensor.New(1, 3, 512, 512)
	rng.New(5).FillUniform(x.Data, 0, 1)
	benchutil.ResetPeakRSS()
	b.ResetTimer()
	stu := stageTimes(b, o, x)
	b.ReportMetric(benchutil.PeakRSS()/1e9, "peak_RSS_GB")
	withPrompt := tr.Config
	withPrompt.ContextTokens = prompt.Shape[1]
	b.ReportMetric(withPrompt.ForwardFLOPs(1, 64, 64)/stu/1e9, "transformer_GFLOP/s")
}
