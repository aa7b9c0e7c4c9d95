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
