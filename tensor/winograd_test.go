package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"tsdsr/internal/gemm"
	"tsdsr/internal/parallel"
)

func wgRand(r *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		t.Data[i] = 2*r.Float32() - 1
	}
	return t
}

// withWinograd runs f with the Winograd path forced on (every eligible
// shape) or off.
func withWinograd(on bool, f func()) {
	defer func(c, o, p int) {
		winogradMinChannels, winogradMinOutChannels, winogradMinPixels = c, o, p
	}(winogradMinChannels, winogradMinOutChannels, winogradMinPixels)
	winogradMinChannels, winogradMinOutChannels, winogradMinPixels = 0, 0, 0
	if !on {
		winogradMinChannels = math.MaxInt
	}
	f()
}

// wgConvRef is the float64 direct convolution at padding p, stride 1.
func wgConvRef(x, w, b *Tensor, p int) []float64 {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout := w.Shape[0]
	ho, wo := h+2*p-2, wd+2*p-2
	out := make([]float64, n*cout*ho*wo)
	for in := range n {
		for co := range cout {
			for oy := range ho {
				for ox := range wo {
					var acc float64
					if b != nil {
						acc = float64(b.Data[co])
					}
					for c := range cin {
						for ki := range 3 {
							for kj := range 3 {
								iy, ix := oy-p+ki, ox-p+kj
								if iy >= 0 && iy < h && ix >= 0 && ix < wd {
									acc += float64(x.Data[((in*cin+c)*h+iy)*wd+ix]) * float64(w.Data[((co*cin+c)*3+ki)*3+kj])
								}
							}
						}
					}
					out[((in*cout+co)*ho+oy)*wo+ox] = acc
				}
			}
		}
	}
	return out
}

// relErr is max |got - want| / max |want|: Winograd's error scales with
// the output's magnitude, not element by element.
func relErr(got []float32, want []float64) float64 {
	var d, m float64
	for i, v := range want {
		d = math.Max(d, math.Abs(float64(got[i])-v))
		m = math.Max(m, math.Abs(v))
	}
	return d / math.Max(m, 1e-30)
}

// TestWinogradMatchesIm2col compares the Winograd forward pass with the
// im2col one and with a float64 reference over channel counts, odd/even
// and sub-tile sizes, batches, bias and padding. Measured with values in
// [-1, 1), 64 channels: max error 4e-6..7e-6 of the largest output
// (im2col: 3e-7..5e-7); the bound here is 3e-5.
func TestWinogradMatchesIm2col(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	type shape struct{ n, cin, cout, h, w, p int }
	shapes := []shape{
		{1, 1, 1, 5, 5, 1}, {1, 3, 3, 7, 6, 1}, {2, 16, 16, 9, 8, 1},
		{1, 64, 64, 16, 16, 1}, {1, 64, 64, 19, 13, 1}, {2, 65, 64, 11, 12, 1},
		{1, 64, 65, 10, 21, 1}, {1, 3, 64, 8, 8, 1}, {1, 64, 3, 8, 8, 1},
		{1, 16, 16, 3, 3, 1}, {1, 16, 16, 2, 5, 1}, {2, 16, 16, 1, 1, 1},
		{1, 16, 16, 1, 7, 1}, {1, 16, 17, 4, 4, 0}, {2, 16, 16, 9, 14, 0},
		{1, 16, 16, 3, 3, 0}, {1, 64, 64, 13, 10, 0}, {1, 16, 16, 6, 7, 2},
		{1, 16, 16, 1, 1, 2}, {1, 64, 64, 40, 40, 1}, {1, 16, 24, 9, 70, 0},
		{1, 17, 16, 11, 67, 2}, {2, 16, 3, 8, 36, 1},
	}
	for _, s := range shapes {
		for _, withBias := range []bool{true, false} {
			name := fmt.Sprintf("n%d_%dto%d_%dx%d_p%d_bias%v", s.n, s.cin, s.cout, s.h, s.w, s.p, withBias)
			x, w := wgRand(r, s.n, s.cin, s.h, s.w), wgRand(r, s.cout, s.cin, 3, 3)
			var b *Tensor
			if withBias {
				b = wgRand(r, s.cout)
			}
			var wino, im2col *Tensor
			func() {
				defer NoGrad()()
				withWinograd(true, func() { wino = Conv2d(x, w, b, 1, s.p) })
				withWinograd(false, func() { im2col = Conv2d(x, w, b, 1, s.p) })
			}()
			ref := wgConvRef(x, w, b, s.p)
			eW, eI := relErr(wino.Data, ref), relErr(im2col.Data, ref)
			d := make([]float64, len(im2col.Data))
			for i, v := range im2col.Data {
				d[i] = float64(v)
			}
			eWI := relErr(wino.Data, d)
			if s.cin == 64 && s.cout == 64 {
				t.Logf("%s: max error / max |out|: winograd %.2g, im2col %.2g, winograd vs im2col %.2g", name, eW, eI, eWI)
			}
			if !SameShape(wino.Shape, im2col.Shape) || eW > 3e-5 || eWI > 3e-5 {
				t.Errorf("%s: shape %v vs %v, error %.3g (im2col %.3g, vs im2col %.3g)", name, wino.Shape, im2col.Shape, eW, eI, eWI)
			}
		}
	}
}

