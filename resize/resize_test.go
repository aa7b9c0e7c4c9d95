package resize

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
)

var pytorchFuncs = map[string]Func{"Bicubic": Bicubic, "Bilinear": Bilinear, "Area": Area, "Lanczos": Lanczos}

// TestBicubicHand checks upsampling [0 1] x4 against values worked out by
// hand from PyTorch's formulas (a = -0.75, x = (o+0.5)/4 - 0.5, clamped
// taps). They are dyadic, so float32 must hit them exactly; note the
// overshoot below 0 and above 1, which is kept.
func TestBicubicHand(t *testing.T) {
	want := []float32{-0.10986328125, -0.07177734375, 0.1044921875, 0.3603515625,
		0.6396484375, 0.8955078125, 1.07177734375, 1.10986328125}
	got := Bicubic([]float32{0, 1}, 2, 1, 8, 1)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("[0 1] x4 = %v, want %v", got, want)
		}
	}
	// The same along columns, and the 2x2 -> 8x8 case is the outer product
	// of the 1-D weights (v = want above is the weight of the second pixel).
	col := Bicubic([]float32{0, 1}, 1, 2, 1, 8)
	for i := range want {
		if col[i] != want[i] {
			t.Fatalf("column [0 1] x4 = %v, want %v", col, want)
		}
	}
	src := []float32{0.2, 0.9, 0.6, 0.1} // [[a b] [c d]]
	out := Bicubic(src, 2, 2, 8, 8)
	for y := range 8 {
		for x := range 8 {
			wy, wx := float64(want[y]), float64(want[x])
			e := (1-wy)*((1-wx)*0.2+wx*0.9) + wy*((1-wx)*0.6+wx*0.1)
			if d := math.Abs(float64(out[y*8+x]) - e); d > 1e-6 {
				t.Fatalf("2x2 x4 at (%d,%d): %v, want %v", x, y, out[y*8+x], e)
			}
		}
	}
}

// refBicubic is an independent float64 PyTorch bicubic: a direct 4x4 sum
// per output pixel, with the kernel written as the textbook piecewise
// cubic.
func refBicubic(src []float32, w, h, ow, oh int) []float64 {
	k := func(x float64) float64 {
		const a = -0.75
		x = math.Abs(x)
		switch {
		case x <= 1:
			return (a+2)*x*x*x - (a+3)*x*x + 1
		case x < 2:
			return a*x*x*x - 5*a*x*x + 8*a*x - 4*a
		}
		return 0
	}
	clamp := func(i, n int) int { return min(max(i, 0), n-1) }
	out := make([]float64, ow*oh)
	for oy := range oh {
		ry := (float64(oy)+0.5)*float64(h)/float64(oh) - 0.5
		fy := math.Floor(ry)
		for ox := range ow {
			rx := (float64(ox)+0.5)*float64(w)/float64(ow) - 0.5
			fx := math.Floor(rx)
			s := 0.0
			for j := -1; j <= 2; j++ {
				for i := -1; i <= 2; i++ {
					v := float64(src[clamp(int(fy)+j, h)*w+clamp(int(fx)+i, w)])
					s += k(ry-fy-float64(j)) * k(rx-fx-float64(i)) * v
				}
			}
			out[oy*ow+ox] = s
		}
	}
	return out
}

func randPlane(w, h int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]float32, w*h)
	for i := range p {
		p[i] = r.Float32()
	}
	return p
}

func TestBicubicReference(t *testing.T) {
	for _, c := range [][4]int{{13, 7, 29, 20}, {29, 20, 13, 7}, {5, 5, 20, 20}, {8, 6, 3, 10}, {1, 1, 4, 3}, {7, 1, 3, 5}, {16, 16, 16, 9}} {
		w, h, ow, oh := c[0], c[1], c[2], c[3]
		src := randPlane(w, h, uint64(w*100+h))
		got := Bicubic(src, w, h, ow, oh)
		want := refBicubic(src, w, h, ow, oh)
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); d > 2e-6 {
				t.Fatalf("%v: sample %d = %v, want %v", c, i, got[i], want[i])
			}
		}
	}
}

