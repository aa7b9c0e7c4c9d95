package sr

import (
	"context"
	"errors"
	"image"
	"image/color"
	"math"
	"testing"

	"tsdsr/imageio"
)

// testImage returns a deterministic w x h image with smooth gradients plus
// a checker so that both low and high frequencies are present.
func testImage(w, h, channels int) *imageio.Image {
	m := imageio.NewImage(w, h, channels)
	for c := range channels {
		p := m.Plane(c)
		for y := range h {
			for x := range w {
				v := 0.2 + 0.5*float64(x+c*y)/float64(w+h*channels)
				if (x+y)%2 == 0 {
					v += 0.1
				}
				p[y*w+x] = float32(v)
			}
		}
	}
	return m
}

// nearest is a test model: nearest-neighbour enlargement that insists on
// sides that are a multiple of mult and records the sizes it saw.
type nearest struct {
	mult int
	seen [][2]int
	bias float32 // added to channel 0, to simulate colour drift
}

func (n *nearest) Name() string  { return "nearest" }
func (n *nearest) Scale() int    { return 4 }
func (n *nearest) Multiple() int { return n.mult }
func (n *nearest) Upscale(ctx context.Context, img *imageio.Image) (*imageio.Image, error) {
	if img.Width%n.mult != 0 || img.Height%n.mult != 0 {
		return nil, errors.New("side not a multiple")
	}
	n.seen = append(n.seen, [2]int{img.Width, img.Height})
	out := imageio.NewImage(img.Width*4, img.Height*4, img.Channels)
	for c := range img.Channels {
		src, dst := img.Plane(c), out.Plane(c)
		for y := range out.Height {
			for x := range out.Width {
				dst[y*out.Width+x] = src[(y/4)*img.Width+x/4]
				if c == 0 {
					dst[y*out.Width+x] += n.bias
				}
			}
		}
	}
	return out, nil
}