// TestWinogradKernels compares the vector transforms with the plain-Go
// ones on tile counts that leave vector tails (in builds without the
// vector kernels both sides are the same code).
func TestWinogradKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 2*r.Float32() - 1
		}
		return s
	}
	near := func(what string, n int, got, want []float32) {
		t.Helper()
		for i, v := range want {
			if math.Abs(float64(got[i]-v)) > 1e-5*(1+math.Abs(float64(v))) {
				t.Fatalf("%s, %d tiles: [%d] = %g, want %g", what, n, i, got[i], v)
			}
		}
	}
	for _, n := range []int{1, 7, 8, 13, 16, 27} {
		ld, vs := (n+7)/8*8+8, n+5
		d := fill(24 * ld)
		d2 := append([]float32(nil), d...)
		v, v2 := make([]float32, 36*vs), make([]float32, 36*vs)
		wgInput(v, vs, d, ld, n)
		wgInputGo(v2, vs, d2, ld, n)
		near("input", n, v, v2)

		m := fill(36*vs + 8)
		y, y2 := make([]float32, 16*ld), make([]float32, 16*ld)
		wgOutput(y, ld, m, vs, n, 0.5)
		wgOutputGo(y2, ld, m, vs, n, 0.5)
		for i := range 16 {
			near("output", n, y[i*ld:i*ld+n], y2[i*ld:i*ld+n])
		}

		w := fill(9 * n)
		u, u2 := make([]float32, 36*vs), make([]float32, 36*vs)
		wgWeights(u, vs, w)
		wgWeightsGo(u2, vs, w, 0)
		near("weights", n, u, u2)
	}
	src := fill(64)
	d, d2 := make([]float32, 4*20), make([]float32, 4*20)
	wgDeinterleave(d, 20, 1, src, 2)
	wgDeinterleaveGo(d2, 20, 1, src, 2)
	near("deinterleave", 16, d, d2)
	o, o2 := make([]float32, 64), make([]float32, 64)
	wgInterleave(o, d[0:20], d[20:40], d[40:60], d[60:80], 1, 2)
	wgInterleaveGo(o2, d[0:20], d[20:40], d[40:60], d[60:80], 1, 2)
	near("interleave", 16, o, o2)
	near("interleave(deinterleave)", 16, o, src)
}

// TestWinogradBands splits a batch into many small bands, with several
// workers and with one.
func TestWinogradBands(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x, w, b := wgRand(r, 2, 20, 37, 45), wgRand(r, 24, 20, 3, 3), wgRand(r, 24)
	ref := wgConvRef(x, w, b, 1)
	defer NoGrad()()
	defer func(v int) { winogradBandTiles = v }(winogradBandTiles)
	for _, threads := range []int{1, 3} {
		for _, tiles := range []int{1, 20, 1000} {
			func() {
				defer parallel.SetThreads(parallel.SetThreads(threads))
				winogradBandTiles = tiles
				var y *Tensor
				withWinograd(true, func() { y = Conv2d(x, w, b, 1, 1) })
				if e := relErr(y.Data, ref); e > 3e-5 {
					t.Errorf("%d threads, %d tiles a band: error %.3g", threads, tiles, e)
				}
			}()
		}
	}
}

