// Package sample draws images from the flow-matching prior and measures the
// prior as a denoiser: what `tsdsr sample prior` and `tsdsr sample denoise`
// print and write, usable without the CLI. Latents are TAESD3's, scaled by
// taesd.LatentScale, as the prior is trained on them.
package sample

import (
	"context"
	"math"

	"tsdsr/degrade"
	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/metrics"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// PriorOptions configure Prior.
type PriorOptions struct {
	Steps int    // Euler steps over SD3's shift-3 schedule
	N     int    // samples
	Size  int    // image side in pixels (a multiple of 8 x the patch size)
	Batch int    // samples per model pass
	Seed  uint64 // noise seed
	// Progress, when not nil, is called after every model pass with the
	// number of samples it covered.
	Progress func(samples int)
}

// Prior draws o.N latents from N(0, I), integrates the prior's flow with an
// Euler sampler over SD3's schedule and decodes them with dec into images
// [1, 3, Size, Size] (not clamped). Sample i's noise comes from its own
// generator, so the images do not depend on o.Batch. It stops with ctx's
// error when ctx is cancelled.
func Prior(ctx context.Context, m *mmdit.Model, dec *taesd.Decoder, o PriorOptions) ([]*tensor.Tensor, error) {
	var canceled error
	velocity := func(x *tensor.Tensor, t []float32) *tensor.Tensor {
		if ctx.Err() != nil {
			// Stop cheaply: the rest of the batch is thrown away.
			canceled = ctx.Err()
			return tensor.New(x.Shape...)
		}
		v := m.Velocity(x, t)
		if o.Progress != nil {
			o.Progress(x.Shape[0])
		}
		return v
	}
	s := o.Size / taesd.Factor
	sigmas := flow.SD3().InferenceSigmas(o.Steps)
	images := make([]*tensor.Tensor, 0, o.N)
	for lo := 0; lo < o.N; lo += o.Batch {
		hi := min(o.N, lo+o.Batch)
		per := 16 * s * s
		x := tensor.New(hi-lo, 16, s, s)
		for i := lo; i < hi; i++ {
			rng.New(o.Seed).Child(uint64(i)).FillNormal(x.Data[(i-lo)*per:(i-lo+1)*per], 0, 1)
		}
		z := flow.Sample(velocity, x, sigmas)
		if canceled != nil {
			return nil, canceled
		}
		restore := tensor.NoGrad()
		for i := range hi - lo {
			zi := tensor.FromData(z.Data[i*per:(i+1)*per], 1, 16, s, s)
			images = append(images, dec.Forward(tensor.Scale(zi, 1/taesd.LatentScale)))
		}
		restore()
	}
	return images, nil
}

// GridPad is the white gap between grid cells, in pixels.
const GridPad = 2

// Grid lays out images [1, 3, H, W] (values clamped to [0, 1]) in rows of
// cols cells (about square when cols is 0) on a white background.
func Grid(images []*tensor.Tensor, cols int) *imageio.Image {
	h, w := images[0].Shape[2], images[0].Shape[3]
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(len(images)))))
	}
	cols = min(cols, len(images))
	rows := (len(images) + cols - 1) / cols
	gw, gh := cols*w+(cols+1)*GridPad, rows*h+(rows+1)*GridPad
	out := imageio.NewImage(gw, gh, 3)
	for i := range out.Pix {
		out.Pix[i] = 1
	}
	for k, img := range images {
		x0, y0 := GridPad+(k%cols)*(w+GridPad), GridPad+(k/cols)*(h+GridPad)
		for c := range 3 {
			for y := range h {
				src := img.Data[(c*h+y)*w:][:w]
				dst := out.Pix[c*gw*gh+(y0+y)*gw+x0:][:w]
				for x, v := range src {
					dst[x] = min(1, max(0, v))
				}
			}
		}
	}
	return out
}

// DenoiseLevel is one noise level of a Denoise report: the mean RGB PSNR
// (dB, metrics.RawPSNR) against the decoded clean latent of the decoded
// noisy latent, of the best Gaussian blur of it (of std BlurPx pixels) and
// of the decoded x0 prediction.
type DenoiseLevel struct {
	Sigma                    float32
	Noisy, Blur, Predicted   float64
	BlurPx                   float64
	NoisyImages, Predictions []*tensor.Tensor
}

// Denoising is the report of Denoise.
type Denoising struct {
	Clean  []*tensor.Tensor // decoded clean latents
	Levels []DenoiseLevel
}

// blurs are the Gaussian blur widths (pixels) the noisy baseline tries.
var blurs = []float64{0.5, 1, 2, 4, 8}