func TestBicubicConstantAndClamped(t *testing.T) {
	m := imageio.NewImage(5, 3, 3)
	for i := range m.Pix {
		m.Pix[i] = 0.25
	}
	m.Pix[0] = 1 // a bright corner makes bicubic overshoot; it must be clamped
	out, err := Bicubic{}.Upscale(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 20 || out.Height != 12 || out.Channels != 3 {
		t.Fatalf("got %dx%dx%d, want 20x12x3", out.Width, out.Height, out.Channels)
	}
	for i, v := range out.Pix {
		if v < 0 || v > 1 {
			t.Fatalf("value %d = %g outside [0,1]", i, v)
		}
	}
	if v := out.Plane(1)[5*20+10]; math.Abs(float64(v)-0.25) > 1e-6 {
		t.Fatalf("constant plane changed: %g", v)
	}
}

func TestPipelineKeepsGrayAlphaDepth(t *testing.T) {
	in := testImage(9, 6, 1)
	in.BitDepth = 16
	in.Alpha = make([]float32, 9*6)
	for i := range in.Alpha {
		in.Alpha[i] = float32(i%9) / 8
	}
	out, err := New(Bicubic{}, nil).UpscaleImage(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 36 || out.Height != 24 || out.Channels != 1 || out.BitDepth != 16 || len(out.Alpha) != 36*24 {
		t.Fatalf("got %dx%d ch=%d depth=%d alpha=%d", out.Width, out.Height, out.Channels, out.BitDepth, len(out.Alpha))
	}
	// The gray result must equal a plain bicubic upscale of the gray plane:
	// replication to RGB, the wavelet fix and luma must cancel out.
	want, _ := Bicubic{}.Upscale(context.Background(), &imageio.Image{Width: 9, Height: 6, Channels: 1, Pix: in.Pix, BitDepth: 16})
	for i := range out.Pix {
		if d := math.Abs(float64(out.Pix[i] - want.Pix[i])); d > 2e-6 {
			t.Fatalf("gray pixel %d: got %g want %g", i, out.Pix[i], want.Pix[i])
		}
	}
	// Alpha is the bicubic upscale of the alpha plane: opaque columns at
	// x=8 in the source stay near 1 at the right edge.
	if a := out.Alpha[10*36+35]; a < 0.9 || a > 1 {
		t.Fatalf("alpha at right edge = %g", a)
	}
}

func TestPipelinePadsAndCrops(t *testing.T) {
	for _, sz := range [][2]int{{1, 1}, {7, 13}, {16, 8}} {
		m := &nearest{mult: 8}
		in := testImage(sz[0], sz[1], 3)
		out, err := New(m, &Options{ColorFix: ColorFixNone}).UpscaleImage(context.Background(), in)
		if err != nil {
			t.Fatalf("%v: %v", sz, err)
		}
		pw, ph := roundUp(sz[0], 8), roundUp(sz[1], 8)
		if len(m.seen) != 1 || m.seen[0] != [2]int{pw, ph} {
			t.Fatalf("%v: model saw %v, want %dx%d", sz, m.seen, pw, ph)
		}
		if out.Width != 4*sz[0] || out.Height != 4*sz[1] {
			t.Fatalf("%v: output %dx%d", sz, out.Width, out.Height)
		}
		// Cropping must keep the image, not the padding: nearest upscale
		// means output pixel (4x,4y) equals input (x,y).
		for c := range 3 {
			for y := range sz[1] {
				for x := range sz[0] {
					if got, want := out.Plane(c)[4*y*out.Width+4*x], in.Plane(c)[y*sz[0]+x]; got != want {
						t.Fatalf("%v: c%d (%d,%d) = %g want %g", sz, c, x, y, got, want)
					}
				}
			}
		}
	}
}

func TestReflectIndex(t *testing.T) {
	// numpy.pad(range(4), (0, 8), "reflect") continues 2 1 0 1 2 3 2 1.
	want := []int{0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1}
	for i, w := range want {
		if got := reflectIndex(i, 4); got != w {
			t.Fatalf("reflectIndex(%d, 4) = %d want %d", i, got, w)
		}
	}
	if reflectIndex(5, 1) != 0 {
		t.Fatal("a single sample must repeat")
	}
}

func TestOutputSize(t *testing.T) {
	cases := []struct {
		o      Options
		w, h   int
		ow, oh int
	}{
		{Options{}, 10, 7, 40, 28},
		{Options{OutScale: 2.5}, 10, 7, 25, 18}, // round(17.5) = 18
		{Options{OutScale: 0.01}, 10, 7, 1, 1},
		{Options{Width: 100}, 10, 7, 100, 70},
		{Options{Height: 14}, 10, 7, 20, 14},
		{Options{Width: 33, Height: 5, OutScale: 3}, 10, 7, 33, 5},
	}
	for _, c := range cases {
		ow, oh, err := New(Bicubic{}, &c.o).OutputSize(c.w, c.h)
		if err != nil || ow != c.ow || oh != c.oh {
			t.Errorf("%+v on %dx%d: got %dx%d %v, want %dx%d", c.o, c.w, c.h, ow, oh, err, c.ow, c.oh)
		}
	}
	if _, _, err := New(Bicubic{}, &Options{OutScale: math.Inf(1)}).OutputSize(4, 4); !errors.Is(err, ErrOutputSize) {
		t.Errorf("infinite outscale: %v", err)
	}
}

func TestPipelineOutScaleResizes(t *testing.T) {
	in := testImage(10, 7, 3)
	out, err := New(Bicubic{}, &Options{OutScale: 2.5}).UpscaleImage(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 25 || out.Height != 18 {
		t.Fatalf("got %dx%d want 25x18", out.Width, out.Height)
	}
	for _, v := range out.Pix {
		if v < 0 || v > 1 {
			t.Fatalf("value %g outside [0,1]", v)
		}
	}
}

// naiveLow is the 2-D reference of waveletLow: a direct 3x3 convolution
// with replicate padding, as StableSR's wavelet_blur.
func naiveLow(src []float32, w, h int) []float32 {
	k := [3]float64{0.25, 0.5, 0.25}
	cur := append([]float32(nil), src...)
	for level := range waveletLevels {
		d := 1 << level
		next := make([]float32, len(cur))
		for y := range h {
			for x := range w {
				var s float64
				for j := -1; j <= 1; j++ {
					for i := -1; i <= 1; i++ {
						yy := min(max(y+j*d, 0), h-1)
						xx := min(max(x+i*d, 0), w-1)
						s += k[j+1] * k[i+1] * float64(cur[yy*w+xx])
					}
				}
				next[y*w+x] = float32(s)
			}
		}
		cur = next
	}
	return cur
}

func TestWaveletLowMatchesDirectConvolution(t *testing.T) {
	// Widths below, between and above 2x the largest dilation (32).
	for _, sz := range [][2]int{{37, 21}, {20, 40}, {5, 3}, {1, 1}, {70, 2}} {
		w, h := sz[0], sz[1]
		in := testImage(w, h, 1)
		got := append([]float32(nil), in.Pix...)
		waveletLowInPlace(got, w, h)
		want := naiveLow(in.Pix, w, h)
		for i := range got {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6 {
				t.Fatalf("%dx%d pixel %d: %g vs %g", w, h, i, got[i], want[i])
			}
		}
	}
}

func TestColorFixesRemoveDrift(t *testing.T) {
	in := testImage(24, 20, 3)
	ctx := context.Background()
	ref, err := New(Bicubic{}, &Options{ColorFix: ColorFixNone}).UpscaleImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	refMean, _ := meanStd(ref.Plane(0))
	// A model whose red channel drifts by +0.15: without a fix the mean is
	// off by 0.15, with either fix it comes back.
	for _, fix := range []ColorFix{ColorFixNone, ColorFixWavelet, ColorFixAdaIN} {
		out, err := New(&nearest{mult: 1, bias: 0.15}, &Options{ColorFix: fix}).UpscaleImage(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := meanStd(out.Plane(0))
		off := math.Abs(m - refMean)
		if fix == ColorFixNone && off < 0.1 || fix != ColorFixNone && off > 0.01 {
			t.Errorf("%s: red mean %.4f, bicubic %.4f", fix, m, refMean)
		}
	}
	// With bicubic as the model the wavelet fix is the identity.
	fixed, err := New(Bicubic{}, nil).UpscaleImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixed.Pix {
		if d := math.Abs(float64(fixed.Pix[i] - ref.Pix[i])); d > 1e-5 {
			t.Fatalf("wavelet fix changed bicubic pixel %d by %g", i, d)
		}
	}
}

func TestAdaINMatchesStatistics(t *testing.T) {
	content, style := testImage(16, 16, 3), testImage(16, 16, 3)
	for i := range style.Pix {
		style.Pix[i] = 0.5*style.Pix[i] + 0.3
	}
	out := AdaINColorFix(content.Pix, style.Pix, 16, 16)
	for c := range 3 {
		n := 256
		mo, so := meanStd(out[c*n : (c+1)*n])
		ms, ss := meanStd(style.Plane(c))
		// The 1e-5 added to the variances keeps stds within 1% here.
		if math.Abs(mo-ms) > 1e-5 || math.Abs(so-ss) > 0.01*ss {
			t.Errorf("channel %d: mean %g/%g std %g/%g", c, mo, ms, so, ss)
		}
	}
}

func TestPipelineDeterministicAndCancellable(t *testing.T) {
	in := testImage(31, 17, 3)
	p := New(Bicubic{}, &Options{OutScale: 3, ColorFix: ColorFixAdaIN})
	a, err := p.UpscaleImage(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.UpscaleImage(context.Background(), in)
	for i := range a.Pix {
		if a.Pix[i] != b.Pix[i] {
			t.Fatalf("pixel %d differs between runs", i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.UpscaleImage(ctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: got %v", err)
	}
}

func TestUpscaleStdImage(t *testing.T) {
	g := image.NewGray16(image.Rect(0, 0, 5, 4))
	for i := range 20 {
		g.SetGray16(i%5, i/5, color.Gray16{Y: uint16(i * 3000)})
	}
	out, err := New(Bicubic{}, nil).Upscale(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if out.Bounds().Dx() != 20 || out.Bounds().Dy() != 16 {
		t.Fatalf("size %v", out.Bounds())
	}
	if _, ok := out.(*image.Gray16); !ok {
		t.Fatalf("16-bit gray came back as %T", out)
	}
}
