package nn

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// block is a diffusers-like transformer block, enough to exercise names.
type block struct {
	norm1      *LayerNorm
	q, k, v, o *Linear
	ff0, ff2   *Linear
}

// newBlock is a block with a feed-forward of width 2*dim and no bias on
// ff.net.2 (norm1 is made first, ahead of the linears).
func newBlock(p *Params, dim int) *block {
	norm1 := NewLayerNorm(p, "norm1", dim, 1e-6, true)
	b := blockLinears(p, dim, 2*dim, false)
	b.norm1 = norm1
	return b
}

// blockLinears is a block's linears without its norm: the attention
// projections of width dim and a feed-forward of width ff, with a bias on
// ff.net.2 when ff2Bias.
func blockLinears(p *Params, dim, ff int, ff2Bias bool) *block {
	a := p.Sub("attn")
	return &block{
		q:   NewLinear(a, "to_q", dim, dim, true),
		k:   NewLinear(a, "to_k", dim, dim, true),
		v:   NewLinear(a, "to_v", dim, dim, true),
		o:   NewLinear(a, "to_out.0", dim, dim, true),
		ff0: NewLinear(p, "ff.net.0.proj", dim, ff, true),
		ff2: NewLinear(p, "ff.net.2", ff, dim, ff2Bias),
	}
}

