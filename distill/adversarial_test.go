package distill

import (
	"math"
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
	d := NewDiscriminator(r.Child(0), 16, 32)
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
