// Package sr is the super-resolution pipeline users call: a degraded photo
// in, a restored photo at Scale times the size out. The one-step TSD-SR
// student and the bicubic baseline implement the same Upscaler interface, so
// the CLI, the server and the evaluation tools never depend on which runs.
package sr

import (
	"context"

	"tsdsr/imageio"
)

// Upscaler enlarges colour images by its native scale factor.
//
// Upscale receives an image with 1 or 3 colour channels and no alpha (the
// pipeline handles alpha, gray and bit depth around it) and must return an
// image of exactly Scale() times its width and height. It stops early with
// ctx.Err() when ctx is cancelled. Implementations are safe for concurrent use.
type Upscaler interface {
	Name() string
	Scale() int
	Upscale(ctx context.Context, img *imageio.Image) (*imageio.Image, error)
}
