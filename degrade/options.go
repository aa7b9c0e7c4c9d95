// Package degrade synthesises real-world low-resolution images from clean
// photos with Real-ESRGAN's "second-order" degradation model, the pipeline
// TSD-SR, OSEDiff and SeeSR train on: USM-sharpened ground truth, then two
// rounds of blur, random resize, Gaussian or Poisson noise and JPEG, then a
// final resize to HR/4 with a sinc filter and JPEG in random order.
//
// Every random choice is drawn first into a Params value (the JSON sidecar of
// a training pair) and the image work is a pure function of the input and
// those Params, so a pair can be reproduced or audited from its sidecar, and
// results depend only on the seed, never on goroutine scheduling.
//
// Differences from Real-ESRGAN that are deliberate: JPEG uses the Go standard
// library codec (YCbCr 4:2:0, libjpeg quantisation tables, integer quality,
// 8-bit input) where Real-ESRGAN's DiffJPEG runs the same transform on float
// input with a float quality; random resizes map coordinates by the in/out
// size ratio where PyTorch's scale_factor path uses the requested factor.
package degrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
)

// Kernel type names, as in Real-ESRGAN's kernel_list.
const (
	KernelIso              = "iso"
	KernelAniso            = "aniso"
	KernelGeneralizedIso   = "generalized_iso"
	KernelGeneralizedAniso = "generalized_aniso"
	KernelPlateauIso       = "plateau_iso"
	KernelPlateauAniso     = "plateau_aniso"
	KernelSinc             = "sinc"
)

// Resize mode names, as in PyTorch's F.interpolate.
const (
	ModeArea     = "area"
	ModeBilinear = "bilinear"
	ModeBicubic  = "bicubic"
)

// MaxKernelSize is the size every blur kernel is padded to (Real-ESRGAN's 21).
const MaxKernelSize = 21

// Options holds every probability and range of the pipeline. The zero value
// is not useful: start from DefaultOptions. Ranges are [lo, hi] pairs.
type Options struct {
	Scale  int          `json:"scale"` // HR side / LR side
	USM    USMOptions   `json:"usm"`
	Crop   CropOptions  `json:"crop"`
	Stage1 StageOptions `json:"stage1"`
	Stage2 StageOptions `json:"stage2"`
	Final  FinalOptions `json:"final"`
}

// USMOptions configures the unsharp mask applied to the ground truth
// (Real-ESRGAN gt_usm): sharp = img + Weight*(img - blur), blended in where
// |img - blur|*255 > Threshold, with a Radius x Radius Gaussian (sigma from
// OpenCV's rule for sigma 0).
type USMOptions struct {
	Enabled   bool    `json:"enabled"`
	Weight    float64 `json:"weight"`
	Radius    int     `json:"radius"`
	Threshold float64 `json:"threshold"`
}

// CropOptions configures the paired-crop sampler.
type CropOptions struct {
	Size  int  `json:"size"`  // HR crop side; a multiple of Scale
	HFlip bool `json:"hflip"` // horizontal flip with probability 0.5
	Rot   bool `json:"rot"`   // vertical flip and transpose, each with probability 0.5
}

// KernelOptions configures one random blur kernel draw.
type KernelOptions struct {
	Prob      float64    `json:"prob"`       // probability to blur at all
	Sizes     []int      `json:"sizes"`      // odd sizes drawn uniformly
	Types     []string   `json:"types"`      // kernel families (without sinc)
	TypeProbs []float64  `json:"type_probs"` // probability of each family
	Sigma     [2]float64 `json:"sigma"`      // for both axes
	BetaG     [2]float64 `json:"betag"`      // generalized Gaussian shape
	BetaP     [2]float64 `json:"betap"`      // plateau shape
	SincProb  float64    `json:"sinc_prob"`  // a sinc kernel instead of a family
	// SincCutoffSmall is the cutoff range (radians) for sizes below 13,
	// SincCutoff for the others.
	SincCutoffSmall [2]float64 `json:"sinc_cutoff_small"`
	SincCutoff      [2]float64 `json:"sinc_cutoff"`
}

// StageOptions configures one degradation round.
type StageOptions struct {
	Blur KernelOptions `json:"blur"`
	// ResizeProbs are the probabilities of up, down and keep. Stage 1 scales
	// its input size; stage 2 scales the final LR size (HR/Scale).
	ResizeProbs  [3]float64 `json:"resize_probs"`
	ResizeRange  [2]float64 `json:"resize_range"`
	ResizeModes  []string   `json:"resize_modes"`
	GaussianProb float64    `json:"gaussian_prob"` // else Poisson
	NoiseSigma   [2]float64 `json:"noise_sigma"`   // in 8-bit units
	PoissonScale [2]float64 `json:"poisson_scale"`
	GrayNoise    float64    `json:"gray_noise_prob"`
	// JPEG is the quality range of the stage's JPEG; [0, 0] means none
	// (stage 2's JPEG is the final one).
	JPEG [2]float64 `json:"jpeg"`
}

