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
	// Shifts is the default number of token-grid phases (ModelOptions
	// override it per call): 0 or 1 restores once; 2 averages that with a
	// restoration of the input shifted by half a token (8 output pixels)
	// diagonally; 4 with all three half-token shifts. A student trained
	// against a patch discriminator can tie texture to its 16-pixel tokens;
	// a half-token shift moves that pattern by half its period, so the
	// average cancels its odd harmonics (the grid) while the image content,
	// which moves back with the shift, stays. The average is taken on the
	// decoded images: averaging latents instead blurs through the decoder
	// (mild hold-out NIQE 6.75 against 5.61 for session 5's candidate).
	// Each phase costs one more encode, student pass and decode; the
	// official model (Official) ignores it.
	Shifts int
	// Official makes the pipeline compute what TSD-SR's own script
	// (test/test_tsdsr.py) computes, for its released model: the working
	// size of OfficialWorkingSize (small inputs enlarged, sides rounded
	// down to 8, no padding) with the result resized back to 4x by
	// PILBicubic, the script's latent tiling and Gaussian (see
	// officialVelocity) and its colour-fix sources (see ColorSource).
	// Without it the built-in students' rules apply: inputs padded to
	// Multiple(), exact 4x, rectangular edge tiles.
	Official bool
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
	if o.Official {
		return 1 // any size: the working size is rounded instead
	}
	return o.AE.Factor() * o.Student.Config.PatchSize / 4
}

// OfficialWorkingSize is the size test_tsdsr.py runs its model at for a
// w x h input: an input with a side under 128 (process_size 512 / 4) is
// first scaled so that its short side is 128, the products truncated to
// integers; then the size is multiplied by 4 and each side rounded down
// to a multiple of 8.
func OfficialWorkingSize(w, h int) (ww, wh int) {
	const short = 512 / 4
	if w < short || h < short {
		s := float64(short) / float64(min(w, h))
		w, h = int(s*float64(w)), int(s*float64(h))
	}
	return 4 * w / 8 * 8, 4 * h / 8 * 8
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
	w, h := 4*img.Width, 4*img.Height
	if o.Official {
		w, h = OfficialWorkingSize(img.Width, img.Height)
		if w < 8 || h < 8 {
			return nil, fmt.Errorf("sr: %dx%d image is too small for the official working size", img.Width, img.Height)
		}
	}
	tile, overlap := o.tiling(opts)
	defer tensor.NoGrad()()
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
	y, err := o.restore(ctx, x, tile, overlap)
	if err != nil {
		return nil, err
	}
	if shifts := o.shifts(opts); shifts > 1 && !o.Official && o.Student.Config.PatchSize >= 2 {
		y, err = o.shifted(ctx, x, y, shifts, tile, overlap)
		if err != nil {
			return nil, err
		}
	}
	out := imageio.NewImage(w, h, 3)
	for i, v := range y.Data {
		out.Pix[i] = min(max(v, 0), 1)
	}
	if ow, oh := 4*img.Width, 4*img.Height; ow != w || oh != h {
		// The script resizes its 8-bit result with PIL's default filter;
		// here the float image is resized and rounded once, at the end.
		pix := make([]float32, 0, 3*ow*oh)
		for c := range 3 {
			pix = append(pix, PILBicubic(out.Pix[c*w*h:(c+1)*w*h], w, h, ow, oh)...)
		}
		clamp01(pix)
		out = &imageio.Image{Width: ow, Height: oh, Channels: 3, Pix: pix}
	}
	return out, nil
}

