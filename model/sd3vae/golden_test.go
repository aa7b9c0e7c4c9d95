package sd3vae

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// goldenDir holds TSD-SR's own AutoencoderKL (SD3's layout, tiny widths)
// saved by save_pretrained, with reference encodes and decodes.
const goldenDir = "../../../shared/golden/sd3"

// TestGoldenTSDSRAutoencoder loads the golden VAE folder as it is and
// matches TSD-SR's AutoencoderKL: the posterior mean (raw, unscaled) and
// the unclamped decode, within the README's 5e-6 relative.
func TestGoldenTSDSRAutoencoder(t *testing.T) {
	path := filepath.Join(goldenDir, "cases.safetensors")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("golden SD3 data not available (%v); it lives in ../shared/golden/sd3", err)
	}
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *tensor.Tensor {
		x, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	v, err := LoadDir(filepath.Join(goldenDir, "vae"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ name, in, out string }{
		{"vae.encode1", "image", "mean"}, {"vae.encode2", "image", "mean"},
		{"vae.decode1", "latent", "image"}, {"vae.decode2", "latent", "image"},
	} {
		x, want := get(c.name+"."+c.in), get(c.name+"."+c.out)
		var got *tensor.Tensor
		if c.in == "image" {
			got, err = v.Encode(ctx, x)
		} else {
			got, err = v.Decode(ctx, x)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(got.Shape, want.Shape) {
			t.Fatalf("%s: shape %v, want %v", c.name, got.Shape, want.Shape)
		}
		e := maxDiff(got.Data, want.Data) / maxAbs(want.Data)
		t.Logf("%s: relative error %.3g", c.name, e)
		if e > 5e-6 {
			t.Errorf("%s: relative error %.3g > 5e-6", c.name, e)
		}
	}
}

func maxAbs(x []float32) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, float64(v), -float64(v))
	}
	return m
}
