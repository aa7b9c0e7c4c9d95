package sd3vae

import (
	"context"
	"path/filepath"
	"testing"

	"tsdsr/internal/golden"
	"tsdsr/tensor"
)

// TestGoldenTSDSRAutoencoder loads the golden VAE folder (TSD-SR's own
// AutoencoderKL, SD3's layout at tiny widths, saved by save_pretrained) as
// it is and matches TSD-SR's AutoencoderKL: the posterior mean (raw,
// unscaled) and the unclamped decode, within the README's 5e-6 relative.
func TestGoldenTSDSRAutoencoder(t *testing.T) {
	f := golden.Load(t, "cases.safetensors")
	get := func(name string) *tensor.Tensor { return golden.Tensor(t, f, name) }
	v, err := LoadDir(filepath.Join(golden.SD3(t), "vae"))
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
		golden.CheckRel(t, c.name, got, want, 5e-6)
	}
}
