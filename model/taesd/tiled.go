package taesd

import (
	"context"
	"fmt"

	"tsdsr/tensor"
)

// Tiling splits large images so that memory stays bounded: the output is
// produced in square cores of Tile latent pixels, each computed from its
// input region widened by Halo latent pixels of context on every side
// (clipped at the image border) and then cropped back to the core.
//
// A convolution stack's output depends only on inputs within its receptive
// field, so when Halo covers it a tiled result equals the untiled one up to
// float summation order. TAESD3's receptive field reaches about 18 latent
// pixels on each side for both networks; the default halos cover it
// (measured in TestTiledMatchesUntiled: 1e-5 of the untiled output, against
// 180/255 without a halo).
type Tiling struct {
	Tile, Halo int
	// Progress, when set, is called after each tile with the tiles done
	// and the total.
	Progress func(done, total int)
}

// Default tilings: cores of 64 latent pixels (512 image pixels), so a
// RealSR-sized 512x512 image is one tile, and activations of larger images
// stay at most (64+2*18)*8 = 800 pixels square (164 MB per 64-channel map).
var (
	DefaultEncodeTiling = Tiling{Tile: 64, Halo: 18}
	DefaultDecodeTiling = Tiling{Tile: 64, Halo: 16}
)

// EncodeTiled encodes x [1, 3, H, W] (H, W multiples of 8) tile by tile.
func (e *Encoder) EncodeTiled(ctx context.Context, x *tensor.Tensor, t Tiling) (*tensor.Tensor, error) {
	if x.Dim() != 4 || x.Shape[0] != 1 || x.Shape[1] != 3 || x.Shape[2]%Factor != 0 || x.Shape[3]%Factor != 0 {
		return nil, fmt.Errorf("taesd: encode input shape %v, want [1, 3, 8k, 8m]", x.Shape)
	}
	h, w := x.Shape[2]/Factor, x.Shape[3]/Factor
	return tiled(ctx, x, 16, h, w, Factor, 1, t, e.Forward)
}

// DecodeTiled decodes z [1, 16, h, w] tile by tile.
func (d *Decoder) DecodeTiled(ctx context.Context, z *tensor.Tensor, t Tiling) (*tensor.Tensor, error) {
	if z.Dim() != 4 || z.Shape[0] != 1 || z.Shape[1] != 16 {
		return nil, fmt.Errorf("taesd: decode input shape %v, want [1, 16, h, w]", z.Shape)
	}
	h, w := z.Shape[2], z.Shape[3]
	return tiled(ctx, z, 3, h, w, 1, Factor, t, d.Forward)
}

// tiled runs f over tiles of a latent grid of h x w. Input pixels are inScale
// per latent pixel, output pixels outScale per latent pixel.
func tiled(ctx context.Context, in *tensor.Tensor, outC, h, w, inScale, outScale int, t Tiling, f func(*tensor.Tensor) *tensor.Tensor) (*tensor.Tensor, error) {
	if t.Tile <= 0 || t.Halo < 0 {
		return nil, fmt.Errorf("taesd: tiling %+v: tile must be positive, halo non-negative", t)
	}
	defer tensor.NoGrad()()
	if t.Tile >= h && t.Tile >= w {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := f(in)
		if t.Progress != nil {
			t.Progress(1, 1)
		}
		return out, nil
	}
	out := tensor.New(1, outC, h*outScale, w*outScale)
	ny, nx := (h+t.Tile-1)/t.Tile, (w+t.Tile-1)/t.Tile
	for ty := 0; ty < ny; ty++ {
		for tx := 0; tx < nx; tx++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// Core and context regions, in latent pixels.
			y0, y1 := ty*t.Tile, min((ty+1)*t.Tile, h)
			x0, x1 := tx*t.Tile, min((tx+1)*t.Tile, w)
			cy0, cy1 := max(y0-t.Halo, 0), min(y1+t.Halo, h)
			cx0, cx1 := max(x0-t.Halo, 0), min(x1+t.Halo, w)
			sub := crop(in, cy0*inScale, cy1*inScale, cx0*inScale, cx1*inScale)
			res := f(sub) // [1, outC, (cy1-cy0)*outScale, (cx1-cx0)*outScale]
			paste(out, res, (y0-cy0)*outScale, (x0-cx0)*outScale, y0*outScale, x0*outScale, (y1-y0)*outScale, (x1-x0)*outScale)
			if t.Progress != nil {
				t.Progress(ty*nx+tx+1, ny*nx)
			}
		}
	}
	return out, nil
}

// crop copies rows [y0, y1) and columns [x0, x1) of x [1, C, H, W].
func crop(x *tensor.Tensor, y0, y1, x0, x1 int) *tensor.Tensor {
	c, hh, ww := x.Shape[1], x.Shape[2], x.Shape[3]
	out := tensor.New(1, c, y1-y0, x1-x0)
	for ch := 0; ch < c; ch++ {
		for y := y0; y < y1; y++ {
			src := x.Data[(ch*hh+y)*ww+x0 : (ch*hh+y)*ww+x1]
			copy(out.Data[(ch*(y1-y0)+y-y0)*(x1-x0):], src)
		}
	}
	return out
}

// paste copies the rh x rw block of src starting at (sy, sx) into dst at (dy, dx).
func paste(dst, src *tensor.Tensor, sy, sx, dy, dx, rh, rw int) {
	c := dst.Shape[1]
	dh, dw := dst.Shape[2], dst.Shape[3]
	sh, sw := src.Shape[2], src.Shape[3]
	for ch := 0; ch < c; ch++ {
		for y := 0; y < rh; y++ {
			copy(dst.Data[(ch*dh+dy+y)*dw+dx:(ch*dh+dy+y)*dw+dx+rw], src.Data[(ch*sh+sy+y)*sw+sx:])
		}
	}
}