// FinalOptions configures the last step: {resize to HR/Scale, then sinc}
// and JPEG, in an order drawn with JPEGFirstProb.
type FinalOptions struct {
	JPEGFirstProb float64    `json:"jpeg_first_prob"`
	ResizeModes   []string   `json:"resize_modes"`
	SincProb      float64    `json:"sinc_prob"`
	SincSizes     []int      `json:"sinc_sizes"`
	SincCutoff    [2]float64 `json:"sinc_cutoff"`
	JPEG          [2]float64 `json:"jpeg"`
}

// DefaultOptions returns Real-ESRGAN's train_realesrnet_x4plus.yml settings
// (also SeeSR's, OSEDiff's and TSD-SR's), with 512 crops for 128 -> 512.
func DefaultOptions() *Options {
	sizes := []int{7, 9, 11, 13, 15, 17, 19, 21}
	types := []string{KernelIso, KernelAniso, KernelGeneralizedIso, KernelGeneralizedAniso, KernelPlateauIso, KernelPlateauAniso}
	probs := []float64{0.45, 0.25, 0.12, 0.03, 0.12, 0.03}
	modes := []string{ModeArea, ModeBilinear, ModeBicubic}
	kernel := func(prob, sigmaHi float64) KernelOptions {
		return KernelOptions{
			Prob: prob, Sizes: slices.Clone(sizes), Types: slices.Clone(types), TypeProbs: slices.Clone(probs),
			Sigma: [2]float64{0.2, sigmaHi}, BetaG: [2]float64{0.5, 4}, BetaP: [2]float64{1, 2},
			SincProb:        0.1,
			SincCutoffSmall: [2]float64{math.Pi / 3, math.Pi},
			SincCutoff:      [2]float64{math.Pi / 5, math.Pi},
		}
	}
	return &Options{
		Scale: 4,
		USM:   USMOptions{Enabled: true, Weight: 0.5, Radius: 50, Threshold: 10},
		Crop:  CropOptions{Size: 512, HFlip: true, Rot: false},
		Stage1: StageOptions{
			Blur:        kernel(1, 3),
			ResizeProbs: [3]float64{0.2, 0.7, 0.1}, ResizeRange: [2]float64{0.15, 1.5},
			ResizeModes:  slices.Clone(modes),
			GaussianProb: 0.5, NoiseSigma: [2]float64{1, 30}, PoissonScale: [2]float64{0.05, 3},
			GrayNoise: 0.4, JPEG: [2]float64{30, 95},
		},
		Stage2: StageOptions{
			Blur:        kernel(0.8, 1.5),
			ResizeProbs: [3]float64{0.3, 0.4, 0.3}, ResizeRange: [2]float64{0.3, 1.2},
			ResizeModes:  slices.Clone(modes),
			GaussianProb: 0.5, NoiseSigma: [2]float64{1, 25}, PoissonScale: [2]float64{0.05, 2.5},
			GrayNoise: 0.4,
		},
		Final: FinalOptions{
			JPEGFirstProb: 0.5, ResizeModes: slices.Clone(modes),
			SincProb: 0.8, SincSizes: slices.Clone(sizes), SincCutoff: [2]float64{math.Pi / 3, math.Pi},
			JPEG: [2]float64{30, 95},
		},
	}
}

// LoadOptions reads options from a JSON file. Fields the file leaves out
// keep their DefaultOptions values, so a file can override one setting.
func LoadOptions(path string) (*Options, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	o := DefaultOptions()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o); err != nil {
		return nil, fmt.Errorf("degrade: %s: %w", path, err)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("degrade: %s: %w", path, err)
	}
	return o, nil
}

