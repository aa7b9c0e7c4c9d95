// Package metrics measures super-resolution results with the numbers the
// literature reports: PSNR and SSIM on the luma channel, and NIQE, each
// reproducing a reference implementation to its last digits rather than
// approximately, so that a table printed by tsdsr can stand beside a
// paper's. One metric is tsdsr's own: grid, the strength of a 16-pixel
// grid, an artefact of patch-based generators that NIQE misses.
//
// Two conventions exist for PSNR/SSIM and they differ in the third
// decimal:
//
//   - PyIQA (the default): pyiqa's psnr/ssim with test_y_channel=True,
//     color_space='ycbcr', as used by OSEDiff's and TSD-SR's evaluation
//     scripts. PSNR on the unrounded BT.601 Y in [0, 1] (float32, eps 1e-8);
//     SSIM on Y*255 rounded half to even, float64, 11x11 Gaussian (sigma
//     1.5) 'valid' window, no downsampling, contrast-structure term
//     clamped at 0.
//   - BasicSR: calculate_psnr/calculate_ssim(test_y_channel=True), the
//     classic-benchmark code. Y is not rounded (float32, from float64
//     weights), PSNR has no eps (identical images give +Inf), SSIM uses
//     cv2's float64 Gaussian with no clamp.
//
// NIQE follows pyiqa's create_metric('niqe') exactly (see niqe.go), with
// the pristine model of BasicSR embedded.
//
// Every metric first reduces its input to what pyiqa's loader (cv2.imread)
// sees: 8-bit RGB. Gray images are replicated to three channels, as cv2
// does, and 16-bit images are rounded to 8 bits. Alpha is ignored.
//
// Metrics are safe for concurrent use; evaluations of different images can
// run in parallel.
package metrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"tsdsr/imageio"
)

// Metric is one image-quality measure.
type Metric interface {
	// Name is the lower-case name used on the command line and as the
	// JSON key ("psnr", "ssim", "niqe").
	Name() string
	// NeedsReference reports whether Compute needs the ground truth.
	NeedsReference() bool
	// HigherIsBetter tells how to rank results (false for NIQE).
	HigherIsBetter() bool
	// Compute measures sr, against gt when NeedsReference (gt is ignored
	// otherwise and may be nil).
	Compute(sr, gt *imageio.Image) (float64, error)
}

// Convention selects whose PSNR/SSIM arithmetic to reproduce.
type Convention int

const (
	// PyIQA reproduces pyiqa (psnr/ssim, test_y_channel=True,
	// color_space='ycbcr'), the convention of the paper tables tsdsr is
	// compared with. It is the zero value and what tsdsr eval uses.
	PyIQA Convention = iota
	// BasicSR reproduces BasicSR's calculate_psnr/calculate_ssim with
	// test_y_channel=True.
	BasicSR
)

func (c Convention) String() string {
	switch c {
	case PyIQA:
		return "pyiqa"
	case BasicSR:
		return "basicsr"
	}
	return fmt.Sprintf("Convention(%d)", int(c))
}

// Options configure the built-in metrics. The zero value is pyiqa's
// defaults: no crop, PyIQA convention.
type Options struct {
	// Crop removes this many pixels from every border before measuring
	// (BasicSR's crop_border; 4 for the classic x4 tables).
	Crop int
	// Convention selects PyIQA or BasicSR arithmetic for PSNR and SSIM.
	Convention Convention
}

// Factory builds a metric for the given options.
type Factory func(Options) (Metric, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{
		"psnr": func(o Options) (Metric, error) { return newPSNR(o) },
		"ssim": func(o Options) (Metric, error) { return newSSIM(o) },
		"niqe": func(o Options) (Metric, error) { return newNIQE(o) },
		"grid": func(o Options) (Metric, error) { return newGrid(o) },
	}
)

// unavailable lists the metrics of the field's tables that need a pretrained
// network we cannot ship. They are reported, never approximated.
var unavailable = map[string]string{
	"lpips":   "needs AlexNet/VGG ImageNet weights and LPIPS' learned linear layers",
	"dists":   "needs VGG16 ImageNet weights and DISTS' learned alpha/beta",
	"musiq":   "needs the MUSIQ multi-scale transformer trained on KonIQ-10k",
	"maniqa":  "needs the ViT-B/8 backbone and MANIQA weights trained on KonIQ/PIPAL",
	"clipiqa": "needs CLIP (ResNet-50) weights and CLIP-IQA's prompts",
}