// shifted averages y, the restoration of x, with shifts-1 more of x moved
// by half a token: down and right, and with 4 phases also down and right
// alone. A pattern tied to the token grid moves by half its period and
// cancels; the content moves back. The input keeps its size (reflected in
// at the top and left, cropped at the bottom and right), so each phase
// costs exactly one more pass with the same tiles, and the bottom and
// right half-token strips, which no shifted phase covers, keep y.
func (o *OneStep) shifted(ctx context.Context, x, y *tensor.Tensor, shifts, tile, overlap int) (*tensor.Tensor, error) {
	half := o.AE.Factor() * o.Student.Config.PatchSize / 2
	phases := [][2]int{{half, half}}
	if shifts >= 4 {
		phases = append(phases, [2]int{half, 0}, [2]int{0, half})
	}
	h, w := x.Shape[2], x.Shape[3]
	count := make([]float32, h*w)
	for i := range count {
		count[i] = 1
	}
	for _, d := range phases {
		dy, dx := min(d[0], h-1), min(d[1], w-1)
		ys, err := o.restore(ctx, tensor.Pad2d(x, dy, -dy, dx, -dx, tensor.PadReflect), tile, overlap)
		if err != nil {
			return nil, err
		}
		y = tensor.Add(y, tensor.Pad2d(ys, -dy, dy, -dx, dx, tensor.PadZero))
		for i := 0; i < h-dy; i++ {
			row := count[i*w:][:w-dx]
			for j := range row {
				row[j]++
			}
		}
	}
	for c := 0; c < y.Shape[1]; c++ {
		plane := y.Data[c*h*w:][:h*w]
		for i, n := range count {
			plane[i] /= n
		}
	}
	return y, nil
}

// restore is the one-step pass on a bicubic-upscaled x [1, 3, H, W]:
// encode, subtract the student's velocity, decode.
func (o *OneStep) restore(ctx context.Context, x *tensor.Tensor, tile, overlap int) (*tensor.Tensor, error) {
	scale := o.latentScale()
	zL, err := o.AE.Encode(ctx, x)
	if err != nil {
		return nil, err
	}
	zL = tensor.Scale(zL, scale)
	var verr error
	z := flow.OneStep(func(x *tensor.Tensor, _ []float32) *tensor.Tensor {
		// predict supplies t = 1000 to every tile.
		v, err := o.tiledVelocity(ctx, x, tile, overlap)
		if verr = err; err != nil {
			return x
		}
		return v
	}, zL)
	if verr != nil {
		return nil, verr
	}
	return o.AE.Decode(ctx, tensor.Scale(z, 1/scale))
}

// ColorSource returns the planes the colour fix reads for an Official
// model, as test_tsdsr.py does: the wavelet fix takes its low frequencies
// from PIL's bicubic of the input at the output size, AdaIN its statistics
// from the input itself. It returns nil (the pipeline's default, the
// PyTorch bicubic at the output size) for the built-in students.
func (o *OneStep) ColorSource(fix ColorFix, rgb []float32, w, h, ow, oh int) []float32 {
	if !o.Official {
		return nil
	}
	if fix == ColorFixAdaIN {
		return rgb
	}
	n := w * h
	out := make([]float32, 0, len(rgb)/n*ow*oh)
	for p := 0; p < len(rgb); p += n {
		out = append(out, PILBicubic(rgb[p:p+n], w, h, ow, oh)...)
	}
	clamp01(out)
	return out
}

// Velocity is the student's velocity over scaled latents zL [1, 16, h, w]
// at t = 1000, tiled as UpscaleWith tiles it (opts may be nil): the
// decoder then reads (zL - v) / LatentScale.
func (o *OneStep) Velocity(ctx context.Context, zL *tensor.Tensor, opts *ModelOptions) (*tensor.Tensor, error) {
	tile, overlap := o.tiling(opts)
	defer tensor.NoGrad()()
	return o.tiledVelocity(ctx, zL, tile, overlap)
}

// tiling is the tile and overlap of a call: opts' where set (> 0), else
// the upscaler's own.
func (o *OneStep) tiling(opts *ModelOptions) (tile, overlap int) {
	tile, overlap = o.Tile, o.Overlap
	if opts != nil && opts.Tile > 0 {
		tile = opts.Tile
	}
	if opts != nil && opts.TileOverlap > 0 {
		overlap = opts.TileOverlap
	}
	return tile, overlap
}

// shifts is the number of token-grid phases of a call: opts' where set
// (> 0), else the upscaler's own, at least 1.
func (o *OneStep) shifts(opts *ModelOptions) int {
	if opts != nil && opts.Shifts > 0 {
		return opts.Shifts
	}
	return max(o.Shifts, 1)
}

func (o *OneStep) tiledVelocity(ctx context.Context, zL *tensor.Tensor, tile, overlap int) (*tensor.Tensor, error) {
	if o.Official {
		return o.officialVelocity(ctx, zL, tile, overlap)
	}
	return o.velocity(ctx, zL, tile, overlap)
}

