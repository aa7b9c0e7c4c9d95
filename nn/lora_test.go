package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"tsdsr/rng"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// randomizeB gives the adapters a non-zero B, as after some training.
func randomizeB(l *LoRA, seed uint64) { rng.New(seed).FillNormal(l.B.Data, 0, 0.5) }

func TestLoRALinearMergeMatchesAdapter(t *testing.T) {
	p := NewParams(rng.New(5))
	b := newBlock(p.Sub("transformer_blocks.0"), 16)
	names, err := AttachLoRA(p, LoRAConfig{Rank: 4, Alpha: 8, Targets: []string{"attn.to_q", "attn.to_out.0", "ff.net.0.proj"}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_out.0", "transformer_blocks.0.ff.net.0.proj"}
	if !slices.Equal(names, want) {
		t.Errorf("adapted %q, want %q", names, want)
	}
	if b.k.LoRA != nil || b.ff2.LoRA != nil {
		t.Error("non-target modules got adapters")
	}
	l := b.q.LoRA
	if l == nil || p.Get("transformer_blocks.0.attn.to_q.lora_A.weight") != l.A || p.Get("transformer_blocks.0.attn.to_q.lora_B.weight") != l.B {
		t.Fatal("adapter not registered under PEFT names")
	}
	if !tensor.SameShape(l.A.Shape, []int{4, 16}) || !tensor.SameShape(b.ff0.LoRA.B.Shape, []int{32, 4}) || l.Scale != 2 {
		t.Errorf("A %v, ff B %v, scale %v", l.A.Shape, b.ff0.LoRA.B.Shape, l.Scale)
	}

	x := tensortest.Rand(rand.New(rand.NewPCG(1, 2)), 2, 5, 16)
	base := tensor.Linear(x, b.q.Weight, b.q.Bias)
	if d := maxAbsDiff(b.q.Forward(x).Data, base.Data); d != 0 {
		t.Errorf("fresh adapter (B = 0) changes the output by %g", d)
	}
	randomizeB(l, 1)
	adapted := b.q.Forward(x)
	if maxAbsDiff(adapted.Data, base.Data) < 1e-2 {
		t.Fatal("adapter with non-zero B has no effect")
	}
	w0 := slices.Clone(b.q.Weight.Data)
	if n := MergeLoRA(p.Sub("transformer_blocks.0")); n != 3 {
		t.Errorf("MergeLoRA merged %d adapters, want 3", n)
	}
	l.Merge() // no-op
	merged := b.q.Forward(x)
	if d := maxAbsDiff(merged.Data, adapted.Data); d > 1e-5 {
		t.Errorf("merged output differs from adapter output by %g", d)
	}
	// The merged weight is W + scale*B A.
	delta := l.Delta()
	for o := range 16 {
		for i := range 16 {
			var s float64
			for k := range 4 {
				s += float64(l.B.Data[o*4+k]) * float64(l.A.Data[k*16+i])
			}
			if got := float64(b.q.Weight.Data[o*16+i] - w0[o*16+i]); math.Abs(got-2*s) > 1e-6 || math.Abs(float64(delta.Data[o*16+i])-2*s) > 1e-6 {
				t.Fatalf("merged delta [%d,%d] = %g, Delta %g, want %g", o, i, got, delta.Data[o*16+i], 2*s)
			}
		}
	}
	if n := UnmergeLoRA(p); n != 3 || l.Merged() {
		t.Fatalf("UnmergeLoRA handled %d adapters, to_q merged %v", n, l.Merged())
	}
	if d := maxAbsDiff(b.q.Weight.Data, w0); d > 1e-6 {
		t.Errorf("unmerge leaves the weight off by %g", d)
	}
	if d := maxAbsDiff(b.q.Forward(x).Data, adapted.Data); d > 1e-5 {
		t.Errorf("after unmerge the output differs by %g", d)
	}
}

func TestLoRAConvMergeMatchesAdapter(t *testing.T) {
	p := NewParams(rng.New(6))
	c := NewConv2d(p.Sub("encoder.down_blocks.0"), "conv", Conv2dConfig{In: 6, Out: 8, Kernel: 3, Stride: 2, Padding: 1})
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 3, Targets: []string{"conv"}, Gaussian: true, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	l := c.LoRA
	if !tensor.SameShape(l.A.Shape, []int{3, 6, 3, 3}) || !tensor.SameShape(l.B.Shape, []int{8, 3, 1, 1}) || l.Scale != 1 {
		t.Fatalf("conv adapter A %v B %v scale %v", l.A.Shape, l.B.Shape, l.Scale)
	}
	// Gaussian init: std 1/rank.
	var s2 float64
	for _, v := range l.A.Data {
		s2 += float64(v) * float64(v)
	}
	if std := math.Sqrt(s2 / float64(len(l.A.Data))); math.Abs(std-1.0/3) > 0.05 {
		t.Errorf("gaussian A has std %.3f, want 1/3", std)
	}
	randomizeB(l, 2)
	x := tensortest.Rand(rand.New(rand.NewPCG(3, 4)), 2, 6, 9, 7)
	adapted := c.Forward(x)
	w0 := slices.Clone(c.Weight.Data)
	l.Merge()
	if d := maxAbsDiff(c.Forward(x).Data, adapted.Data); d > 1e-5 {
		t.Errorf("merged conv output differs from adapter output by %g", d)
	}
	l.Unmerge()
	if d := maxAbsDiff(c.Weight.Data, w0); d > 1e-6 {
		t.Errorf("unmerge leaves the conv weight off by %g", d)
	}

	// Gradients of the composed adapter match finite differences.
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
		l.A, l.B = in[1], in[2]
		return c.Forward(in[0])
	}, 1e-2, 2e-2, x, l.A, l.B)
}