// TestBilinearAreaHand checks small cases whose PyTorch results are well
// known (e.g. F.interpolate([0, 1], size=4, mode="linear") = [0, .25, .75, 1]).
func TestBilinearAreaHand(t *testing.T) {
	cases := []struct {
		name string
		f    Func
		src  []float32
		want []float32
	}{
		{"bilinear up", Bilinear, []float32{0, 1}, []float32{0, 0.25, 0.75, 1}},
		{"bilinear down", Bilinear, []float32{0, 1, 2, 3}, []float32{0.5, 2.5}},
		{"bilinear 3->2", Bilinear, []float32{0, 1, 2}, []float32{0.25, 1.75}},
		{"area down", Area, []float32{0, 1, 2, 3}, []float32{0.5, 2.5}},
		{"area 6->4", Area, []float32{0, 1, 2, 3, 4, 5}, []float32{0.5, 1.5, 3.5, 4.5}},
		{"area 2->3", Area, []float32{0, 1}, []float32{0, 0.5, 1}},
		{"area 5->1", Area, []float32{1, 2, 3, 4, 5}, []float32{3}},
	}
	for _, c := range cases {
		for _, vertical := range []bool{false, true} {
			w, h, ow, oh := len(c.src), 1, len(c.want), 1
			if vertical {
				w, h, ow, oh = 1, len(c.src), 1, len(c.want)
			}
			got := c.f(c.src, w, h, ow, oh)
			for i := range c.want {
				if math.Abs(float64(got[i]-c.want[i])) > 1e-6 {
					t.Errorf("%s (vertical %v): %v, want %v", c.name, vertical, got, c.want)
					break
				}
			}
		}
	}
	// Bilinear in 2-D is the product of the 1-D weights.
	got := Bilinear([]float32{0, 1, 2, 3}, 2, 2, 4, 4)
	row := []float32{0, 0.25, 0.75, 1}
	for y := range 4 {
		for x := range 4 {
			if e := row[x] + 2*row[y]; math.Abs(float64(got[y*4+x]-e)) > 1e-6 {
				t.Fatalf("2x2 -> 4x4 at (%d,%d): %v, want %v", x, y, got[y*4+x], e)
			}
		}
	}
}

func TestConstantAndSizes(t *testing.T) {
	sizes := [][2]int{{1, 1}, {1, 7}, {5, 1}, {3, 4}, {17, 9}, {64, 64}, {31, 33}}
	for name, f := range pytorchFuncs {
		for _, in := range sizes {
			for _, out := range sizes {
				src := make([]float32, in[0]*in[1])
				for i := range src {
					src[i] = 0.625
				}
				got := f(src, in[0], in[1], out[0], out[1])
				if len(got) != out[0]*out[1] {
					t.Fatalf("%s %v -> %v: %d values", name, in, out, len(got))
				}
				for i, v := range got {
					if math.Abs(float64(v)-0.625) > 1e-6 {
						t.Fatalf("%s %v -> %v: sample %d = %v, want 0.625", name, in, out, i, v)
					}
				}
			}
		}
		// Same size is the identity and does not alias the input.
		src := randPlane(6, 5, 3)
		got := f(src, 6, 5, 6, 5)
		for i := range src {
			if got[i] != src[i] {
				t.Fatalf("%s: same-size resize changed sample %d", name, i)
			}
		}
		got[0] = -1
		if src[0] == -1 {
			t.Fatalf("%s: same-size resize returned its input", name)
		}
	}
}

// TestRoundTrip downscales a smooth image by 2 and back; every method must
// recover it closely (area upsampling by 2 is pixel replication, hence its
// looser bound).
func TestRoundTrip(t *testing.T) {
	const n = 64
	src := make([]float32, n*n)
	for y := range n {
		for x := range n {
			src[y*n+x] = float32(0.5 + 0.3*math.Sin(float64(x)/7)*math.Cos(float64(y)/9))
		}
	}
	for name, f := range pytorchFuncs {
		back := f(f(src, n, n, n/2, n/2), n/2, n/2, n, n)
		se := 0.0
		// Ignore a 4-pixel border where clamping dominates.
		for y := 4; y < n-4; y++ {
			for x := 4; x < n-4; x++ {
				d := float64(back[y*n+x] - src[y*n+x])
				se += d * d
			}
		}
		bound := 0.005
		if name == "Area" {
			bound = 0.02
		}
		rmse := math.Sqrt(se / float64((n-8)*(n-8)))
		if rmse > bound {
			t.Errorf("%s: down-up RMSE %.4f", name, rmse)
		}
	}
}

