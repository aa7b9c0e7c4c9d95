package sr

import (
	"errors"
	"fmt"
)

// Tile bounds, in latent pixels. A tile smaller than MinTile cannot hold
// the transformer's patches and overlap (a 1-pixel tile crashed the
// convolutions); one larger than MaxTile exceeds SD3's 192-patch position
// grid. Smaller models clamp to their own grid.
const (
	MinTile = 4
	MaxTile = 384
)

// ErrTiling reports tile options no model can run with.
var ErrTiling = errors.New("sr: invalid tiling")

// ValidateTiling checks tile and overlap as users give them: tile 0 means
// the model's default, otherwise MinTile <= tile <= MaxTile; overlap is not
// negative and, with an explicit tile, smaller than it. Call it before
// loading a model so a bad flag fails at startup, not on every image.
func ValidateTiling(tile, overlap int) error {
	switch {
	case tile < 0:
		return fmt.Errorf("%w: tile %d is negative (0 means the model's default)", ErrTiling, tile)
	case tile > 0 && tile < MinTile:
		return fmt.Errorf("%w: tile %d is below the minimum of %d latent pixels (0 means the model's default)", ErrTiling, tile, MinTile)
	case tile > MaxTile:
		return fmt.Errorf("%w: tile %d is above the maximum of %d latent pixels", ErrTiling, tile, MaxTile)
	case overlap < 0:
		return fmt.Errorf("%w: tile overlap %d is negative", ErrTiling, overlap)
	case tile > 0 && overlap >= tile:
		return fmt.Errorf("%w: tile overlap %d must be smaller than the tile (%d)", ErrTiling, overlap, tile)
	}
	return nil
}

// ErrShifts reports a number of token-grid phases a student cannot use.
var ErrShifts = errors.New("sr: invalid shifts")

// ValidateShifts checks ModelOptions.Shifts: 0 (the model's default), 1,
// 2 or 4.
func ValidateShifts(n int) error {
	switch n {
	case 0, 1, 2, 4:
		return nil
	}
	return fmt.Errorf("%w: %d token-grid phases, want 1, 2 or 4 (0 means the model's default)", ErrShifts, n)
}

// Bytes per pixel of the pipeline's whole-image buffers, used by
// MemoryEstimate. Native pixels (the model's scale) hold the model's
// input, output and result (36) and the colour fix's reference, result and
// scratch (about 48, overlapping); output pixels hold the Lanczos result
// and its scratch, the luma and the alpha plane (24). Measured peaks stay
// below: tsdsr upscale --model bicubic from 1x1 to 4000x4000 peaks at 25 B
// of RSS per output pixel, PNG encoding and the runtime included, and from
// 256x256 adds 67 B per native pixel.
const (
	nativeBytesPerPixel = 84
	outputBytesPerPixel = 24
)

// MemoryEstimate returns an upper estimate, in bytes, of the whole-image
// buffers UpscaleImage allocates for a w x h input: model input and output
// at the native scale, colour fix, resize and alpha. The model's own
// working memory (its tiles, bounded by ModelOptions) comes on top. Servers
// use it to refuse a job before running it.
func (p *Pipeline) MemoryEstimate(w, h int) (int64, error) {
	ow, oh, err := p.OutputSize(w, h)
	if err != nil {
		return 0, err
	}
	s := int64(max(p.up.Scale(), 1))
	native := int64(w) * int64(h) * s * s
	return native*nativeBytesPerPixel + int64(ow)*int64(oh)*outputBytesPerPixel, nil
}

// PeakMemory estimates the resident memory, Go's collector included, that
// upscaling a w x h input takes beyond the loaded model: MemoryEstimate's
// buffers plus the model's working set. Measured with /usr/bin/time on 2
// cores, the built-in student peaked at 0.27 GB for 0.07 MP at native scale
// (a single small tile), 0.95 GB for 1 MP and 1.44 GB for 4 MP (full tiles:
// about 0.75 GB plus 165 bytes a pixel); bicubic at 0.63 GB for 12 MP; an 8x
// outscale added 0.38 GB for 16 MP of output. For the official SD3 model,
// whose tiles are larger, it is a lower bound. Commands use it to refuse a
// file the machine cannot hold before reading its pixels.
func (p *Pipeline) PeakMemory(w, h int) (int64, error) {
	est, err := p.MemoryEstimate(w, h)
	if err != nil {
		return 0, err
	}
	ow, oh, _ := p.OutputSize(w, h)
	s := int64(max(p.up.Scale(), 1))
	native := int64(w) * int64(h) * s * s
	per, base := int64(16), int64(64<<20)
	if _, ok := p.up.(*OneStep); ok {
		per, base = 86, 768<<20
	}
	return est + base + per*native + 6*int64(ow)*int64(oh), nil
}

// CheckTiling refuses a tiling the loaded model cannot run (a 1-pixel
// tile used to panic inside a convolution): for a learned model a tile
// holds at least one patch and at most the model's position grid, and the
// overlap is smaller than the tile it applies to (tile 0: the model's
// default). Models without tiles, such as the bicubic baseline, take any.
func CheckTiling(up Upscaler, tile, overlap int) error {
	o, ok := up.(*OneStep)
	if !ok || o.Student == nil {
		return nil
	}
	p, grid := o.Student.Config.PatchSize, o.Student.Config.PosEmbedMaxSize
	eff := tile
	if eff == 0 {
		eff = o.Tile
	}
	switch {
	case tile != 0 && (tile < p || tile > p*grid):
		return fmt.Errorf("%w: model %s takes tile 0 (its default, %d) or %d..%d latent pixels", ErrTiling, o.Name(), o.Tile, p, p*grid)
	case eff > 0 && overlap >= eff:
		return fmt.Errorf("%w: overlap %d must be smaller than the tile (%d latent pixels)", ErrTiling, overlap, eff)
	}
	return nil
}
