package sr

import (
	"context"
	"fmt"
	"math"

	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/resize"
	"tsdsr/tensor"
)

// OneStep is the TSD-SR upscaler: one pass of the distilled student in
// SD3's latent space.
//
//	x  = bicubic(LR, 4)                     (PyTorch bicubic, clamped)
//	zL = Encode(x) * LatentScale            (TAESD3 or SD3's VAE)
//	v  = Student(zL, t = 1000)              (latent tiles, Gaussian-blended)
//	z  = zL - v
//	y  = Decode(z / LatentScale)
//
// It is safe for concurrent use: weights are only read.
type OneStep struct {
	AE      Autoencoder
	Student *mmdit.Model
	// Prompt [1, L, joint_attention_dim] and Pooled [1, pooled_dim] are
	// fixed prompt embeddings (TSD-SR's precomputed default prompt); nil
	// uses the student's learned prompt.
	Prompt, Pooled *tensor.Tensor
	// LatentScale multiplies raw latents before the student (TSD-SR:
	// 1.5305, no shift); 0 means taesd.LatentScale.
	LatentScale float32
	// ModelName is reported by Name.
	ModelName string
	// Tile and Overlap are the default latent tiling of the student (in
	// latent pixels); ModelOptions override them per call.
	Tile, Overlap int
}

// Autoencoder maps images to SD3 latents and back: x [1, 3, H, W] in
// [0, 1] to raw (unscaled) latents [1, 16, H/Factor, W/Factor], and back.
// Implementations bound their own memory (tiles or bands) and honour ctx.
type Autoencoder interface {
	Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
	Decode(ctx context.Context, z *tensor.Tensor) (*tensor.Tensor, error)
	Factor() int
}

// TAESD is the Autoencoder of the built-in models: TAESD3, tiled with
// halos that make tiles exact.
type TAESD struct {
	Enc *taesd.Encoder
	Dec *taesd.Decoder
}

// Encode encodes tile by tile.
func (a TAESD) Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return a.Enc.EncodeTiled(ctx, x, taesd.DefaultEncodeTiling)
}

// Decode decodes tile by tile.
func (a TAESD) Decode(ctx context.Context, z *tensor.Tensor) (*tensor.Tensor, error) {
	return a.Dec.DecodeTiled(ctx, z, taesd.DefaultDecodeTiling)
}

// Factor is 8.
func (TAESD) Factor() int { return taesd.Factor }

// Name identifies the model in logs and HTTP headers.
func (o *OneStep) Name() string { return o.ModelName }

// Scale is the native factor: 4.
func (o *OneStep) Scale() int { return 4 }

// Multiple makes 4x sides multiples of the autoencoder's 8 and the latent
// a multiple of the transformer's patch.
func (o *OneStep) Multiple() int {
	return o.AE.Factor() * o.Student.Config.PatchSize / 4
}

// Upscale runs with the default tiling.
func (o *OneStep) Upscale(ctx context.Context, img *imageio.Image) (*imageio.Image, error) {
	return o.UpscaleWith(ctx, img, nil)
}

// UpscaleWith runs the one-step pipeline on a 1- or 3-channel image whose
// sides are multiples of Multiple().
func (o *OneStep) UpscaleWith(ctx context.Context, img *imageio.Image, opts *ModelOptions) (*imageio.Image, error) {
	if err := img.Validate(); err != nil {
		return nil, err
	}
	if k := o.Multiple(); img.Width%k != 0 || img.Height%k != 0 {
		return nil, fmt.Errorf("sr: %dx%d image: sides must be multiples of %d", img.Width, img.Height, k)
	}
	tile, overlap := o.Tile, o.Overlap
	if opts != nil && opts.Tile > 0 {
		tile = opts.Tile
	}
	if opts != nil && opts.TileOverlap > 0 {
		overlap = opts.TileOverlap
	}
	defer tensor.NoGrad()()
	w, h := 4*img.Width, 4*img.Height
	x := tensor.New(1, 3, h, w)
	n := img.Width * img.Height
	rgb := img.RGB()
	for c := 0; c < 3; c++ {
		src := rgb[c*n:][:n]
		up := resize.Bicubic(src, img.Width, img.Height, w, h)
		for i, v := range up {
			x.Data[c*w*h+i] = min(max(v, 0), 1)
		}
	}
	scale := o.latentScale()
	zL, err := o.AE.Encode(ctx, x)
	if err != nil {
		return nil, err
	}
	zL = tensor.Scale(zL, scale)
	var verr error
	z := flow.OneStep(func(x *tensor.Tensor, _ []float32) *tensor.Tensor {
		// predict supplies t = 1000 to every tile.
		v, err := o.velocity(ctx, x, tile, overlap)
		if verr = err; err != nil {
			return x
		}
		return v
	}, zL)
	if verr != nil {
		return nil, verr
	}
	z = tensor.Scale(z, 1/scale)
	y, err := o.AE.Decode(ctx, z)
	if err != nil {
		return nil, err
	}
	out := imageio.NewImage(w, h, 3)
	for i, v := range y.Data {
		out.Pix[i] = min(max(v, 0), 1)
	}
	return out, nil
}