// TestWinogradNotWhenRecording: when the output will need a gradient, the
// forward pass is the im2col one bit for bit, and the gradients are
// im2col's; without recording the Winograd result differs in its rounding.
func TestWinogradNotWhenRecording(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	x, w, b := wgRand(r, 1, 32, 12, 12), wgRand(r, 32, 32, 3, 3), wgRand(r, 32)
	g := wgRand(r, 1, 32, 12, 12)
	run := func(on bool, requires []*Tensor) (y *Tensor, grads [][]float32) {
		for _, p := range []*Tensor{x, w, b} {
			p.SetRequiresGrad(false)
			p.ZeroGrad()
		}
		for _, p := range requires {
			p.SetRequiresGrad(true)
		}
		withWinograd(on, func() { y = Conv2d(x, w, b, 1, 1) })
		if y.RequiresGrad() {
			y.BackwardWith(g)
		}
		for _, p := range []*Tensor{x, w, b} {
			if p.Grad != nil {
				grads = append(grads, p.Grad.Data)
			} else {
				grads = append(grads, nil)
			}
		}
		return y, grads
	}
	for _, req := range [][]*Tensor{{x}, {w}, {b}, {x, w, b}} {
		want, wantGrads := run(false, req)
		got, gotGrads := run(true, req)
		if !equalBits(got.Data, want.Data) {
			t.Errorf("%d inputs need gradients: forward is not the im2col one", len(req))
		}
		for i := range gotGrads {
			if (gotGrads[i] == nil) != (wantGrads[i] == nil) || !equalBits(gotGrads[i], wantGrads[i]) {
				t.Errorf("%d inputs need gradients: gradient %d differs from im2col's", len(req), i)
			}
		}
	}
	im2col, _ := run(false, nil)
	wino, _ := run(true, nil)
	if equalBits(wino.Data, im2col.Data) {
		t.Error("no input needs a gradient, yet the forward is bitwise im2col's: Winograd not used?")
	}
	func() {
		defer NoGrad()()
		wino, _ := run(true, []*Tensor{x, w, b})
		if equalBits(wino.Data, im2col.Data) || wino.RequiresGrad() {
			t.Error("under NoGrad the forward should be Winograd's and record nothing")
		}
	}()
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		if math.Float32bits(v) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// BenchmarkConv2dWinograd times TAESD's 3x3 64->64 convolutions (batch 1,
// with bias) by im2col and by Winograd, interleaved with a 1024^3 GEMM in
// every iteration: the machine is shared, so it reports the best time of
// each (ns/op is all three together), speedup = im2col / Winograd, and
// each path's rate as a fraction of the GEMM's (of_gemm), counting the
// direct convolution's 2*Cout*Cin*9*H*W flops for both.
//
//	GOEXPERIMENT=simd go test -run '^$' -bench Conv2dWinograd -benchtime 5x ./tensor/
func BenchmarkConv2dWinograd(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	w, bias := wgRand(r, 64, 64, 3, 3), wgRand(r, 64)
	const gn = 1024
	ga, gb, gc := wgRand(r, gn, gn).Data, wgRand(r, gn, gn).Data, make([]float32, gn*gn)
	defer NoGrad()()
	for _, size := range []int{64, 128, 256, 512} {
		b.Run(fmt.Sprintf("64to64_%dx%d", size, size), func(b *testing.B) {
			x := wgRand(r, 1, 64, size, size)
			ops := []func(){
				func() { withWinograd(false, func() { Conv2d(x, w, bias, 1, 1) }) },
				func() { withWinograd(true, func() { Conv2d(x, w, bias, 1, 1) }) },
				func() { gemm.Sgemm(false, false, gn, gn, gn, 1, ga, gn, gb, gn, 0, gc, gn) },
			}
			best := []time.Duration{math.MaxInt64, math.MaxInt64, math.MaxInt64}
			for b.Loop() {
				for i, op := range ops {
					t0 := time.Now()
					op()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			flops := 2.0 * 64 * 64 * 9 * float64(size*size)
			gemmRate := 2 * gn * gn * gn / best[2].Seconds()
			b.ReportMetric(best[0].Seconds()*1e3, "im2col_ms")
			b.ReportMetric(best[1].Seconds()*1e3, "winograd_ms")
			b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "speedup")
			b.ReportMetric(flops/best[0].Seconds()/gemmRate, "im2col_of_gemm")
			b.ReportMetric(flops/best[1].Seconds()/gemmRate, "winograd_of_gemm")
			b.ReportMetric(gemmRate/1e9, "gemm_GFLOP/s")
		})
	}
}
