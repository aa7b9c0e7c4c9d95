// Package eval runs image-quality metrics over folders of results, the
// engine of `tsdsr eval`: it pairs results with ground truths by file name,
// measures pairs in parallel, and reports per-image values and means as a
// table, JSON lines or CSV.
package eval

import (
	"context"
	"fmt"
	"math"
	"sync"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
	"tsdsr/metrics"
	"tsdsr/resize"
)

// Loader reads the images of a pair: the image to measure and, when the
// pair has one, its ground truth (nil otherwise).
type Loader func(p Pair) (sr, gt *imageio.Image, err error)

// LoadFiles reads both files of a pair with imageio.
func LoadFiles(p Pair) (sr, gt *imageio.Image, err error) {
	if sr, err = imageio.ReadFile(p.SR, nil); err != nil {
		return nil, nil, err
	}
	if p.GT != "" {
		if gt, err = imageio.ReadFile(p.GT, nil); err != nil {
			return nil, nil, err
		}
	}
	return sr, gt, nil
}

// BicubicBaseline returns a Loader that treats Pair.SR as a low-resolution
// input and measures its PyTorch-style bicubic upscale (resize.Bicubic, as
// TSD-SR upsamples its input), clamped to [0, 1] and rounded to 8 bits as
// a saved PNG would be. The output has the ground truth's size, or scale
// times the input's when there is no ground truth.
func BicubicBaseline(scale int) Loader {
	return func(p Pair) (*imageio.Image, *imageio.Image, error) {
		lr, gt, err := LoadFiles(p)
		if err != nil {
			return nil, nil, err
		}
		ow, oh := lr.Width*scale, lr.Height*scale
		if gt != nil {
			ow, oh = gt.Width, gt.Height
		}
		up := resize.Image(lr, ow, oh, resize.Bicubic)
		for i, v := range up.Pix {
			up.Pix[i] = float32(imageio.Quantize8(v)) / 255
		}
		up.Alpha, up.BitDepth = nil, 8
		return up, gt, nil
	}
}

// Result holds the values of one image, in the order of the metrics.
type Result struct {
	Name   string
	Values []float64
}

// Run measures every pair with every metric, using up to workers
// goroutines (at least 1), and returns results in the order of pairs.
// progress, if not nil, is called once per finished image (from any
// goroutine, serially). The first error (naming the file) stops the run;
// cancelling ctx stops it too.
func Run(ctx context.Context, pairs []Pair, ms []metrics.Metric, load Loader, workers int, progress func()) ([]Result, error) {
	for _, p := range pairs {
		for _, m := range ms {
			if m.NeedsReference() && p.GT == "" {
				return nil, fmt.Errorf("%s needs a ground truth (--gt) for %s", m.Name(), p.Name)
			}
		}
	}
	out := make([]Result, len(pairs))
	var mu sync.Mutex
	err := parallel.Jobs(ctx, len(pairs), workers, func(i int) error {
		r, err := measure(pairs[i], ms, load)
		if err != nil {
			return err
		}
		out[i] = r
		if progress != nil {
			mu.Lock()
			progress()
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func measure(p Pair, ms []metrics.Metric, load Loader) (Result, error) {
	sr, gt, err := load(p)
	if err != nil {
		return Result{}, err
	}
	vals, err := metrics.ComputeAll(ms, sr, gt)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return Result{Name: p.Name, Values: vals}, nil
}

// Mean returns the mean of each metric over results (NaN when empty).
func Mean(results []Result, nmetrics int) []float64 {
	mean := make([]float64, nmetrics)
	for k := range mean {
		var s float64
		for _, r := range results {
			s += r.Values[k]
		}
		mean[k] = s / float64(len(results))
		if len(results) == 0 {
			mean[k] = math.NaN()
		}
	}
	return mean
}
