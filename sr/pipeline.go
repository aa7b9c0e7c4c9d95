package sr

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"

	"tsdsr/imageio"
	"tsdsr/resize"
)

// SizeMultiple is implemented by Upscalers that need both image sides to be a
// multiple of Multiple() (8 for a latent model with an 8x autoencoder). The
// pipeline pads with reflection before the call and crops after it.
type SizeMultiple interface {
	Multiple() int
}

// ColorSourcer is implemented by Upscalers that reproduce a reference
// whose colour fixes read other sources than the pipeline's default (the
// input resized with PyTorch's bicubic to the native output size, for both
// fixes). ColorSource gets the input's three planes (w x h) and the native
// output size ow x oh and returns the source planes: ow x oh for the
// wavelet fix, any size for AdaIN (only statistics are read), or nil for
// the default.
type ColorSourcer interface {
	ColorSource(fix ColorFix, rgb []float32, w, h, ow, oh int) []float32
}

// ModelOptions are the knobs only a learned model uses. The pipeline passes
// them to Upscalers implementing OptionsUpscaler and ignores them otherwise
// (the bicubic baseline has no tiles). There is no seed: the one-step
// models draw no noise, so the same input always gives the same bytes.
type ModelOptions struct {
	// Tile and TileOverlap are in latent pixels; 0 means the model's
	// default.
	Tile, TileOverlap int
	// Shifts is how many phases of the transformer's token grid the
	// student's output is averaged over (see OneStep.Shifts): 1 (one
	// pass), 2 or 4; 0 means the model's default.
	Shifts int
}

// OptionsUpscaler is an Upscaler that accepts ModelOptions for a call.
type OptionsUpscaler interface {
	Upscaler
	UpscaleWith(ctx context.Context, img *imageio.Image, opts *ModelOptions) (*imageio.Image, error)
}

// Options configure a Pipeline. A nil *Options means defaults: native scale,
// wavelet colour fix.
type Options struct {
	// OutScale, when > 0, sets the output size to round(OutScale*w) x
	// round(OutScale*h): the model runs at its native scale, then the result
	// is resized with Lanczos. Ignored when Width or Height is set.
	OutScale float64
	// Width and Height, when > 0, set the output size; if only one is set
	// the other follows the input's aspect ratio.
	Width, Height int
	// ColorFix is applied at the native scale; "" means ColorFixWavelet.
	ColorFix ColorFix
	// Model is passed to Upscalers implementing OptionsUpscaler.
	Model ModelOptions
}

// Pipeline wraps an Upscaler with everything the model must not see: alpha,
// gray images, bit depth, sides that are not a multiple of what the model
// needs, arbitrary output sizes and colour drift. It is safe for concurrent
// use if its Upscaler is.
type Pipeline struct {
	up   Upscaler
	opts Options
}

// New returns a pipeline around up. opts is copied; nil means defaults.
func New(up Upscaler, opts *Options) *Pipeline {
	p := &Pipeline{up: up}
	if opts != nil {
		p.opts = *opts
	}
	if p.opts.ColorFix == "" {
		p.opts.ColorFix = ColorFixWavelet
	}
	return p
}

// Upscaler returns the wrapped model.
func (p *Pipeline) Upscaler() Upscaler { return p.up }

// Options returns the pipeline's options with defaults filled in.
func (p *Pipeline) Options() Options { return p.opts }

// ErrOutputSize reports output size options that cannot be met.
var ErrOutputSize = errors.New("sr: invalid output size")

// OutputSize returns the size UpscaleImage produces for a w x h input.
func (p *Pipeline) OutputSize(w, h int) (int, int, error) {
	o := p.opts
	switch {
	case o.Width < 0 || o.Height < 0 || o.OutScale < 0 || math.IsNaN(o.OutScale) || math.IsInf(o.OutScale, 0):
		return 0, 0, fmt.Errorf("%w: width %d, height %d, outscale %g", ErrOutputSize, o.Width, o.Height, o.OutScale)
	case o.Width > 0 && o.Height > 0:
		return o.Width, o.Height, nil
	case o.Width > 0:
		return o.Width, max(1, int(math.Round(float64(o.Width)*float64(h)/float64(w)))), nil
	case o.Height > 0:
		return max(1, int(math.Round(float64(o.Height)*float64(w)/float64(h)))), o.Height, nil
	case o.OutScale > 0:
		ow, oh := math.Round(o.OutScale*float64(w)), math.Round(o.OutScale*float64(h))
		if ow > 1<<20 || oh > 1<<20 {
			return 0, 0, fmt.Errorf("%w: %.0fx%.0f", ErrOutputSize, ow, oh)
		}
		return max(1, int(ow)), max(1, int(oh)), nil
	}
	s := p.up.Scale()
	return w * s, h * s, nil
}

// Upscale is UpscaleImage for the standard library's image types: gray
// images stay gray, 16-bit images stay 16-bit and alpha is kept.
func (p *Pipeline) Upscale(ctx context.Context, img image.Image) (image.Image, error) {
	m := imageio.FromStdImage(img)
	out, err := p.UpscaleImage(ctx, m)
	if err != nil {
		return nil, err
	}
	return out.ToStdImage(), nil
}

