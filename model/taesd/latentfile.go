package taesd

import (
	"fmt"
	"path/filepath"
	"strconv"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// SaveLatent writes the raw (unscaled) latent z [1, 16, h, w] of a width x
// height image read from source as a safetensors file: tensor "latent"
// and the image size in the metadata (`tsdsr ae encode`'s format).
func SaveLatent(path string, z *tensor.Tensor, width, height int, source string) error {
	meta := map[string]string{"height": strconv.Itoa(height), "width": strconv.Itoa(width), "source": filepath.Base(source),
		"format": "raw SD3 latent from TAESD3 (multiply by 1.5305 for TSD-SR's transformer)"}
	return safetensors.Save(path, map[string]*tensor.Tensor{"latent": z}, meta, safetensors.F32)
}

// LoadLatent reads a latent file (SaveLatent's format): the latent
// [1, 16, h, w] and the size of its image, Factor times the latent's unless
// the metadata records a smaller one.
func LoadLatent(path string) (z *tensor.Tensor, width, height int, err error) {
	f, err := safetensors.Load(path)
	if err != nil {
		return nil, 0, 0, err
	}
	if z, err = f.Tensor("latent"); err != nil {
		return nil, 0, 0, err
	}
	if z.Dim() != 4 || z.Shape[0] != 1 || z.Shape[1] != 16 {
		return nil, 0, 0, fmt.Errorf("%s: latent shape %v, want [1, 16, h, w]", path, z.Shape)
	}
	height, width = z.Shape[2]*Factor, z.Shape[3]*Factor
	if hh, err := strconv.Atoi(f.Metadata["height"]); err == nil && hh > 0 && hh <= height {
		height = hh
	}
	if ww, err := strconv.Atoi(f.Metadata["width"]); err == nil && ww > 0 && ww <= width {
		width = ww
	}
	return z, width, height, nil
}