// TestLanczos checks interpolation at source positions and antialiasing.
func TestLanczos(t *testing.T) {
	// Upscaling x3, output 3i+1 is centred on input i, where the Lanczos
	// kernel is 1 at 0 and 0 at the other integers.
	src := randPlane(9, 4, 7)
	up := Lanczos(src, 9, 4, 27, 12)
	for y := range 4 {
		for x := range 9 {
			if d := math.Abs(float64(up[(3*y+1)*27+3*x+1] - src[y*9+x])); d > 1e-6 {
				t.Fatalf("x3 at source (%d,%d): %v, want %v", x, y, up[(3*y+1)*27+3*x+1], src[y*9+x])
			}
		}
	}
	// Downscaling stripes of period 3 by 4: the antialiased filter gives
	// close to the mean 1/3 everywhere; PyTorch bicubic (no antialias)
	// aliases.
	const w = 96
	stripes := make([]float32, w)
	for x := range stripes {
		if x%3 == 0 {
			stripes[x] = 1
		}
	}
	dev := func(p []float32) float64 {
		m := 0.0
		for _, v := range p[2 : len(p)-2] {
			m = max(m, math.Abs(float64(v)-1.0/3))
		}
		return m
	}
	if d := dev(Lanczos(stripes, w, 1, w/4, 1)); d > 0.03 {
		t.Errorf("Lanczos /4 of period-3 stripes deviates %.3f from the mean", d)
	}
	if d := dev(Bicubic(stripes, w, 1, w/4, 1)); d < 0.1 {
		t.Errorf("Bicubic /4 unexpectedly antialiased (deviation %.3f)", d)
	}
}

func TestImage(t *testing.T) {
	m := imageio.NewImage(5, 4, 3)
	m.BitDepth = 16
	m.Alpha = make([]float32, 20)
	for c := range 3 {
		for i := range 20 {
			m.Plane(c)[i] = float32(c) / 4
		}
	}
	for i := range m.Alpha {
		m.Alpha[i] = 0.5
	}
	r := Image(m, 11, 7, Bicubic)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Width != 11 || r.Height != 7 || r.Channels != 3 || r.BitDepth != 16 || r.Alpha == nil {
		t.Fatalf("got %dx%dx%d depth %d alpha %v", r.Width, r.Height, r.Channels, r.BitDepth, r.Alpha != nil)
	}
	for c := range 3 {
		for _, v := range r.Plane(c) {
			if math.Abs(float64(v)-float64(c)/4) > 1e-6 {
				t.Fatalf("plane %d: %v", c, v)
			}
		}
	}
	for _, v := range r.Alpha {
		if math.Abs(float64(v)-0.5) > 1e-6 {
			t.Fatalf("alpha %v", v)
		}
	}
}

// TestThreadsAgree checks that the result does not depend on the number of
// workers.
func TestThreadsAgree(t *testing.T) {
	src := randPlane(200, 150, 11)
	for name, f := range pytorchFuncs {
		old := parallel.SetThreads(1)
		one := f(src, 200, 150, 317, 91)
		parallel.SetThreads(4)
		four := f(src, 200, 150, 317, 91)
		parallel.SetThreads(old)
		for i := range one {
			if one[i] != four[i] {
				t.Fatalf("%s: sample %d differs between 1 and 4 threads", name, i)
			}
		}
	}
}

func TestBadArgsPanic(t *testing.T) {
	for name, f := range pytorchFuncs {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s accepted a plane of the wrong length", name)
				}
			}()
			f(make([]float32, 5), 2, 2, 4, 4)
		}()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s accepted output size 0", name)
				}
			}()
			f(make([]float32, 4), 2, 2, 0, 4)
		}()
	}
}

func BenchmarkBicubic128to512RGB(b *testing.B) {
	m := imageio.NewImage(128, 128, 3)
	copy(m.Pix, randPlane(128, 128*3, 1))
	b.SetBytes(int64(512 * 512 * 3 * 4))
	for b.Loop() {
		Image(m, 512, 512, Bicubic)
	}
}

func BenchmarkLanczos128to512RGB(b *testing.B) {
	m := imageio.NewImage(128, 128, 3)
	copy(m.Pix, randPlane(128, 128*3, 1))
	for b.Loop() {
		Image(m, 512, 512, Lanczos)
	}
}