// UpscaleImage enlarges in and returns a new image with the same channels,
// alpha presence and bit depth:
//
//  1. gray is replicated to RGB (models are trained on colour);
//  2. sides are reflect-padded to the Upscaler's Multiple();
//  3. the model runs at its native scale and the padding is cropped off;
//  4. the colour fix pulls colours towards the bicubic-upscaled input;
//  5. a Lanczos resize reaches the requested output size, if it differs;
//  6. gray output is converted back to luma (BT.601) and the alpha plane,
//     upscaled on its own with bicubic, is reattached.
//
// The result is deterministic for a deterministic Upscaler. It returns
// ctx.Err() once ctx is cancelled.
func (p *Pipeline) UpscaleImage(ctx context.Context, in *imageio.Image) (*imageio.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("sr: %w", err)
	}
	ow, oh, err := p.OutputSize(in.Width, in.Height)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := p.up.Scale()
	if s <= 0 {
		return nil, fmt.Errorf("sr: %s reports scale %d", p.up.Name(), s)
	}
	w, h := in.Width, in.Height
	rgb := in.RGB()

	mult := 1
	if m, ok := p.up.(SizeMultiple); ok && m.Multiple() > 1 {
		mult = m.Multiple()
	}
	pw, ph := roundUp(w, mult), roundUp(h, mult)
	x := &imageio.Image{Width: pw, Height: ph, Channels: 3, BitDepth: in.BitDepth, Pix: fitPlanes(rgb, w, h, pw, ph)}

	var y *imageio.Image
	if ou, ok := p.up.(OptionsUpscaler); ok {
		mo := p.opts.Model
		y, err = ou.UpscaleWith(ctx, x, &mo)
	} else {
		y, err = p.up.Upscale(ctx, x)
	}
	if err != nil {
		return nil, err
	}
	if y.Width != pw*s || y.Height != ph*s || y.Channels != 3 || len(y.Pix) != pw*s*ph*s*3 {
		return nil, fmt.Errorf("sr: %s returned %dx%dx%d for %dx%d input at scale %d", p.up.Name(), y.Width, y.Height, y.Channels, pw, ph, s)
	}
	sw, sh := w*s, h*s
	pix := fitPlanes(y.Pix, pw*s, ph*s, sw, sh)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if p.opts.ColorFix != ColorFixNone {
		var ref []float32
		if cs, ok := p.up.(ColorSourcer); ok {
			ref = cs.ColorSource(p.opts.ColorFix, rgb, w, h, sw, sh)
		}
		if ref == nil {
			ref = bicubicPlanes(rgb, w, h, sw, sh)
		}
		switch p.opts.ColorFix {
		case ColorFixWavelet:
			if len(ref) != len(pix) {
				return nil, fmt.Errorf("sr: %s: wavelet colour source of %d values for %d", p.up.Name(), len(ref), len(pix))
			}
			pix = WaveletColorFix(pix, ref, sw, sh)
		case ColorFixAdaIN:
			pix = adain(pix, sw*sh, ref, len(ref)/3)
		default:
			return nil, fmt.Errorf("sr: unknown colour fix %q", p.opts.ColorFix)
		}
		clamp01(pix)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if ow != sw || oh != sh {
		n := sw * sh
		out := make([]float32, 0, ow*oh*3)
		for c := range 3 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			out = append(out, resize.Lanczos(pix[c*n:(c+1)*n], sw, sh, ow, oh)...)
		}
		pix = out
		clamp01(pix)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out := &imageio.Image{Width: ow, Height: oh, Channels: in.Channels, BitDepth: in.BitDepth, Pix: pix}
	if in.Channels == 1 {
		out.Pix = luma(pix, ow*oh)
	}
	if in.Alpha != nil {
		out.Alpha = resize.Bicubic(in.Alpha, w, h, ow, oh)
		clamp01(out.Alpha)
	}
	return out, nil
}

// luma converts three planes of n values to one with BT.601 weights (as
// PIL's "L" mode); replicated gray comes back unchanged up to rounding.
func luma(rgb []float32, n int) []float32 {
	g := make([]float32, n)
	for i := range g {
		v := 0.299*rgb[i] + 0.587*rgb[n+i] + 0.114*rgb[2*n+i]
		g[i] = min(max(v, 0), 1)
	}
	return g
}

// bicubicPlanes resizes every w x h plane of src to ow x oh, clamped.
func bicubicPlanes(src []float32, w, h, ow, oh int) []float32 {
	n := w * h
	out := make([]float32, 0, len(src)/n*ow*oh)
	for p := 0; p < len(src); p += n {
		out = append(out, resize.Bicubic(src[p:p+n], w, h, ow, oh)...)
	}
	clamp01(out)
	return out
}

func roundUp(v, m int) int { return (v + m - 1) / m * m }

// reflectIndex maps i in [0, pad) beyond a side of n samples back inside by
// mirroring without repeating the edge (numpy "reflect"), folding again for
// pads longer than the image; n == 1 repeats the only sample.
func reflectIndex(i, n int) int {
	if n == 1 {
		return 0
	}
	period := 2 * (n - 1)
	i %= period
	if i < 0 {
		i += period
	}
	if i >= n {
		i = period - i
	}
	return i
}

// fitPlanes gives each w x h plane of src the size nw x nh: it keeps the
// top-left corner of a side that shrinks and extends one that grows by
// reflection at the right or bottom edge (reflectIndex).
func fitPlanes(src []float32, w, h, nw, nh int) []float32 {
	if nw == w && nh == h {
		return src
	}
	n, nn := w*h, nw*nh
	planes := len(src) / n
	dst := make([]float32, planes*nn)
	cw := min(w, nw)
	for p := range planes {
		s, d := src[p*n:(p+1)*n], dst[p*nn:(p+1)*nn]
		for y := range nh {
			srow, drow := s[reflectIndex(y, h)*w:][:w], d[y*nw:][:nw]
			copy(drow, srow[:cw])
			for x := cw; x < nw; x++ {
				drow[x] = srow[reflectIndex(x, w)]
			}
		}
	}
	return dst
}
