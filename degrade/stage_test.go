package degrade

import (
	"math"
	"testing"

	"tsdsr/rng"
)

// testPlanes returns c deterministic w x h planes with smooth gradients,
// edges and fine texture, like a small photo.
func testPlanes(w, h, c int, seed uint64) []float32 {
	r := rng.New(seed)
	p := make([]float32, w*h*c)
	for ch := range c {
		for y := range h {
			for x := range w {
				v := 0.5 + 0.3*math.Sin(float64(x)/9+float64(ch))*math.Cos(float64(y)/13)
				if (x/16+y/16)%2 == 0 {
					v += 0.15
				}
				v += 0.05 * (r.Float64() - 0.5)
				p[(ch*h+y)*w+x] = float32(min(1, max(0, v)))
			}
		}
	}
	return p
}

// naiveCorrelate is the textbook definition with explicit reflection.
func naiveCorrelate(src []float32, w, h int, k []float32, kh, kw int) []float32 {
	out := make([]float32, w*h)
	for y := range h {
		for x := range w {
			var s float32
			for i := range kh {
				for j := range kw {
					s += float32(k[i*kw+j] * src[reflect(y+i-kh/2, h)*w+reflect(x+j-kw/2, w)])
				}
			}
			out[y*w+x] = s
		}
	}
	return out
}

// TestCorrelateMatchesReference checks the row kernel in use (AVX2 where
// built and supported) gives exactly the bits of the naive definition,
// including widths that are not multiples of 8 and pads wider than the
// plane.
func TestCorrelateMatchesReference(t *testing.T) {
	t.Logf("simd row kernel: %v", simdConv)
	r := rng.New(3)
	for _, tc := range []struct{ w, h, kh, kw int }{
		{77, 41, 21, 21}, {64, 33, 7, 7}, {45, 9, 1, 51}, {45, 60, 51, 1}, {5, 4, 9, 9}, {1, 3, 3, 3},
	} {
		src := testPlanes(tc.w, tc.h, 1, 9)
		k := make([]float32, tc.kh*tc.kw)
		r.FillUniform(k, -0.2, 1)
		got := Correlate(src, tc.w, tc.h, k, tc.kh, tc.kw)
		want := naiveCorrelate(src, tc.w, tc.h, k, tc.kh, tc.kw)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: pixel %d: %v, want %v", tc, i, got[i], want[i])
			}
		}
	}
}

// TestIsoSeparableMatches2D: the separable fast path for isotropic
// Gaussians agrees with the direct 2-D filter.
func TestIsoSeparableMatches2D(t *testing.T) {
	w, h := 70, 50
	src := testPlanes(w, h, 1, 4)
	p := KernelParams{Type: KernelIso, Size: 17, SigmaX: 2.3, SigmaY: 2.3}
	fast := filter(src, w, h, 1, p)
	k := p.Build()
	slow := Correlate(src, w, h, toF32(k.W), k.Size, k.Size)
	for i := range slow {
		if d := math.Abs(float64(fast[i] - slow[i])); d > 2e-6 {
			t.Fatalf("pixel %d: separable %v, direct %v", i, fast[i], slow[i])
		}
	}
}

func flat(w, h, c int, v float32) []float32 {
	p := make([]float32, w*h*c)
	for i := range p {
		p[i] = v
	}
	return p
}

func meanStd(v []float64) (float64, float64) {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	s := 0.0
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return m, math.Sqrt(s / float64(len(v)-1))
}

func TestGaussianNoiseStd(t *testing.T) {
	const w, h = 256, 256
	for _, sigma := range []float64{1, 10, 30} {
		for _, gray := range []bool{false, true} {
			p := flat(w, h, 3, 0.5)
			AddGaussian(p, w*h, 3, sigma, gray, rng.New(5))
			d := make([]float64, len(p))
			for i, v := range p {
				d[i] = (float64(v) - 0.5) * 255
			}
			m, s := meanStd(d)
			if math.Abs(s-sigma) > 0.05*sigma || math.Abs(m) > 0.05*sigma {
				t.Errorf("sigma %v gray %v: measured mean %.3f std %.3f", sigma, gray, m, s)
			}
			n := w * h
			same := true
			for i := range n {
				if p[i] != p[n+i] || p[i] != p[2*n+i] {
					same = false
					break
				}
			}
			if same != gray {
				t.Errorf("sigma %v gray %v: channels identical = %v", sigma, gray, same)
			}
		}
	}
}

// TestPoissonVarianceScalesWithIntensity builds an image with a full 8-bit
// ramp (so vals = 256) beside three flat patches and checks each patch's
// noise variance is intensity * scale^2 / vals, as for shot noise.
func TestPoissonVarianceScalesWithIntensity(t *testing.T) {
	const w, h = 512, 256
	levels := []int{26, 102, 179}
	p := make([]float32, w*h)
	for y := range h {
		for x := range w {
			v := float32(x%256) / 255 // ramp on the top rows
			if y >= 16 {
				v = float32(levels[min(2, x/(w/3))]) / 255
			}
			p[y*w+x] = v
		}
	}
	const scale = 1.0
	orig := append([]float32(nil), p...)
	AddPoisson(p, w*h, 1, scale, false, rng.New(6))
	var ratio []float64
	for i, l := range levels {
		var d []float64
		for y := 16; y < h; y++ {
			for x := i * (w / 3); x < (i+1)*(w/3) && x < w; x++ {
				d = append(d, float64(p[y*w+x]-orig[y*w+x]))
			}
		}
		m, s := meanStd(d)
		want := float64(l) / 255 * scale * scale / 256
		if math.Abs(s*s-want) > 0.1*want || math.Abs(m) > 3*s/math.Sqrt(float64(len(d))) {
			t.Errorf("level %d: noise mean %.2e variance %.3e, want 0 and %.3e", l, m, s*s, want)
		}
		ratio = append(ratio, s*s/(float64(l)/255))
	}
	t.Logf("variance / intensity per patch: %.3e", ratio)
}

