//go:build unix

package sd3vae

// Speed of SD3's VAE (random weights) against the engine's own 1024^3 GEMM
// measured in the same run (see internal/benchutil), with the peak heap
// next to MemoryEstimate. Heavy: about 0.5 TFLOP per encode and 1.2 TFLOP
// per decode at 512x512, minutes on two cores:
//
//	GOEXPERIMENT=simd go test -run '^$' -bench SD3VAE -benchtime 1x ./model/sd3vae/

import (
	"context"
	"testing"

	"tsdsr/internal/benchutil"
	"tsdsr/nn"
	"tsdsr/rng"
)

// flops counts the multiply-adds (x2) of every convolution, linear layer
// and attention product of encoding an h x w image and of decoding its
// latents (not norms and activations).
func flops(c Config, h, w int) (enc, dec float64) {
	conv := func(cin, cout, k, hh, ww int) float64 { return 2 * float64(cin*cout*k*k) * float64(hh*ww) }
	resnet := func(in, out, hh, ww int) float64 {
		f := conv(in, out, 3, hh, ww) + conv(out, out, 3, hh, ww)
		if in != out {
			f += conv(in, out, 1, hh, ww)
		}
		return f
	}
	mid := func(ch, hh, ww int) float64 {
		f := 2 * resnet(ch, ch, hh, ww)
		if c.MidBlockAddAttention {
			l, d := float64(hh*ww), float64(ch)
			f += 4*2*l*d*d + 4*l*l*d // q, k, v, to_out; Q K^T and P V
		}
		return f
	}
	boc := c.BlockOutChannels
	hh, ww, ch := h, w, boc[0]
	enc = conv(c.InChannels, ch, 3, hh, ww)
	for i, out := range boc {
		for range c.LayersPerBlock {
			enc += resnet(ch, out, hh, ww)
			ch = out
		}
		if i < len(boc)-1 {
			hh, ww = hh/2, ww/2
			enc += conv(ch, ch, 3, hh, ww)
		}
	}
	enc += mid(ch, hh, ww) + conv(ch, 2*c.LatentChannels, 3, hh, ww)

	dec = conv(c.LatentChannels, ch, 3, hh, ww) + mid(ch, hh, ww)
	for i := len(boc) - 1; i >= 0; i-- {
		for range c.LayersPerBlock + 1 {
			dec += resnet(ch, boc[i], hh, ww)
			ch = boc[i]
		}
		if i > 0 {
			hh, ww = 2*hh, 2*ww
			dec += conv(ch, ch, 3, hh, ww)
		}
	}
	dec += conv(ch, c.OutChannels, 3, hh, ww)
	return enc, dec
}

func BenchmarkSD3VAE(b *testing.B) {
	if testing.Short() {
		b.Skip("SD3's VAE takes minutes per call on two cores")
	}
	cfg := SD3()
	v, err := New(cfg, nn.NewParams(rng.New(1)))
	if err != nil {
		b.Fatal(err)
	}
	v.Params.Freeze()
	const size = 512
	x := randImage(2, 1, 3, size, size)
	z := randLatent(3, 1, 16, size/8, size/8)
	fe, fd := flops(cfg, size, size)
	me, md := cfg.MemoryEstimate(size, size)
	ctx := context.Background()
	run := func(name string, f float64, estimate int64, op func() error) {
		b.Run(name, func(b *testing.B) {
			var peak float64
			benchutil.Rate(b, f, func() {
				peak = max(peak, benchutil.PeakHeap(func() {
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}))
			})
			b.ReportMetric(f/1e9, "GFLOP")
			b.ReportMetric(peak/1e6, "peak_heap_MB")
			b.ReportMetric(float64(estimate)/1e6, "estimate_MB")
		})
	}
	run("encode512", fe, me, func() error { _, err := v.Encode(ctx, x); return err })
	run("decode512", fd, md, func() error { _, err := v.Decode(ctx, z); return err })
}
