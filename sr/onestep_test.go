package sr

import (
	"context"
	"math"
	"testing"

	"tsdsr/imageio"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

func tinyOneStep(t *testing.T, randomWeights bool) *OneStep {
	t.Helper()
	enc, dec, err := taesd.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	cfg := mmdit.Config{SampleSize: 8, PatchSize: 2, InChannels: 16, NumLayers: 1, AttentionHeadDim: 8,
		NumAttentionHeads: 2, JointAttentionDim: 8, CaptionProjectionDim: 16, PooledProjectionDim: 8,
		OutChannels: 16, PosEmbedMaxSize: 32, ContextTokens: 2}
	m, err := mmdit.New(cfg, nn.NewParams(rng.New(1)))
	if err != nil {
		t.Fatal(err)
	}
	if randomWeights {
		r := rng.New(2)
		for _, p := range m.Params.List() {
			r.FillNormal(p.T.Data, 0, 0.05)
		}
	}
	return &OneStep{AE: TAESD{Enc: enc, Dec: dec}, Student: m, ModelName: "tiny", Tile: 8, Overlap: 2}
}

func sineImage(w, h int) *imageio.Image {
	m := imageio.NewImage(w, h, 3)
	for i := range m.Pix {
		m.Pix[i] = float32(0.5 + 0.4*math.Sin(float64(i)*0.37))
	}
	return m
}

// TestOneStepZeroStudentIsAutoencodedBicubic: the untrained student
// predicts zero velocity, so the output is the TAESD3 round trip of the
// bicubic upscale, close to bicubic itself.
func TestOneStepZeroStudentIsAutoencodedBicubic(t *testing.T) {
	o := tinyOneStep(t, false)
	in := sineImage(16, 12)
	out, err := o.Upscale(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 64 || out.Height != 48 || out.Channels != 3 {
		t.Fatalf("output %dx%dx%d", out.Width, out.Height, out.Channels)
	}
	bic, _ := Bicubic{Factor: 4}.Upscale(context.Background(), in)
	var se float64
	for i, v := range out.Pix {
		d := float64(v - bic.Pix[i])
		se += d * d
	}
	if rmse := math.Sqrt(se / float64(len(out.Pix))); rmse > 0.1 {
		t.Fatalf("zero-velocity output differs from bicubic by RMSE %.3f", rmse)
	}
	if _, err := o.Upscale(context.Background(), sineImage(15, 12)); err == nil {
		t.Fatal("accepted a side that is not a multiple of Multiple()")
	}
}

// TestOneStepTilingBlendsAndIsDeterministic checks the Gaussian-blended
// latent tiles: one tile covering everything equals the untiled pass, a
// tiled pass stays close to it, and results repeat exactly.
func TestOneStepTilingBlendsAndIsDeterministic(t *testing.T) {
	o := tinyOneStep(t, true)
	r := rng.New(3)
	z := tensor.New(1, 16, 12, 20)
	r.FillNormal(z.Data, 0, 1)
	ctx := context.Background()
	defer tensor.NoGrad()()
	full, _ := o.velocity(ctx, z, 0, 0)
	one, _ := o.velocity(ctx, z, 32, 4)
	if d := maxAbs(full, one); d != 0 {
		t.Fatalf("single covering tile differs from untiled by %g", d)
	}
	a, _ := o.velocity(ctx, z, 8, 4)
	b, _ := o.velocity(ctx, z, 8, 4)
	if maxAbs(a, b) != 0 {
		t.Fatal("tiled velocity is not deterministic")
	}
	if d := maxAbs(a, full); d == 0 || math.IsNaN(d) {
		t.Fatalf("tiled velocity: max difference %g (expected small but non-zero)", d)
	}
	if got := tileStarts(20, 8, 4); len(got) != 4 || got[3] != 12 {
		t.Fatalf("tileStarts(20, 8, 4) = %v", got)
	}
}

func maxAbs(a, b *tensor.Tensor) float64 {
	var d float64
	for i := range a.Data {
		d = math.Max(d, math.Abs(float64(a.Data[i]-b.Data[i])))
	}
	return d
}

// TestOneStepShiftsCancelTheTokenGrid: averaging the student over token-grid
// phases (ModelOptions.Shifts) removes the part of its prediction that
// alternates with the latent column and row parity, a pattern tied to its
// 2 x 2 patches; 1 phase is the plain pass; bad counts are refused.
func TestOneStepShiftsCancelTheTokenGrid(t *testing.T) {
	o := tinyOneStep(t, true)
	z := tensor.New(1, 16, 16, 16)
	rng.New(4).FillNormal(z.Data, 0, 0.1)
	ctx := context.Background()
	// parity is the mean |prediction . (-1)^x| and |. (-1)^y| per channel.
	parity := func(v *tensor.Tensor) float64 {
		var s float64
		for c := range 16 {
			var ax, ay float64
			for y := range 16 {
				for x := range 16 {
					d := float64(v.Data[(c*16+y)*16+x])
					ax += d * float64(1-2*(x%2))
					ay += d * float64(1-2*(y%2))
				}
			}
			s += math.Abs(ax)/256 + math.Abs(ay)/256
		}
		return s / 32
	}
	plain, _ := o.velocity(ctx, z, 0, 0)
	p := map[int]float64{}
	for _, n := range []int{1, 2, 4} {
		v, err := o.Velocity(ctx, z, &ModelOptions{Tile: 32, Shifts: n})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && maxAbs(v, plain) != 0 {
			t.Fatal("one phase differs from the plain pass")
		}
		p[n] = parity(v)
	}
	t.Logf("parity amplitude: 1 phase %.4g, 2 phases %.4g, 4 phases %.4g", p[1], p[2], p[4])
	if !(p[2] < 0.1*p[1] && p[4] < 0.1*p[1]) {
		t.Errorf("parity amplitude %.4g (1 phase), %.4g (2), %.4g (4): want a tenth of it at most", p[1], p[2], p[4])
	}
	for _, n := range []int{-1, 3, 8} {
		if err := ValidateShifts(n); err == nil {
			t.Errorf("%d phases accepted", n)
		}
	}
	img, err := o.UpscaleWith(ctx, sineImage(16, 12), &ModelOptions{Shifts: 2})
	if err != nil || img.Width != 64 || img.Height != 48 {
		t.Fatalf("2 phases: %v, %v", img, err)
	}
}