// velocity predicts the student's velocity over z [1, C, H, W] in tiles of
// tile x tile latent pixels overlapping by overlap, blended with TSD-SR's
// Gaussian weights (variance 0.01 of the tile size) so seams vanish.
func (o *OneStep) velocity(ctx context.Context, z *tensor.Tensor, tile, overlap int) (*tensor.Tensor, error) {
	hh, ww := z.Shape[2], z.Shape[3]
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
	return o.blend(ctx, z, tile, ys, xs, func(th, tw int) ([]float64, []float64) {
		return gaussian(th, float64(th-1)/2), gaussian(tw, float64(tw-1)/2)
	})
}

// officialVelocity is test_tsdsr.py's tile_sample: the whole latent in
// one pass when h*w <= tile², else square tiles of min(tile, h, w)
// overlapping by overlap, the last one in each direction ending at the
// edge, blended with the script's Gaussian, whose row centre is n/2 while
// its column centre is (n-1)/2. Two things the script cannot do are
// handled here: a side that is not a multiple of the patch size is
// padded by replicating its last row or column (diffusers' transformer
// would fail), and a tile is capped at the position grid.
func (o *OneStep) officialVelocity(ctx context.Context, z *tensor.Tensor, tile, overlap int) (*tensor.Tensor, error) {
	hh, ww := z.Shape[2], z.Shape[3]
	grid := o.Student.Config.PosEmbedMaxSize * o.Student.Config.PatchSize
	if tile <= 0 || hh*ww <= tile*tile && hh <= grid && ww <= grid {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return o.predictPadded(z), nil
	}
	t := min(tile, hh, ww, grid)
	overlap = min(max(overlap, 0), t-1)
	ys, xs := tileStarts(hh, t, t-overlap), tileStarts(ww, t, t-overlap)
	return o.blend(ctx, z, t, ys, xs, func(th, tw int) ([]float64, []float64) {
		return gaussian(th, float64(th)/2), gaussian(tw, float64(tw-1)/2)
	})
}

// predictPadded predicts z after padding its sides up to multiples of the
// patch size by replication, and crops the prediction back.
func (o *OneStep) predictPadded(z *tensor.Tensor) *tensor.Tensor {
	c, hh, ww := z.Shape[1], z.Shape[2], z.Shape[3]
	p := o.Student.Config.PatchSize
	ph, pw := roundUp(hh, p), roundUp(ww, p)
	if ph == hh && pw == ww {
		return o.predict(z)
	}
	pad := tensor.New(1, c, ph, pw)
	for ch := range c {
		for y := range ph {
			src := z.Data[(ch*hh+min(y, hh-1))*ww:][:ww]
			dst := pad.Data[(ch*ph+y)*pw:][:pw]
			copy(dst, src)
			for x := ww; x < pw; x++ {
				dst[x] = src[ww-1]
			}
		}
	}
	v := o.predict(pad)
	out := tensor.New(1, c, hh, ww)
	for ch := range c {
		for y := range hh {
			copy(out.Data[(ch*hh+y)*ww:][:ww], v.Data[(ch*ph+y)*pw:])
		}
	}
	return out
}

// blend predicts the tiles of z at rows ys and columns xs (tile x tile,
// clipped at the edges) and averages them with the weights outer(gy, gx)
// that weights returns for a th x tw tile: sum(v g) / sum(g).
func (o *OneStep) blend(ctx context.Context, z *tensor.Tensor, tile int, ys, xs []int, weights func(th, tw int) (gy, gx []float64)) (*tensor.Tensor, error) {
	c, hh, ww := z.Shape[1], z.Shape[2], z.Shape[3]
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
			v := o.predictPadded(sub)
			gy, gx := weights(th, tw)
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

// gaussian is TSD-SR's tile weight along one axis: a normal density
// centred at mid with variance 0.01 in units of the tile size n.
func gaussian(n int, mid float64) []float64 {
	const variance = 0.01
	g := make([]float64, n)
	for i := range g {
		d := (float64(i) - mid) / float64(n)
		g[i] = math.Exp(-d*d/(2*variance)) / math.Sqrt(2*math.Pi*variance)
	}
	return g
}