// Register makes a metric available under name (lower case), for example
// a network metric once its weights are supplied. It replaces an earlier
// registration and removes the name from Unavailable.
func Register(name string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	name = strings.ToLower(name)
	registry[name] = f
	delete(unavailable, name)
}

// New returns the metric called name. For a known metric that needs
// weights we do not have, the error says so.
func New(name string, o Options) (Metric, error) {
	if o.Crop < 0 {
		return nil, fmt.Errorf("metrics: negative crop %d", o.Crop)
	}
	regMu.RLock()
	f, ok := registry[strings.ToLower(name)]
	why, missing := unavailable[strings.ToLower(name)]
	regMu.RUnlock()
	switch {
	case ok:
		return f(o)
	case missing:
		return nil, fmt.Errorf("metrics: %s is unavailable: %s", name, why)
	}
	return nil, fmt.Errorf("metrics: unknown metric %q (available: %s)", name, strings.Join(Names(), ", "))
}

// Names lists the available metrics, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Missing is a metric of the literature that is not available, with why.
type Missing struct {
	Name, Reason string
}

// Unavailable lists the known metrics that need weights not supplied.
func Unavailable() []Missing {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []Missing
	for n, r := range unavailable {
		out = append(out, Missing{n, r})
	}
	slices.SortFunc(out, func(a, b Missing) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// rgb8 is an image as cv2.imread gives it to pyiqa: three planes of 8-bit
// samples.
type rgb8 struct {
	w, h int
	c    [3][]uint8
}

// toRGB8 quantizes m to 8-bit RGB and removes crop pixels from each border.
func toRGB8(m *imageio.Image, crop int) (*rgb8, error) {
	if m == nil {
		return nil, errors.New("metrics: nil image")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w, h := m.Width-2*crop, m.Height-2*crop
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("metrics: crop %d leaves nothing of %dx%d", crop, m.Width, m.Height)
	}
	out := &rgb8{w: w, h: h}
	for c := range 3 {
		src := m.Plane(min(c, m.Channels-1))
		if c > 0 && m.Channels == 1 {
			out.c[c] = out.c[0]
			continue
		}
		p := make([]uint8, w*h)
		for y := range h {
			row := src[(y+crop)*m.Width+crop:]
			for x := range w {
				p[y*w+x] = imageio.Quantize8(row[x])
			}
		}
		out.c[c] = p
	}
	return out, nil
}

// builtin is implemented by the metrics of this package: they measure
// images already reduced to 8 bits and cropped.
type builtin interface {
	Metric
	crop() int
	compute8(sr, gt *rgb8) (float64, error)
}

// compute is Compute for a builtin metric.
func compute(m builtin, sr, gt *imageio.Image) (float64, error) {
	v, err := ComputeAll([]Metric{m}, sr, gt)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// ComputeAll measures sr (against gt for the metrics that need it) with
// each metric in turn and returns the values in order. It gives exactly
// what calling each metric's Compute would, but reduces every image to 8
// bits only once for all the metrics of this package.
func ComputeAll(ms []Metric, sr, gt *imageio.Image) ([]float64, error) {
	type key struct {
		img  *imageio.Image
		crop int
	}
	cache := map[key]*rgb8{}
	get := func(img *imageio.Image, crop int) (*rgb8, error) {
		if q, ok := cache[key{img, crop}]; ok {
			return q, nil
		}
		q, err := toRGB8(img, crop)
		if err == nil {
			cache[key{img, crop}] = q
		}
		return q, err
	}
	out := make([]float64, len(ms))
	for i, m := range ms {
		b, ok := m.(builtin)
		if !ok {
			v, err := m.Compute(sr, gt)
			if err != nil {
				return nil, err
			}
			out[i] = v
			continue
		}
		var ref *rgb8
		if m.NeedsReference() {
			if sr == nil || gt == nil {
				return nil, fmt.Errorf("metrics: %s needs both images", m.Name())
			}
			if sr.Width != gt.Width || sr.Height != gt.Height {
				return nil, fmt.Errorf("metrics: %s: size %dx%d differs from reference %dx%d",
					m.Name(), sr.Width, sr.Height, gt.Width, gt.Height)
			}
			var err error
			if ref, err = get(gt, b.crop()); err != nil {
				return nil, err
			}
		}
		img, err := get(sr, b.crop())
		if err != nil {
			return nil, err
		}
		if out[i], err = b.compute8(img, ref); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inv255 is float32(1/255): PyTorch on CUDA divides a float32 tensor by a
// scalar as a multiplication by the float32 reciprocal.
const inv255 = float32(1.0 / 255)

// fma32 is a float32 fused multiply-add a*b + c.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}
