//go:build unix

package taesd

// Speed of TAESD3 against the engine's own 1024^3 GEMM measured in the same
// run (see internal/benchutil), and the peak heap of a tiled 2048x2048
// decode:
//
//	GOEXPERIMENT=simd go test -run '^$' -bench . -benchtime 3x ./model/taesd/

import (
	"context"
	"testing"

	"tsdsr/internal/benchutil"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// flops counts the multiply-adds (x2) of every convolution of a layout run
// on an input of h x w pixels (latent pixels for the decoder).
func flops(layout string, in, out, h, w int) float64 {
	var f float64
	ch := in
	for i, k := range layout {
		conv := func(cin, cout int) { f += 2 * float64(cin*cout*9*h*w) }
		switch k {
		case 'c':
			cout := 64
			if i == len(layout)-1 {
				cout = out
			}
			conv(ch, cout)
			ch = cout
		case 'd':
			h, w = (h+1)/2, (w+1)/2
			conv(ch, 64)
		case 'u':
			conv(ch, 64)
		case 'b':
			conv(ch, 64)
			conv(64, 64)
			conv(64, 64)
			ch = 64
		case '^':
			h, w = 2*h, 2*w
		}
	}
	return f
}

func BenchmarkAutoencoder(b *testing.B) {
	e, d, err := Embedded()
	if err != nil {
		b.Fatal(err)
	}
	defer tensor.NoGrad()()
	r := rng.New(1)
	x := tensor.New(1, 3, 512, 512)
	r.FillUniform(x.Data, 0, 1)
	z := tensor.New(1, 16, 64, 64)
	r.FillNormal(z.Data, 0, 1)
	b.Run("encode512", func(b *testing.B) {
		f := flops(encoderLayout, 3, 16, 512, 512)
		benchutil.Rate(b, f, func() { e.Forward(x) })
		b.ReportMetric(f/1e9, "GFLOP")
	})
	b.Run("decode512", func(b *testing.B) {
		f := flops(decoderLayout, 16, 3, 64, 64)
		benchutil.Rate(b, f, func() { d.Forward(z) })
		b.ReportMetric(f/1e9, "GFLOP")
	})
	b.Run("decode2048-tiled", func(b *testing.B) {
		big := tensor.New(1, 16, 256, 256)
		r.FillNormal(big.Data, 0, 1)
		op := func() {
			if _, err := d.DecodeTiled(context.Background(), big, DefaultDecodeTiling); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			op()
		}
		b.ReportMetric(benchutil.PeakHeap(op)/1e6, "peak_heap_MB")
	})
}