// Validate reports the first setting that cannot be sampled.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	prob := func(name string, p float64) {
		if !(p >= 0 && p <= 1) {
			bad("%s = %v, want a probability in [0, 1]", name, p)
		}
	}
	rng := func(name string, r [2]float64, lo, hi float64) {
		if !(r[0] <= r[1] && r[0] >= lo && r[1] <= hi) {
			bad("%s = %v, want lo <= hi within [%v, %v]", name, r, lo, hi)
		}
	}
	dist := func(name string, p []float64) {
		s := 0.0
		for i, v := range p {
			prob(fmt.Sprintf("%s[%d]", name, i), v)
			s += v
		}
		if math.Abs(s-1) > 1e-6 {
			bad("%s sums to %v, want 1", name, s)
		}
	}
	sizes := func(name string, s []int) {
		if len(s) == 0 {
			bad("%s is empty", name)
		}
		for _, k := range s {
			if k < 1 || k%2 == 0 || k > MaxKernelSize {
				bad("%s has %d, want odd sizes in [1, %d]", name, k, MaxKernelSize)
			}
		}
	}
	modes := func(name string, m []string) {
		if len(m) == 0 {
			bad("%s is empty", name)
		}
		for _, v := range m {
			if v != ModeArea && v != ModeBilinear && v != ModeBicubic {
				bad("%s has %q, want area, bilinear or bicubic", name, v)
			}
		}
	}
	jpeg := func(name string, r [2]float64, optional bool) {
		if optional && r == [2]float64{} {
			return
		}
		rng(name, r, 1, 100)
	}
	if o.Scale < 1 {
		bad("scale = %d, want >= 1", o.Scale)
	}
	if o.USM.Enabled && (o.USM.Radius < 1 || o.USM.Weight < 0) {
		bad("usm radius %d weight %v, want radius >= 1 and weight >= 0", o.USM.Radius, o.USM.Weight)
	}
	if o.Crop.Size < 1 || o.Scale >= 1 && o.Crop.Size%o.Scale != 0 {
		bad("crop.size = %d, want a positive multiple of scale %d", o.Crop.Size, o.Scale)
	}
	for i, st := range []*StageOptions{&o.Stage1, &o.Stage2} {
		p := fmt.Sprintf("stage%d.", i+1)
		k := &st.Blur
		prob(p+"blur.prob", k.Prob)
		sizes(p+"blur.sizes", k.Sizes)
		if len(k.Types) != len(k.TypeProbs) || len(k.Types) == 0 {
			bad("%sblur: %d types but %d type_probs", p, len(k.Types), len(k.TypeProbs))
		}
		for _, t := range k.Types {
			if !slices.Contains([]string{KernelIso, KernelAniso, KernelGeneralizedIso, KernelGeneralizedAniso, KernelPlateauIso, KernelPlateauAniso}, t) {
				bad("%sblur.types has unknown %q", p, t)
			}
		}
		dist(p+"blur.type_probs", k.TypeProbs)
		if !(k.Sigma[0] > 0) {
			bad("%sblur.sigma = %v, want > 0", p, k.Sigma)
		}
		rng(p+"blur.sigma", k.Sigma, 0, math.Inf(1))
		rng(p+"blur.betag", k.BetaG, 0, math.Inf(1))
		rng(p+"blur.betap", k.BetaP, 0, math.Inf(1))
		prob(p+"blur.sinc_prob", k.SincProb)
		rng(p+"blur.sinc_cutoff_small", k.SincCutoffSmall, 0, math.Pi)
		rng(p+"blur.sinc_cutoff", k.SincCutoff, 0, math.Pi)
		if k.SincCutoffSmall[0] <= 0 || k.SincCutoff[0] <= 0 {
			bad("%sblur: sinc cutoffs must be > 0", p)
		}
		dist(p+"resize_probs", st.ResizeProbs[:])
		if !(st.ResizeRange[0] > 0 && st.ResizeRange[0] <= 1 && st.ResizeRange[1] >= 1) {
			bad("%sresize_range = %v, want lo in (0, 1] and hi >= 1", p, st.ResizeRange)
		}
		modes(p+"resize_modes", st.ResizeModes)
		prob(p+"gaussian_prob", st.GaussianProb)
		rng(p+"noise_sigma", st.NoiseSigma, 0, 255)
		rng(p+"poisson_scale", st.PoissonScale, 0, math.Inf(1))
		prob(p+"gray_noise_prob", st.GrayNoise)
		jpeg(p+"jpeg", st.JPEG, true)
	}
	f := &o.Final
	prob("final.jpeg_first_prob", f.JPEGFirstProb)
	modes("final.resize_modes", f.ResizeModes)
	prob("final.sinc_prob", f.SincProb)
	sizes("final.sinc_sizes", f.SincSizes)
	rng("final.sinc_cutoff", f.SincCutoff, 0, math.Pi)
	if f.SincCutoff[0] <= 0 {
		bad("final.sinc_cutoff = %v, want > 0", f.SincCutoff)
	}
	jpeg("final.jpeg", f.JPEG, false)
	if len(errs) > 0 {
		return fmt.Errorf("degrade: invalid options: %w", errs[0])
	}
	return nil
}

// errNoImage is returned for a nil or empty input.
var errNoImage = errors.New("degrade: empty image")