func TestLoRAAdapterOnlyGradients(t *testing.T) {
	p := NewParams(rng.New(7))
	b := newBlock(p.Sub("transformer_blocks.0"), 8)
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 2, Targets: []string{"to_q", "to_v"}}); err != nil {
		t.Fatal(err)
	}
	p.SetTrainable(IsLoRA)
	tr := p.Trainable()
	if len(tr) != 4 {
		t.Fatalf("%d trainable parameters, want 4 (A and B of two adapters)", len(tr))
	}
	for _, q := range tr {
		if !IsLoRA(q.Name) {
			t.Errorf("%s is trainable", q.Name)
		}
	}
	randomizeB(b.q.LoRA, 3)
	x := tensortest.Rand(rand.New(rand.NewPCG(5, 6)), 1, 4, 8)
	h := b.norm1.Forward(x)
	y := tensor.Attention(b.q.Forward(h), b.k.Forward(h), b.v.Forward(h), 2)
	tensor.Mean(tensor.Square(b.ff2.Forward(tensor.GELU(b.ff0.Forward(b.o.Forward(y)))))).Backward()
	for _, q := range p.List() {
		if IsLoRA(q.Name) != (q.T.Grad != nil) {
			t.Errorf("%s: gradient present = %v", q.Name, q.T.Grad != nil)
		}
	}
	if g := b.q.LoRA.A.Grad; g == nil || maxAbsDiff(g.Data, make([]float32, len(g.Data))) == 0 {
		t.Error("lora_A of to_q got no non-zero gradient")
	}
}

func TestAttachLoRAErrors(t *testing.T) {
	p := NewParams(rng.New(1))
	NewLinear(p.Sub("attn"), "to_q", 4, 4, true)
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 0, Targets: []string{"to_q"}}); err == nil {
		t.Error("rank 0: no error")
	}
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 2, Targets: []string{"q"}}); err == nil {
		t.Error("suffix matching must be by whole name components")
	}
	if _, err := AttachLoRA(p.Sub("attn"), LoRAConfig{Rank: 2, Targets: []string{"to_q"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := AttachLoRA(p, LoRAConfig{Rank: 2, Targets: []string{"attn.to_q"}}); err == nil {
		t.Error("second adapter on one module: no error")
	}
	if !IsLoRA("lora_A.weight") || IsLoRA("attn.to_q.weight") || !IsLoRA("x.lora_B.weight") {
		t.Error("IsLoRA")
	}
}
