package sr

import (
	"context"

	"tsdsr/model/sd3vae"
	"tsdsr/tensor"
)

// SD3VAE is the Autoencoder of the official TSD-SR model: Stable Diffusion
// 3's own VAE (84 M parameters), images mapped to [-1, 1] as diffusers
// does, latents the posterior mean. It works on the whole image with
// banded convolutions, so GroupNorm sees whole-image statistics (per-tile
// statistics would shift colours between tiles).
type SD3VAE struct {
	VAE *sd3vae.VAE
}

// Encode maps x in [0, 1] to [-1, 1] and encodes it.
func (a SD3VAE) Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return a.VAE.Encode(ctx, tensor.AddScalar(tensor.Scale(x, 2), -1))
}

// Decode decodes z and maps [-1, 1] back to [0, 1].
func (a SD3VAE) Decode(ctx context.Context, z *tensor.Tensor) (*tensor.Tensor, error) {
	y, err := a.VAE.Decode(ctx, z)
	if err != nil {
		return nil, err
	}
	return tensor.Scale(tensor.AddScalar(y, 1), 0.5), nil
}

// Factor is the VAE's downsampling, 8 for SD3.
func (a SD3VAE) Factor() int { return a.VAE.Factor() }