// TestGrayPoissonIdenticalChannels: gray noise is one plane added to all
// three channels. (A flat image would have one level, vals = 1 and noise
// of order 1; the ramp keeps the noise small enough not to clip.)
func TestGrayPoissonIdenticalChannels(t *testing.T) {
	const w, h = 256, 64
	n := w * h
	p := make([]float32, 3*n)
	for i := range n {
		v := float32(i%w) / w * 0.4
		p[i], p[n+i], p[2*n+i] = 0.2+v, 0.3+v, 0.4+v
	}
	orig := append([]float32(nil), p...)
	AddPoisson(p, n, 3, 1, true, rng.New(7))
	moved := 0
	for i := range n {
		d0, d1, d2 := p[i]-orig[i], p[n+i]-orig[n+i], p[2*n+i]-orig[2*n+i]
		if max(p[i], p[n+i], p[2*n+i]) == 1 || min(p[i], p[n+i], p[2*n+i]) == 0 {
			continue // clamped
		}
		if math.Abs(float64(d0-d1)) > 1e-6 || math.Abs(float64(d0-d2)) > 1e-6 {
			t.Fatalf("pixel %d: channel noise %v %v %v", i, d0, d1, d2)
		}
		if d0 != 0 {
			moved++
		}
	}
	if moved < n/2 {
		t.Fatalf("only %d of %d pixels got noise", moved, n)
	}
}

// blockiness is the mean absolute horizontal step across 8-pixel block
// boundaries divided by the mean step inside blocks.
func blockiness(p []float32, w, h int) float64 {
	var at, in, na, ni float64
	for y := range h {
		for x := 0; x+1 < w; x++ {
			d := math.Abs(float64(p[y*w+x+1] - p[y*w+x]))
			if x%8 == 7 {
				at, na = at+d, na+1
			} else {
				in, ni = in+d, ni+1
			}
		}
	}
	return (at / na) / (in / ni)
}

func meanAbsDiff(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += math.Abs(float64(a[i] - b[i]))
	}
	return s / float64(len(a))
}

func TestJPEGCompresses(t *testing.T) {
	const w, h = 128, 96
	src := testPlanes(w, h, 3, 8)
	// Smooth the texture so block edges, not noise, dominate the steps.
	for c := range 3 {
		copy(src[c*w*h:], filter(src[c*w*h:(c+1)*w*h], w, h, 1, KernelParams{Type: KernelIso, Size: 7, SigmaX: 1.5, SigmaY: 1.5}))
	}
	for _, q := range []int{30, 60, 95} {
		once, err := JPEG(src, w, h, 3, q)
		if err != nil {
			t.Fatal(err)
		}
		twice, err := JPEG(once, w, h, 3, q)
		if err != nil {
			t.Fatal(err)
		}
		loss, again := meanAbsDiff(src, once), meanAbsDiff(once, twice)
		t.Logf("q=%d: first pass changes %.5f, second %.5f; blockiness %.3f (source %.3f)", q, loss, again, blockiness(once, w, h), blockiness(src, w, h))
		if loss == 0 || again > 0.5*loss {
			t.Errorf("q=%d: re-encoding is not near-idempotent: %.5f then %.5f", q, loss, again)
		}
	}
	q30, _ := JPEG(src, w, h, 3, 30)
	q95, _ := JPEG(src, w, h, 3, 95)
	if b30, b0 := blockiness(q30, w, h), blockiness(src, w, h); b30 < 1.2*b0 || b30 < blockiness(q95, w, h) {
		t.Errorf("blockiness at q=30 %.3f, source %.3f", b30, b0)
	}
	g, err := JPEG(src[:w*h], w, h, 1, 50)
	if err != nil || len(g) != w*h {
		t.Fatalf("gray JPEG: %v", err)
	}
}

// TestPoissonSampler checks the table sampler's mean and variance (both
// lambda for a Poisson law).
func TestPoissonSampler(t *testing.T) {
	var ts poissonTables
	r := rng.New(13)
	for i, lam := range []float64{0, 0.3, 5, 64, 255} {
		const n = 40000
		d := make([]float64, n)
		for j := range d {
			d[j] = float64(ts.sample(uint8(i), lam, r))
		}
		m, s := meanStd(d)
		if tol := 5 * math.Sqrt(lam/n); math.Abs(m-lam) > tol+1e-12 || math.Abs(s*s-lam) > 0.05*lam+1e-12 {
			t.Errorf("lambda %v: mean %.4f variance %.4f", lam, m, s*s)
		}
	}
}