// velocity predicts the student's velocity over z [1, C, H, W] in tiles of
// tile x tile latent pixels overlapping by overlap, blended with TSD-SR's
// Gaussian weights (variance 0.01 of the tile size) so seams vanish.
func (o *OneStep) velocity(ctx context.Context, z *tensor.Tensor, tile, overlap int) (*tensor.Tensor, error) {
	c, hh, ww := z.Shape[1], z.Shape[2], z.Shape[3]
	p := o.Student.Config.PatchSize
	// Keep tiles inside the position grid and at least a patch wide
	// (ValidateTiling refuses such values from users; this keeps a caller
	// that skipped it from panicking in the transformer).
	grid := o.Student.Config.PosEmbedMaxSize * p
	if tile <= 0 || tile > grid {
		tile = grid
	}
	tile = max(tile, p)
	if hh <= tile && ww <= tile {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return o.predict(z), nil
	}
	tile -= tile % p
	overlap = min(max(overlap, 0), tile-p)
	overlap -= overlap % p
	ys, xs := tileStarts(hh, tile, tile-overlap), tileStarts(ww, tile, tile-overlap)
	acc := make([]float64, c*hh*ww)
	wsum := make([]float64, hh*ww)
	for _, y0 := range ys {
		for _, x0 := range xs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			th, tw := min(tile, hh-y0), min(tile, ww-x0)
			sub := tensor.New(1, c, th, tw)
			for ch := 0; ch < c; ch++ {
				for y := 0; y < th; y++ {
					copy(sub.Data[(ch*th+y)*tw:(ch*th+y+1)*tw], z.Data[(ch*hh+y0+y)*ww+x0:])
				}
			}
			v := o.predict(sub)
			gy, gx := gaussian(th), gaussian(tw)
			for y := 0; y < th; y++ {
				for x := 0; x < tw; x++ {
					g := gy[y] * gx[x]
					i := (y0+y)*ww + x0 + x
					wsum[i] += g
					for ch := 0; ch < c; ch++ {
						acc[ch*hh*ww+i] += g * float64(v.Data[(ch*th+y)*tw+x])
					}
				}
			}
		}
	}
	out := tensor.New(1, c, hh, ww)
	for i, v := range acc {
		out.Data[i] = float32(v / wsum[i%(hh*ww)])
	}
	return out, nil
}

func (o *OneStep) latentScale() float32 {
	if o.LatentScale == 0 {
		return taesd.LatentScale
	}
	return o.LatentScale
}

// predict is the student's velocity at t = 1000 (pure noise level: the LR
// latent stands in for it), with the fixed prompt when there is one.
func (o *OneStep) predict(z *tensor.Tensor) *tensor.Tensor {
	t := []float32{1000}
	if o.Prompt != nil {
		return o.Student.Forward(z, t, o.Prompt, o.Pooled)
	}
	return o.Student.Velocity(z, t)
}

// tileStarts covers [0, n) with windows of size tile at the given stride,
// the last one aligned to the end.
func tileStarts(n, tile, stride int) []int {
	if n <= tile {
		return []int{0}
	}
	var s []int
	for x := 0; ; x += stride {
		if x+tile >= n {
			s = append(s, n-tile)
			return s
		}
		s = append(s, x)
	}
}

// gaussian is TSD-SR's tile weight along one axis: a normal density centred
// on the tile with variance 0.01 in units of the tile size.
func gaussian(n int) []float64 {
	const variance = 0.01
	mid := float64(n-1) / 2
	g := make([]float64, n)
	for i := range g {
		d := (float64(i) - mid) / float64(n)
		g[i] = math.Exp(-d*d/(2*variance)) / math.Sqrt(2*math.Pi*variance)
	}
	return g
}