// Denoise measures the prior as a denoiser, the check that it learned the
// data: latents x0 [N, 16, h, w] are noised at each sigma (noise from
// seed), and the decoded x0 prediction x_t - sigma v is compared with the
// decoded noisy input and with the best of several Gaussian blurs of it,
// all against the decoded clean latent (a latent cache holds latents, not
// pixels). The model runs 4 latents at a time.
func Denoise(ctx context.Context, m *mmdit.Model, dec *taesd.Decoder, x0 *tensor.Tensor, sigmas []float32, seed uint64) (*Denoising, error) {
	defer tensor.NoGrad()()
	rep := &Denoising{Clean: Decode(dec, x0)}
	per := x0.Numel() / x0.Shape[0]
	for k, sg := range sigmas {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		eps := tensor.New(x0.Shape...)
		rng.New(seed).Child(uint64(k)).FillNormal(eps.Data, 0, 1)
		sig := make([]float32, x0.Shape[0])
		for i := range sig {
			sig[i] = sg
		}
		xt := flow.Noise(x0, eps, sig)
		pred := tensor.New(x0.Shape...)
		for lo := 0; lo < x0.Shape[0]; lo += 4 {
			hi := min(x0.Shape[0], lo+4)
			shape := append([]int{hi - lo}, x0.Shape[1:]...)
			xb := tensor.FromData(xt.Data[lo*per:hi*per], shape...)
			v := m.Velocity(xb, flow.Timesteps(sig[lo:hi]))
			copy(pred.Data[lo*per:hi*per], flow.X0(xb, v, sig[lo:hi]).Data)
		}
		noisy, denoised := Decode(dec, xt), Decode(dec, pred)
		l := DenoiseLevel{Sigma: sg, Noisy: meanPSNR(noisy, rep.Clean), Predicted: meanPSNR(denoised, rep.Clean),
			Blur: math.Inf(-1), NoisyImages: noisy, Predictions: denoised}
		for _, px := range blurs {
			blurred := make([]*tensor.Tensor, len(noisy))
			for i, im := range noisy {
				blurred[i] = gaussianBlur(im, px)
			}
			if p := meanPSNR(blurred, rep.Clean); p > l.Blur {
				l.Blur, l.BlurPx = p, px
			}
		}
		rep.Levels = append(rep.Levels, l)
	}
	return rep, nil
}

// Grid lays out the report's images: per latent one row of the clean
// image, then the noisy input and the prediction of every level.
func (d *Denoising) Grid() *imageio.Image {
	var cells []*tensor.Tensor
	for i := range d.Clean {
		cells = append(cells, d.Clean[i])
		for _, l := range d.Levels {
			cells = append(cells, l.NoisyImages[i], l.Predictions[i])
		}
	}
	return Grid(cells, 1+2*len(d.Levels))
}

// Decode decodes scaled latents [N, 16, h, w] one at a time (bounding
// memory) into images [1, 3, 8h, 8w] clamped to [0, 1].
func Decode(dec *taesd.Decoder, z *tensor.Tensor) []*tensor.Tensor {
	per := z.Numel() / z.Shape[0]
	out := make([]*tensor.Tensor, z.Shape[0])
	for i := range out {
		zi := tensor.FromData(z.Data[i*per:(i+1)*per], append([]int{1}, z.Shape[1:]...)...)
		out[i] = tensor.Clamp(dec.Forward(tensor.Scale(zi, 1/taesd.LatentScale)), 0, 1)
	}
	return out
}

// meanPSNR is the mean over pairs of the RGB PSNR (peak 1) of a against b.
func meanPSNR(a, b []*tensor.Tensor) float64 {
	var sum float64
	for i := range a {
		sum += metrics.RawPSNR(a[i].Data, b[i].Data)
	}
	return sum / float64(len(a))
}

// gaussianBlur blurs each plane of an image [1, 3, H, W] with a Gaussian of
// std px pixels (reflected borders).
func gaussianBlur(im *tensor.Tensor, px float64) *tensor.Tensor {
	h, w := im.Shape[2], im.Shape[3]
	size := 2*int(math.Ceil(3*px)) + 1
	k1 := degrade.GaussianKernel1D(size, px)
	k := make([]float32, size*size)
	for y := range size {
		for x := range size {
			k[y*size+x] = float32(k1[y] * k1[x])
		}
	}
	out := tensor.New(im.Shape...)
	for c := range 3 {
		copy(out.Data[c*h*w:(c+1)*h*w], degrade.Correlate(im.Data[c*h*w:(c+1)*h*w], w, h, k, size, size))
	}
	return out
}
