package degrade

import (
	"fmt"
	"math"
	"slices"

	"tsdsr/imageio"
	"tsdsr/resize"
	"tsdsr/rng"
)

// Params records every random choice of one degradation; with the input
// image it determines the output exactly (Apply). It is the JSON sidecar
// of a training pair.
type Params struct {
	Width  int         `json:"width"` // input (HR) size
	Height int         `json:"height"`
	Scale  int         `json:"scale"` // output is Width/Scale x Height/Scale
	Stage1 StageParams `json:"stage1"`
	Stage2 StageParams `json:"stage2"`
	Final  FinalParams `json:"final"`
}

// StageParams is one degradation round: blur (nil: none), resize to
// Width x Height, noise from the stream rng.New(NoiseSeed), JPEG (quality
// 0: none).
type StageParams struct {
	Blur         *KernelParams `json:"blur,omitempty"`
	Resize       string        `json:"resize"` // up, down or keep
	ResizeScale  float64       `json:"resize_scale"`
	ResizeMode   string        `json:"resize_mode"`
	Width        int           `json:"width"`
	Height       int           `json:"height"`
	Noise        string        `json:"noise"` // gaussian or poisson
	NoiseSigma   float64       `json:"noise_sigma,omitempty"`
	PoissonScale float64       `json:"poisson_scale,omitempty"`
	GrayNoise    bool          `json:"gray_noise"`
	NoiseSeed    uint64        `json:"noise_seed"`
	JPEGQuality  int           `json:"jpeg_quality,omitempty"`
}

// FinalParams is the last step: resize to HR/Scale with ResizeMode then the
// Sinc filter (nil: none), and JPEG; JPEG comes first when JPEGFirst.
type FinalParams struct {
	JPEGFirst   bool          `json:"jpeg_first"`
	ResizeMode  string        `json:"resize_mode"`
	Sinc        *KernelParams `json:"sinc,omitempty"`
	JPEGQuality int           `json:"jpeg_quality"`
}

var resizers = map[string]resize.Func{
	ModeArea:     resize.Area,
	ModeBilinear: resize.Bilinear,
	ModeBicubic:  resize.Bicubic,
}

// Sample draws the parameters of one degradation of a w x h image from
// valid options (see Validate). It consumes r in a fixed order, so one seed
// gives one Params.
func Sample(r *rng.Rand, o *Options, w, h int) Params {
	p := Params{Width: w, Height: h, Scale: o.Scale}
	stage := func(st *StageOptions, size func(s float64) (int, int)) StageParams {
		var sp StageParams
		if st.Blur.Prob >= 1 || r.Float64() < st.Blur.Prob {
			k := sampleKernel(r, &st.Blur)
			sp.Blur = &k
		}
		sp.Resize = [...]string{"up", "down", "keep"}[choose(r, st.ResizeProbs[:])]
		switch sp.Resize {
		case "up":
			sp.ResizeScale = r.Uniform(1, st.ResizeRange[1])
		case "down":
			sp.ResizeScale = r.Uniform(st.ResizeRange[0], 1)
		default:
			sp.ResizeScale = 1
		}
		sp.ResizeMode = pick(r, st.ResizeModes)
		sp.Width, sp.Height = size(sp.ResizeScale)
		if r.Float64() < st.GaussianProb {
			sp.Noise, sp.NoiseSigma = "gaussian", r.Uniform(st.NoiseSigma[0], st.NoiseSigma[1])
		} else {
			sp.Noise, sp.PoissonScale = "poisson", r.Uniform(st.PoissonScale[0], st.PoissonScale[1])
		}
		sp.GrayNoise = r.Float64() < st.GrayNoise
		sp.NoiseSeed = r.Uint64()
		if st.JPEG != [2]float64{} {
			sp.JPEGQuality = quality(r, st.JPEG)
		}
		return sp
	}
	// Stage 1 scales its input like F.interpolate(scale_factor=s); stage 2
	// scales the target LR size like int(h / scale * s).
	p.Stage1 = stage(&o.Stage1, func(s float64) (int, int) {
		return max(1, int(math.Floor(float64(w)*s))), max(1, int(math.Floor(float64(h)*s)))
	})
	p.Stage2 = stage(&o.Stage2, func(s float64) (int, int) {
		sc := float64(o.Scale)
		return max(1, int(float64(w)/sc*s)), max(1, int(float64(h)/sc*s))
	})
	f := &p.Final
	f.JPEGFirst = r.Float64() < o.Final.JPEGFirstProb
	f.ResizeMode = pick(r, o.Final.ResizeModes)
	if r.Float64() < o.Final.SincProb {
		k := sampleSinc(r, o.Final.SincSizes, o.Final.SincCutoff)
		f.Sinc = &k
	}
	f.JPEGQuality = quality(r, o.Final.JPEG)
	return p
}

