package sr

import (
	"context"
	"fmt"

	"tsdsr/imageio"
	"tsdsr/resize"
)

// Bicubic is the baseline Upscaler: PyTorch-style bicubic interpolation
// (a = -0.75, half-pixel centres), clamped to [0, 1]. It is what every
// learned model must beat, and it lets the CLI and the server work without
// a checkpoint. The zero value enlarges 4x.
type Bicubic struct {
	// Factor is the scale factor; 0 means 4.
	Factor int
}

// Name reports "bicubic".
func (Bicubic) Name() string { return "bicubic" }

// Scale reports Factor, or 4 when Factor is 0.
func (b Bicubic) Scale() int {
	if b.Factor <= 0 {
		return 4
	}
	return b.Factor
}

// Upscale enlarges every channel of img by Scale(). It is safe for
// concurrent use.
func (b Bicubic) Upscale(ctx context.Context, img *imageio.Image) (*imageio.Image, error) {
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("sr: bicubic: %w", err)
	}
	s := b.Scale()
	out := &imageio.Image{Width: img.Width * s, Height: img.Height * s, Channels: img.Channels, BitDepth: img.BitDepth}
	out.Pix = make([]float32, 0, out.Width*out.Height*out.Channels)
	for c := range img.Channels {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := resize.Bicubic(img.Plane(c), img.Width, img.Height, out.Width, out.Height)
		clamp01(p)
		out.Pix = append(out.Pix, p...)
	}
	return out, nil
}

// clamp01 limits v to [0, 1] in place; bicubic and Lanczos overshoot at
// edges.
func clamp01(v []float32) {
	for i, x := range v {
		v[i] = min(max(x, 0), 1)
	}
}
