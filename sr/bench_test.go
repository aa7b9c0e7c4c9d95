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
	"testing"
	"time"

	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/internal/benchutil"
	"tsdsr/model/mmdit"
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
	return &OneStep{Enc: enc, Dec: dec, Student: m, ModelName: "bench", Tile: cfg.SampleSize, Overlap: 4}
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
		var enc, stu, dec time.Duration
		for b.Loop() {
			t0 := time.Now()
			z, _ := o.Enc.EncodeTiled(ctx, x, taesd.DefaultEncodeTiling)
			t1 := time.Now()
			v, _ := o.velocity(ctx, z, o.Tile, o.Overlap)
			t2 := time.Now()
			o.Dec.DecodeTiled(ctx, tensor.Sub(z, v), taesd.DefaultDecodeTiling)
			t3 := time.Now()
			enc, stu, dec = enc+t1.Sub(t0), stu+t2.Sub(t1), dec+t3.Sub(t2)
		}
		tot := (enc + stu + dec).Seconds()
		b.ReportMetric(tot/float64(b.N), "s/image")
		b.ReportMetric(enc.Seconds()/tot, "encode_share")
		b.ReportMetric(stu.Seconds()/tot, "student_share")
		b.ReportMetric(dec.Seconds()/tot, "decode_share")
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
		b.ReportMetric(teacher/(stu.Seconds()/float64(b.N)), "student_speedup")
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