// quality draws a JPEG quality uniformly in q and rounds it to an integer
// (the standard library encoder takes integers).
func quality(r *rng.Rand, q [2]float64) int { return int(math.Round(r.Uniform(q[0], q[1]))) }

// Apply degrades hr (1 or 3 channels, values in [0, 1], p.Width x
// p.Height) as p says and returns the LR image, rounded to 8-bit levels.
// It is deterministic: the same hr and p give the same bits.
func Apply(hr *imageio.Image, p *Params) (*imageio.Image, error) {
	if err := hr.Validate(); err != nil {
		return nil, err
	}
	if hr.Width != p.Width || hr.Height != p.Height {
		return nil, fmt.Errorf("degrade: image is %dx%d, params are for %dx%d", hr.Width, hr.Height, p.Width, p.Height)
	}
	if p.Scale < 1 || p.Width/p.Scale < 1 || p.Height/p.Scale < 1 {
		return nil, fmt.Errorf("degrade: %dx%d is too small for scale %d", p.Width, p.Height, p.Scale)
	}
	c := hr.Channels
	// Noise is added in place: work on a copy, never on the caller's image.
	pix, w, h := slices.Clone(hr.Pix), hr.Width, hr.Height
	var err error
	for _, sp := range []*StageParams{&p.Stage1, &p.Stage2} {
		if pix, w, h, err = stage(pix, w, h, c, sp); err != nil {
			return nil, err
		}
	}
	f := &p.Final
	ow, oh := p.Width/p.Scale, p.Height/p.Scale
	resizeSinc := func() error {
		if pix, err = resizePlanes(pix, w, h, c, ow, oh, f.ResizeMode); err != nil {
			return err
		}
		w, h = ow, oh
		if f.Sinc != nil {
			pix = filter(pix, w, h, c, *f.Sinc)
		}
		return nil
	}
	if !f.JPEGFirst {
		if err := resizeSinc(); err != nil {
			return nil, err
		}
	}
	if pix, err = JPEG(pix, w, h, c, f.JPEGQuality); err != nil {
		return nil, err
	}
	if f.JPEGFirst {
		if err := resizeSinc(); err != nil {
			return nil, err
		}
	}
	out := &imageio.Image{Width: w, Height: h, Channels: c, Pix: make([]float32, len(pix)), BitDepth: 8}
	for i, v := range pix {
		out.Pix[i] = float32(level(v)) / 255
	}
	return out, nil
}

// stage runs one degradation round on c planes of w x h values.
func stage(pix []float32, w, h, c int, sp *StageParams) ([]float32, int, int, error) {
	if sp.Blur != nil {
		pix = filter(pix, w, h, c, *sp.Blur)
	}
	var err error
	if pix, err = resizePlanes(pix, w, h, c, sp.Width, sp.Height, sp.ResizeMode); err != nil {
		return nil, 0, 0, err
	}
	w, h = sp.Width, sp.Height
	r := rng.New(sp.NoiseSeed)
	switch sp.Noise {
	case "gaussian":
		AddGaussian(pix, w*h, c, sp.NoiseSigma, sp.GrayNoise, r)
	case "poisson":
		AddPoisson(pix, w*h, c, sp.PoissonScale, sp.GrayNoise, r)
	default:
		return nil, 0, 0, fmt.Errorf("degrade: unknown noise %q", sp.Noise)
	}
	if sp.JPEGQuality > 0 {
		if pix, err = JPEG(pix, w, h, c, sp.JPEGQuality); err != nil {
			return nil, 0, 0, err
		}
	}
	return pix, w, h, nil
}

// resizePlanes resamples c planes to ow x oh with the named PyTorch mode;
// the same size is the identity, as in F.interpolate.
func resizePlanes(pix []float32, w, h, c, ow, oh int, mode string) ([]float32, error) {
	if ow == w && oh == h {
		return pix, nil
	}
	f, ok := resizers[mode]
	if !ok {
		return nil, fmt.Errorf("degrade: unknown resize mode %q", mode)
	}
	n := w * h
	out := make([]float32, 0, ow*oh*c)
	for ch := range c {
		out = append(out, f(pix[ch*n:(ch+1)*n], w, h, ow, oh)...)
	}
	return out, nil
}

// Degrade samples parameters from r and applies them to hr.
func Degrade(hr *imageio.Image, r *rng.Rand, o *Options) (*imageio.Image, Params, error) {
	p := Sample(r, o, hr.Width, hr.Height)
	lr, err := Apply(hr, &p)
	return lr, p, err
}
