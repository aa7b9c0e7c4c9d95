package sr

import (
	"context"
	"math"
	"slices"
	"testing"

	"tsdsr/imageio"
	"tsdsr/metrics"
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

// TestOneStepShiftsCancelTheTokenGrid: averaging the restoration over
// token-grid phases (ModelOptions.Shifts) removes most of the 16-pixel
// grid that a student whose every token carries the same 2 x 2 latent
// pattern (an output bias) draws on a smooth photo-like input; 1 phase is
// the plain pass; bad counts are refused.
func TestOneStepShiftsCancelTheTokenGrid(t *testing.T) {
	o := tinyOneStep(t, false) // zero velocity but for the bias below
	// proj_out maps a token to its patch as (row, column, channel).
	bias := o.Student.Params.Get("proj_out.bias")
	for i := range bias.Data {
		if i < 16 {
			bias.Data[i] += 1.5 // the patch's top-left latent pixel
		} else {
			bias.Data[i] -= 0.5
		}
	}
	in := imageio.NewImage(32, 32, 3)
	for c := range 3 {
		p := in.Plane(c)
		for y := range 32 {
			for x := range 32 {
				p[y*32+x] = float32(0.3 + 0.4*math.Sin(float64(x+2*c)/7)*math.Cos(float64(y)/9))
			}
		}
	}
	grid, err := metrics.New("grid", metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plain, _ := o.Upscale(ctx, in)
	g := map[int]float64{}
	for _, n := range []int{1, 2, 4} {
		out, err := o.UpscaleWith(ctx, in, &ModelOptions{Shifts: n})
		if err != nil {
			t.Fatal(err)
		}
		if out.Width != 128 || out.Height != 128 {
			t.Fatalf("%d phases: %dx%d", n, out.Width, out.Height)
		}
		if n == 1 && !slices.Equal(out.Pix, plain.Pix) {
			t.Fatal("one phase differs from the plain pass")
		}
		if g[n], err = grid.Compute(out, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("grid: 1 phase %.4f, 2 phases %.4f, 4 phases %.4f", g[1], g[2], g[4])
	if !(g[2] < 0.2*g[1] && g[4] < 0.2*g[1]) {
		t.Errorf("grid %.4f (1 phase), %.4f (2), %.4f (4): want a fifth of it at most", g[1], g[2], g[4])
	}
	// The content moves back with each shift: without the bias the
	// phases agree (an unshifted-back phase would be 8 pixels off, a mean
	// difference of 0.06 on this input).
	zero := tinyOneStep(t, false)
	one, _ := zero.Upscale(ctx, in)
	four, err := zero.UpscaleWith(ctx, in, &ModelOptions{Shifts: 4})
	if err != nil {
		t.Fatal(err)
	}
	var diff float64
	for i, v := range four.Pix {
		diff += math.Abs(float64(v - one.Pix[i]))
	}
	if diff /= float64(len(one.Pix)); diff > 0.01 {
		t.Errorf("4 phases of a zero student differ from one by %.4f on average", diff)
	}
	for _, n := range []int{-1, 3, 8} {
		if err := ValidateShifts(n); err == nil {
			t.Errorf("%d phases accepted", n)
		}
	}
}
