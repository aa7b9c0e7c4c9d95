package distill

import (
	"math"
	"slices"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// TestDiscriminatorLearns: on latents that differ in their mean, the hinge
// loss falls from its starting value (about 2) toward zero, and the logits
// come one per 4 x 4 patch.
func TestDiscriminatorLearns(t *testing.T) {
	r := rng.New(3)
	d := NewDiscriminator(r.Child(0), 16, 32, 2)
	if y := d.Forward(randn(r, 0, 1, 2, 16, 8, 12)); !tensor.SameShape(y.Shape, []int{2, 1, 2, 3}) {
		t.Fatalf("logits %v, want [2 1 2 3]", y.Shape)
	}
	opt := nn.NewAdamW(d.Params.Trainable(), nn.AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	var first, last float64
	for i := range 40 {
		real, fake := randn(r, 0.5, 1, 2, 16, 8, 8), randn(r, -0.5, 1, 2, 16, 8, 8)
		opt.ZeroGrad()
		l := DiscLoss(d, real, fake)
		l.Backward()
		opt.Step()
		if i == 0 {
			first = float64(l.Item())
		}
		last = float64(l.Item())
	}
	if first < 1.5 || last > 0.3*first {
		t.Errorf("hinge loss %.3f -> %.3f over 40 steps; want a fall to under 30%%", first, last)
	}
	// The student's loss moves its input toward "real": a step along
	// -dAdv/dz raises the mean logit.
	z := randn(r, -0.5, 1, 2, 16, 8, 8)
	z.SetRequiresGrad(true)
	adv := AdvLoss(d, z)
	adv.Backward()
	moved := tensor.New(z.Shape...)
	for i, g := range z.Grad.Data {
		moved.Data[i] = z.Data[i] - 0.1*g/float32(math.Sqrt(float64(sumSquares(z.Grad.Data))))
	}
	if after := AdvLoss(d, moved).Item(); after >= adv.Item() {
		t.Errorf("adversarial loss %.4f -> %.4f after a step against its gradient", adv.Item(), after)
	}
}

func sumSquares(x []float32) float32 {
	s := float32(0)
	for _, v := range x {
		s += v * v
	}
	return s
}

// TestAdversarialResumeIsExact: with the adversarial term the
// discriminator and its optimiser are checkpointed like the other parts,
// and the step reports its losses.
func TestAdversarialResumeIsExact(t *testing.T) {
	cfg := tinyRecipe()
	cfg.WAdv, cfg.LRDisc = 0.1, 1e-3
	straight, resumed := straightAndResumed(t, cfg)
	sameParams(t, "discriminator", straight.OptDisc.Params(), resumed.OptDisc.Params())
	if resumed.OptDisc.Steps() != 4 {
		t.Errorf("discriminator steps %d, want 4", resumed.OptDisc.Steps())
	}
	m, err := straight.Step(tinyBatch(9), rng.New(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"adv", "disc", "disc_grad_norm", "lr_disc"} {
		if v, ok := m[k]; !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("metric %s = %v, %v", k, v, ok)
		}
	}
	cfg.LRDisc = 0
	if err := cfg.Validate(); err == nil {
		t.Error("--w-adv without a discriminator learning rate accepted")
	}
}

// TestPixelDiscriminator: with --adv-space pixel the discriminator takes
// RGB (one logit per 16 x 16 pixels), trains on the decoded output against
// the HR crops, is checkpointed and resumes bit for bit, and the step's
// total loss still adds up.
func TestPixelDiscriminator(t *testing.T) {
	d := NewDiscriminator(rng.New(1), 3, pixelDiscWidth, pixelDiscDowns)
	if y := d.Forward(randn(rng.New(2), 0, 1, 1, 3, 64, 32)); !tensor.SameShape(y.Shape, []int{1, 1, 4, 2}) {
		t.Fatalf("pixel logits %v, want [1 1 4 2]", y.Shape)
	}
	cfg := tinyRecipe()
	cfg.Reg, cfg.WAdv, cfg.LRDisc, cfg.AdvSpace = RegNone, 0.1, 1e-3, AdvPixel
	tr, err := NewTrainer(cfg, tinyPrior(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(tinyBatch(0), rng.New(1)); err == nil {
		t.Error("a pixel discriminator without decoder and HR crops accepted")
	}
	straight, resumed := straightAndResumed(t, cfg)
	sameParams(t, "pixel discriminator", straight.OptDisc.Params(), resumed.OptDisc.Params())
	if c := straight.Disc.convs[0].Weight.Shape; c[1] != 3 {
		t.Errorf("first convolution %v, want 3 input channels", c)
	}
	m, err := straight.Step(tinyPixelBatch(9), rng.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if want := m["mse"] + cfg.WAdv*m["adv"]; math.Abs(m["loss"]-want) > 1e-6*(1+math.Abs(want)) {
		t.Errorf("loss %g, want mse + w_adv adv = %g", m["loss"], want)
	}
	cfg.AdvSpace = "rgb"
	if err := cfg.Validate(); err == nil {
		t.Error("adversarial space rgb accepted")
	}
}

// TestAdvShift: the discriminator's random crop takes the same window of
// real and fake, at every phase of its patch over a run's steps, keeps
// resume exact, and refuses a crop that leaves a partial patch.
func TestAdvShift(t *testing.T) {
	cfg := tinyRecipe()
	cfg.Reg, cfg.WAdv, cfg.LRDisc, cfg.AdvSpace, cfg.AdvShift = RegNone, 0.1, 1e-3, AdvPixel, DiscPatch(AdvPixel)
	if cfg.AdvShift != 16 || DiscPatch(AdvLatent) != 4 || DiscPatch("") != 4 {
		t.Fatalf("patches %d (pixel), %d (latent), want 16 and 4", DiscPatch(AdvPixel), DiscPatch(AdvLatent))
	}
	tr, err := NewTrainer(cfg, tinyPrior(t))
	if err != nil {
		t.Fatal(err)
	}
	x := randn(rng.New(3), 0, 1, 2, 3, 64, 64)
	seen := map[[2]int]bool{}
	for s := range 400 {
		fake, real, err := tr.shiftCrop(x, x, rng.New(uint64(s)))
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(fake.Shape, []int{2, 3, 48, 48}) || !slices.Equal(fake.Data, real.Data) {
			t.Fatalf("crops %v and %v differ or are not 48 x 48", fake.Shape, real.Shape)
		}
		// Find the offset: the crop's first element in x's first plane.
		off := [2]int{-1, -1}
		for dy := range 16 {
			for dx := range 16 {
				if x.Data[dy*64+dx] == fake.Data[0] && x.Data[(dy+47)*64+dx+47] == fake.Data[47*48+47] {
					off = [2]int{dy, dx}
				}
			}
		}
		if off[0] < 0 {
			t.Fatalf("seed %d: the crop is no 48 x 48 window at an offset in [0, 16)", s)
		}
		seen[off] = true
	}
	if len(seen) < 150 {
		t.Errorf("%d distinct offsets in 400 steps, want most of the 256", len(seen))
	}
	straight, resumed := straightAndResumed(t, cfg)
	sameParams(t, "shifted pixel discriminator", straight.OptDisc.Params(), resumed.OptDisc.Params())
	straight.Config.AdvShift = 8 // 64 - 8 = 56 pixels: three and a half patches
	if _, err := straight.Step(tinyPixelBatch(0), rng.New(1)); err == nil || !strings.Contains(err.Error(), "patch") {
		t.Errorf("a shift leaving a partial patch: error %v", err)
	}
	cfg.AdvShift = -1
	if err := cfg.Validate(); err == nil {
		t.Error("a negative shift accepted")
	}
}