func TestNamesJoinPrefixes(t *testing.T) {
	p := NewParams(rng.New(1))
	NewConv2d(p, "pos_embed.proj", Conv2dConfig{In: 4, Out: 8, Kernel: 2, Stride: 2})
	newBlock(p.Sub("transformer_blocks").Sub("0"), 8)
	newBlock(p.Sub("transformer_blocks.1"), 8)
	names := p.Names()
	want := []string{
		"pos_embed.proj.weight", "pos_embed.proj.bias",
		"transformer_blocks.0.norm1.weight", "transformer_blocks.0.norm1.bias",
		"transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.to_q.bias",
	}
	if !slices.Equal(names[:len(want)], want) {
		t.Errorf("names start %q, want %q", names[:len(want)], want)
	}
	if len(names) != 2+2*13 {
		t.Errorf("%d names, want %d", len(names), 2+2*13)
	}
	sub := p.Sub("transformer_blocks.1")
	if got := sub.Names(); got[0] != "norm1.weight" || got[len(got)-1] != "ff.net.2.weight" || len(got) != 13 {
		t.Errorf("scoped names %q", got)
	}
	if sub.Get("attn.to_out.0.bias") != p.Get("transformer_blocks.1.attn.to_out.0.bias") || sub.Get("attn.to_out.0.bias") == nil {
		t.Error("Get through a scope and from the root disagree")
	}
	// 8 in, 8 out, 2x2 conv with bias; per block: LN 16, 4 attn linears 4*72,
	// ff 8->16 with bias 144, 16->8 without 128.
	if got, want := p.Count(), (8*4*4+8)+2*(16+4*72+144+128); got != want {
		t.Errorf("Count %d, want %d", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	NewLinear(p.Sub("transformer_blocks.0"), "ff.net.2", 16, 8, false)
}

func TestInitIsPyTorchDefaultAndKeyedByName(t *testing.T) {
	p := NewParams(rng.New(42))
	l := NewLinear(p, "a", 256, 64, true)
	c := NewConv2d(p, "b", Conv2dConfig{In: 16, Out: 32, Kernel: 3, Padding: 1})
	for _, tc := range []struct {
		name  string
		d     []float32
		fanIn int
	}{{"linear weight", l.Weight.Data, 256}, {"linear bias", l.Bias.Data, 256}, {"conv weight", c.Weight.Data, 144}} {
		bound := 1 / math.Sqrt(float64(tc.fanIn))
		var s2 float64
		for _, v := range tc.d {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s: %v outside +-%v", tc.name, v, bound)
			}
			s2 += float64(v) * float64(v)
		}
		// Uniform(-b, b) has variance b^2/3; allow the sampling error of
		// the small bias vector.
		if got, want := s2/float64(len(tc.d)), bound*bound/3; math.Abs(got-want) > 0.3*want {
			t.Errorf("%s: variance %.4g, want about %.4g", tc.name, got, want)
		}
	}
	if !l.Weight.RequiresGrad() {
		t.Error("new parameters should require a gradient")
	}
	// The same name gets the same values whatever was registered before it.
	q := NewParams(rng.New(42))
	NewLinear(q, "other", 3, 3, true)
	c2 := NewConv2d(q, "b", Conv2dConfig{In: 16, Out: 32, Kernel: 3, Padding: 1})
	if !slices.Equal(c.Weight.Data, c2.Weight.Data) {
		t.Error("initialisation depends on registration order")
	}
	// Without a generator the weights stay zero (to be loaded).
	z := NewLinear(NewParams(nil), "a", 4, 4, true)
	if slices.ContainsFunc(z.Weight.Data, func(v float32) bool { return v != 0 }) {
		t.Error("nil generator: weights not zero")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	p := NewParams(rng.New(3))
	newBlock(p.Sub("blocks.0"), 8)
	path := filepath.Join(dir, "m.safetensors")
	if err := p.Save(path, safetensors.F32, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	q := NewParams(nil)
	newBlock(q.Sub("blocks.0"), 8)
	if rep, err := q.Load(f, true); err != nil || len(rep.Missing)+len(rep.Unexpected) != 0 {
		t.Fatalf("strict load: %v %+v", err, rep)
	}
	for _, a := range p.List() {
		if !slices.Equal(a.T.Data, q.Get(a.Name).Data) {
			t.Errorf("%s differs after the round trip", a.Name)
		}
	}

	// A scope loads a file of relative names (a standalone block).
	if err := p.Sub("blocks.0").Save(path, safetensors.BF16, nil); err != nil {
		t.Fatal(err)
	}
	f, _ = safetensors.Load(path)
	r := NewParams(nil)
	newBlock(r.Sub("transformer.blocks.0"), 8)
	if _, err := r.Sub("transformer.blocks.0").Load(f, true); err != nil {
		t.Fatal(err)
	}
	w, got := p.Get("blocks.0.attn.to_q.weight").Data, r.Get("transformer.blocks.0.attn.to_q.weight").Data
	for i := range w {
		if got[i] != tensor.BF16ToF32(tensor.F32ToBF16(w[i])) {
			t.Fatalf("BF16 load: %v, want %v", got[i], w[i])
		}
	}

	// Missing, unexpected and mis-shaped tensors are named.
	s := NewParams(nil)
	NewLayerNorm(s, "norm1", 8, 1e-6, true)
	NewLinear(s, "attn.to_q", 4, 8, true) // wrong in-features
	NewLinear(s, "extra", 2, 2, false)    // not in the file
	_, err = s.Load(f, false)
	if err == nil || !strings.Contains(err.Error(), "attn.to_q.weight (file [8 8], model [8 4])") {
		t.Errorf("mis-shaped: %v", err)
	}
	if s.Get("norm1.weight").Data[0] != 1 {
		t.Error("a failed Load modified parameters")
	}
	u := NewParams(nil)
	NewLayerNorm(u, "norm1", 8, 1e-6, true)
	NewLinear(u, "extra", 2, 2, false)
	rep, err := u.Load(f, false)
	if err != nil || !slices.Equal(rep.Missing, []string{"extra.weight"}) || len(rep.Unexpected) != 11 {
		t.Errorf("non-strict: %v, report %+v", err, rep)
	}
	if _, err := u.Load(f, true); err == nil || !strings.Contains(err.Error(), "missing: extra.weight") || !strings.Contains(err.Error(), "unexpected: attn.to_k.bias") {
		t.Errorf("strict: %v", err)
	}
}

func TestNormWrappers(t *testing.T) {
	p := NewParams(rng.New(1))
	ln := NewLayerNorm(p, "ln", 6, 1e-5, true)
	gn := NewGroupNorm(p, "gn", 2, 4, 1e-5)
	plain := NewLayerNorm(p, "plain", 6, 1e-5, false)
	if plain.Weight != nil || len(p.Names()) != 4 {
		t.Errorf("non-affine LayerNorm registered parameters: %q", p.Names())
	}
	x := tensor.FromData([]float32{1, 2, 3, 4, 5, 7, -1, 0, 2, 2, 8, 1}, 2, 6)
	if a, b := ln.Forward(x), plain.Forward(x); !slices.Equal(a.Data, b.Data) {
		t.Error("LayerNorm with fresh affine (ones, zeros) differs from none")
	}
	rms := NewRMSNorm(p, "rms", 6, 1e-6, true)
	if a, b := rms.Forward(x), tensor.RMSNorm(x, nil, 1e-6); !slices.Equal(a.Data, b.Data) || p.Get("rms.weight") == nil {
		t.Error("RMSNorm with a fresh weight (ones) differs from none")
	}
	x4 := tensor.FromData(x.Data, 1, 4, 3, 1)
	if a, b := gn.Forward(x4), tensor.GroupNorm(x4, 2, nil, nil, 1e-5); !slices.Equal(a.Data, b.Data) {
		t.Error("GroupNorm with fresh affine differs from none")
	}
}

func TestLoadPrefixed(t *testing.T) {
	dir := t.TempDir()
	p := NewParams(rng.New(8))
	NewLinear(p.Sub("transformer.blocks.0"), "to_q", 4, 4, true)
	NewLinear(p.Sub("vae"), "conv", 2, 2, false)
	path := filepath.Join(dir, "all.safetensors")
	if err := p.Save(path, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	f, _ := safetensors.Load(path)
	q := NewParams(nil)
	NewLinear(q.Sub("blocks.0"), "to_q", 4, 4, true)
	rep, err := q.LoadPrefixed(f, "transformer.", true)
	if err != nil || len(rep.Missing)+len(rep.Unexpected) != 0 {
		t.Fatalf("%v %+v", err, rep)
	}
	if !slices.Equal(q.Get("blocks.0.to_q.bias").Data, p.Get("transformer.blocks.0.to_q.bias").Data) {
		t.Error("prefixed load copied the wrong values")
	}
}

// TestLoadRefusesNonFinite: weights holding NaN or Inf (an init file or a
// model from a diverged run) are refused at load.
func TestLoadRefusesNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		p := NewParams(rng.New(3))
		newBlock(p, 4)
		p.Get("ff.net.2.weight").Data[5] = bad
		path := filepath.Join(t.TempDir(), "m.safetensors")
		if err := p.Save(path, safetensors.F32, nil); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		q := NewParams(nil)
		newBlock(q, 4)
		if _, err := q.Load(f, true); err == nil || !strings.Contains(err.Error(), "ff.net.2.weight[5]") {
			t.Errorf("%v weight: %v", bad, err)
		}
	}
}

// peftFixture builds a two-module model (a linear layer and a 3x3 conv, as
// TSD-SR adapts attention projections and VAE encoder convs) and writes a
// PEFT file of random factors with TSD-SR's "transformer." prefix.
func peftFixture(t *testing.T, extra map[string]*tensor.Tensor, drop ...string) (*Params, *safetensors.File, map[string]*tensor.Tensor) {
	t.Helper()
	p := NewParams(rng.New(3))
	NewLinear(p.Sub("attn"), "to_q", 6, 5, true)
	NewConv2d(p.Sub("encoder"), "conv_in", Conv2dConfig{In: 3, Out: 4, Kernel: 3, Padding: 1})
	r := rng.New(9)
	factors := map[string]*tensor.Tensor{
		"transformer.attn.to_q.lora_A.weight":       tensor.New(2, 6),
		"transformer.attn.to_q.lora_B.weight":       tensor.New(5, 2),
		"transformer.encoder.conv_in.lora_A.weight": tensor.New(2, 3, 3, 3),
		"transformer.encoder.conv_in.lora_B.weight": tensor.New(4, 2, 1, 1),
	}
	for _, v := range factors {
		r.FillNormal(v.Data, 0, 1)
	}
	for k, v := range extra {
		factors[k] = v
	}
	for _, k := range drop {
		delete(factors, k)
	}
	path := filepath.Join(t.TempDir(), "lora.safetensors")
	if err := safetensors.Save(path, factors, nil, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p, f, factors
}

// TestMergePEFT checks W' = W + (alpha/r) B A element by element against a
// float64 product, for a linear and a convolution adapter.
func TestMergePEFT(t *testing.T) {
	p, f, fac := peftFixture(t, nil)
	before := map[string][]float32{}
	for _, q := range p.List() {
		before[q.Name] = slices.Clone(q.T.Data)
	}
	const alpha = 4 // rank 2: scale 2
	mods, err := MergePEFT(p, f, "transformer.", alpha)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"attn.to_q", "encoder.conv_in"}; !slices.Equal(mods, want) {
		t.Fatalf("merged %v, want %v", mods, want)
	}
	for _, mod := range mods {
		a, b := fac["transformer."+mod+".lora_A.weight"], fac["transformer."+mod+".lora_B.weight"]
		w := p.Get(mod + ".weight")
		out, r := b.Shape[0], b.Shape[1]
		k := len(a.Data) / r
		for o := range out {
			for i := range k {
				var d float64
				for j := range r {
					d += float64(b.Data[o*r+j]) * float64(a.Data[j*k+i])
				}
				want := float64(before[mod+".weight"][o*k+i]) + alpha/float64(r)*d
				if got := float64(w.Data[o*k+i]); math.Abs(got-want) > 1e-5 {
					t.Fatalf("%s[%d,%d] = %v, want %v", mod, o, i, got, want)
				}
			}
		}
		if bias := p.Get(mod + ".bias"); !slices.Equal(bias.Data, before[mod+".bias"]) {
			t.Fatalf("%s: bias changed", mod)
		}
	}
}

// TestMergePEFTErrors: every malformed file is refused with the offending
// key named, and leaves the weights untouched.
func TestMergePEFTErrors(t *testing.T) {
	cases := []struct {
		name  string
		extra map[string]*tensor.Tensor
		drop  []string
		want  string
	}{
		{"unknown key", map[string]*tensor.Tensor{"transformer.attn.to_q.alpha": tensor.New(1)}, nil, "transformer.attn.to_q.alpha"},
		{"no prefix", map[string]*tensor.Tensor{"attn.to_k.lora_A.weight": tensor.New(2, 6)}, nil, "attn.to_k.lora_A.weight"},
		{"no module", map[string]*tensor.Tensor{
			"transformer.attn.to_v.lora_A.weight": tensor.New(2, 6), "transformer.attn.to_v.lora_B.weight": tensor.New(5, 2)}, nil, "attn.to_v: no linear or conv module"},
		{"missing partner", nil, []string{"transformer.encoder.conv_in.lora_B.weight"}, "encoder.conv_in: lora_A and lora_B"},
		{"mis-shaped", map[string]*tensor.Tensor{"transformer.attn.to_q.lora_B.weight": tensor.New(5, 3)}, nil, "attn.to_q: lora_A [2 6] and lora_B [5 3]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, f, _ := peftFixture(t, c.extra, c.drop...)
			before := map[string][]float32{}
			for _, q := range p.List() {
				before[q.Name] = slices.Clone(q.T.Data)
			}
			_, err := MergePEFT(p, f, "transformer.", 0)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
			for _, q := range p.List() {
				if !slices.Equal(q.T.Data, before[q.Name]) {
					t.Fatalf("%s changed although the file was refused", q.Name)
				}
			}
		})
	}
}
