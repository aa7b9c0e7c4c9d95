package nn

import (
	"math"
	"testing"

	"tsdsr/rng"
	"tsdsr/tensor"
)

// convNet is a tiny three-layer conv net.
type convNet struct{ c1, c2, c3 *Conv2d }

func newConvNet(p *Params, ch int) *convNet {
	return &convNet{
		c1: NewConv2d(p, "conv_in", Conv2dConfig{In: 3, Out: ch, Kernel: 3, Padding: 1}),
		c2: NewConv2d(p, "mid", Conv2dConfig{In: ch, Out: ch, Kernel: 3, Padding: 1}),
		c3: NewConv2d(p, "conv_out", Conv2dConfig{In: ch, Out: 3, Kernel: 3, Padding: 1}),
	}
}

func (m *convNet) forward(x *tensor.Tensor) *tensor.Tensor {
	h := tensor.ReLU(m.c1.Forward(x)) // [N, ch, H, W]
	h = tensor.ReLU(m.c2.Forward(h))  // [N, ch, H, W]
	return m.c3.Forward(h)            // [N, 3, H, W]
}

// tinyTransformer is a Linear embedding, one pre-LN block (multi-head
// attention and a GELU MLP, diffusers names) and an output projection.
type tinyTransformer struct {
	embed, out   *Linear
	norm1, norm2 *LayerNorm
	normOut      *LayerNorm
	blk          *block
	heads        int
}

func newTinyTransformer(p *Params, in, dim, heads int) *tinyTransformer {
	return &tinyTransformer{
		embed:   NewLinear(p, "proj_in", in, dim, true),
		norm1:   NewLayerNorm(p, "transformer_blocks.0.norm1", dim, 1e-6, true),
		norm2:   NewLayerNorm(p, "transformer_blocks.0.norm2", dim, 1e-6, true),
		blk:     blockLinears(p.Sub("transformer_blocks.0"), dim, 4*dim, true), // the model owns both norms
		normOut: NewLayerNorm(p, "norm_out", dim, 1e-6, true),
		out:     NewLinear(p, "proj_out", dim, in, true),
		heads:   heads,
	}
}

func (m *tinyTransformer) forward(x *tensor.Tensor) *tensor.Tensor {
	b := m.blk
	h := m.embed.Forward(x) // [N, L, dim]
	n := m.norm1.Forward(h)
	h = tensor.Add(h, b.o.Forward(tensor.Attention(b.q.Forward(n), b.k.Forward(n), b.v.Forward(n), m.heads)))
	n = m.norm2.Forward(h)
	h = tensor.Add(h, b.ff2.Forward(tensor.GELU(b.ff0.Forward(n)))) // [N, L, dim]
	return m.out.Forward(m.normOut.Forward(h))                      // [N, L, in]
}

// fit trains the trainable parameters of p to map x to target with AdamW
// and a cosine schedule, returning the first and last losses.
func fit(p *Params, forward func(*tensor.Tensor) *tensor.Tensor, x, target *tensor.Tensor, steps int, lr float64) (first, last float32) {
	cfg := DefaultAdamW()
	cfg.WeightDecay = 0
	o := NewAdamW(p.Trainable(), cfg)
	sched := CosineWarmup(lr, 10, steps)
	for s := range steps {
		o.ZeroGrad()
		loss := tensor.MSE(forward(x), target)
		loss.Backward()
		if s == 0 {
			first = loss.Item()
		}
		last = loss.Item()
		o.LR = sched(o.Steps())
		o.Step()
	}
	return first, last
}

// fitBy runs fit and fails the test (what) unless the loss fell by at
// least the factor by.
func fitBy(t *testing.T, what string, by float32, p *Params, forward func(*tensor.Tensor) *tensor.Tensor, x, target *tensor.Tensor, steps int, lr float64) {
	t.Helper()
	first, last := fit(p, forward, x, target, steps, lr)
	t.Logf("%s: loss %.4g -> %.4g (%.0fx)", what, first, last, first/last)
	if last*by > first {
		t.Errorf("loss fell only from %.4g to %.4g", first, last)
	}
}

// teacherTarget is the output of a same-shaped network with other random
// weights, scaled to unit RMS: a fixed random target map the student can
// represent exactly (by scaling its last layer).
func teacherTarget(forward func(*tensor.Tensor) *tensor.Tensor, x *tensor.Tensor) *tensor.Tensor {
	defer tensor.NoGrad()()
	y := forward(x).Detach()
	var s float64
	for _, v := range y.Data {
		s += float64(v) * float64(v)
	}
	return tensor.Scale(y, float32(1/math.Sqrt(s/float64(len(y.Data)))))
}

func TestTrainTinyConvNet(t *testing.T) {
	x := tensor.New(2, 3, 12, 12)
	rng.New(100).FillNormal(x.Data, 0, 1)
	target := teacherTarget(newConvNet(NewParams(rng.New(200)), 16).forward, x)
	p := NewParams(rng.New(1))
	m := newConvNet(p, 16)
	fitBy(t, "conv net", 100, p, m.forward, x, target, 300, 2e-2)
}

func TestTrainTinyTransformer(t *testing.T) {
	x := tensor.New(2, 16, 8)
	rng.New(101).FillNormal(x.Data, 0, 1)
	target := teacherTarget(newTinyTransformer(NewParams(rng.New(201)), 8, 32, 4).forward, x)
	p := NewParams(rng.New(2))
	m := newTinyTransformer(p, 8, 32, 4)
	fitBy(t, "transformer", 100, p, m.forward, x, target, 300, 1e-2)
}

// TestTrainLoRAOnly fine-tunes only adapters on the frozen transformer
// toward a target made by perturbing its attention projections.
func TestTrainLoRAOnly(t *testing.T) {
	x := tensor.New(2, 16, 8)
	rng.New(102).FillNormal(x.Data, 0, 1)
	p := NewParams(rng.New(3))
	m := newTinyTransformer(p, 8, 32, 4)
	// The target: the same model with rank-2 changes to to_q and to_v.
	for _, l := range []*Linear{m.blk.q, m.blk.v} {
		l.Weight.Data[0] += 0.5
	}
	var target *tensor.Tensor
	func() {
		defer tensor.NoGrad()()
		target = m.forward(x).Detach()
	}()
	for _, l := range []*Linear{m.blk.q, m.blk.v} {
		l.Weight.Data[0] -= 0.5
	}
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 2, Alpha: 2, Targets: []string{"attn.to_q", "attn.to_v"}, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	p.SetTrainable(IsLoRA)
	base := m.blk.q.Weight.Clone()
	fitBy(t, "LoRA only", 20, p, m.forward, x, target, 200, 1e-2)
	if maxAbsDiff(base.Data, m.blk.q.Weight.Data) != 0 {
		t.Error("the frozen base weight changed")
	}
}
