package sr

import (
	"fmt"
	"math"

	"tsdsr/internal/parallel"
)

// ColorFix selects how the pipeline pulls the output's colours back to the
// input's. Diffusion decoders drift in colour and brightness; both fixes are
// the ones TSD-SR and StableSR ship.
type ColorFix string

// Colour fixes accepted by Options.ColorFix.
const (
	// ColorFixWavelet keeps the output's high frequencies and takes the low
	// frequencies (5-level a-trous decomposition) from the bicubic-upscaled
	// input, as StableSR's wavelet_color_fix.
	ColorFixWavelet ColorFix = "wavelet"
	// ColorFixAdaIN matches each channel's mean and standard deviation to
	// those of the bicubic-upscaled input, as StableSR's adain_color_fix.
	ColorFixAdaIN ColorFix = "adain"
	// ColorFixNone leaves the model's output as is.
	ColorFixNone ColorFix = "none"
)

// ParseColorFix accepts "wavelet", "adain" or "none"; "" means wavelet.
func ParseColorFix(s string) (ColorFix, error) {
	switch ColorFix(s) {
	case "", ColorFixWavelet:
		return ColorFixWavelet, nil
	case ColorFixAdaIN, ColorFixNone:
		return ColorFix(s), nil
	}
	return "", fmt.Errorf("sr: unknown colour fix %q (want wavelet, adain or none)", s)
}

// waveletLevels is the depth of the a-trous decomposition: dilations 1, 2,
// 4, 8 and 16 as in TSD-SR.
const waveletLevels = 5

// WaveletColorFix returns content's high frequencies plus style's low
// frequencies, plane by plane (both w x h, same number of planes):
//
//	out = content - low(content) + low(style) = content + low(style - content)
//
// where low applies the [1,2,1]x[1,2,1]/16 kernel waveletLevels times at
// dilations 1, 2, 4, 8, 16 with replicate padding. This equals StableSR's
// wavelet_reconstruction (its high band telescopes to content - low);
// low being linear, one decomposition of the difference does the work of
// two, in a third of the memory.
func WaveletColorFix(content, style []float32, w, h int) []float32 {
	if len(content) != len(style) || len(content)%(w*h) != 0 {
		panic("sr: WaveletColorFix: mismatched planes")
	}
	out := make([]float32, len(content))
	for i := range out {
		out[i] = style[i] - content[i]
	}
	waveletLowInPlace(out, w, h)
	for i := range out {
		out[i] += content[i]
	}
	return out
}

// waveletLowInPlace replaces every w x h plane of a by its low band.
func waveletLowInPlace(a []float32, w, h int) {
	n := w * h
	tmp := make([]float32, n)
	for p := 0; p < len(a); p += n {
		for level := range waveletLevels {
			blurPass(a[p:p+n], tmp, w, h, 1<<level)
		}
	}
}

// blurPass blurs the plane a in place (b is scratch) with [1,2,1]/4 at
// dilation d along x, then along y; indices outside the plane clamp to the
// edge (replicate padding). The kernel is separable, and so is clamping.
func blurPass(a, b []float32, w, h, d int) {
	parallel.For(h, 16, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			row, dst := a[y*w:(y+1)*w], b[y*w:(y+1)*w]
			edge := min(d, w)
			for x := range edge {
				dst[x] = 0.25*row[0] + 0.5*row[x] + 0.25*row[min(x+d, w-1)]
			}
			// Interior without clamping: the hot loop of the colour fix.
			if w > 2*d {
				l, m, r := row[:w-2*d], row[d:w-d], row[2*d:]
				out := dst[d : w-d]
				for x := range out {
					out[x] = 0.25*l[x] + 0.5*m[x] + 0.25*r[x]
				}
			}
			for x := max(w-d, edge); x < w; x++ {
				dst[x] = 0.25*row[max(x-d, 0)] + 0.5*row[x] + 0.25*row[w-1]
			}
		}
	})
	parallel.For(h, 16, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			up, dn := b[max(y-d, 0)*w:], b[min(y+d, h-1)*w:]
			mid, dst := b[y*w:], a[y*w:(y+1)*w]
			for x := range dst {
				dst[x] = 0.25*up[x] + 0.5*mid[x] + 0.25*dn[x]
			}
		}
	})
}

// AdaINColorFix returns content with each w x h plane's mean and standard
// deviation replaced by those of the matching plane of style:
//
//	out = (content - mean_c) / std_c * std_s + mean_s
//
// with unbiased variances plus 1e-5, as StableSR's calc_mean_std.
func AdaINColorFix(content, style []float32, w, h int) []float32 {
	if len(content) != len(style) || len(content)%(w*h) != 0 {
		panic("sr: AdaINColorFix: mismatched planes")
	}
	return adain(content, w*h, style, w*h)
}

// adain is AdaINColorFix with planes of n content and m style values (the
// style only contributes its statistics, so its size may differ).
func adain(content []float32, n int, style []float32, m int) []float32 {
	if len(content)%n != 0 || len(style)%m != 0 || len(content)/n != len(style)/m {
		panic("sr: AdaINColorFix: mismatched planes")
	}
	out := make([]float32, len(content))
	for p, q := 0, 0; p < len(content); p, q = p+n, q+m {
		mc, sc := meanStd(content[p : p+n])
		ms, ss := meanStd(style[q : q+m])
		k := ss / sc
		for i, v := range content[p : p+n] {
			out[p+i] = float32((float64(v)-mc)*k + ms)
		}
	}
	return out
}

// meanStd returns the mean and sqrt(unbiased variance + 1e-5) of v, summed
// in float64 in a fixed order so results are reproducible.
func meanStd(v []float32) (mean, std float64) {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	mean = s / float64(len(v))
	var ss float64
	for _, x := range v {
		d := float64(x) - mean
		ss += d * d
	}
	variance := 0.0
	if len(v) > 1 {
		variance = ss / float64(len(v)-1)
	}
	return mean, math.Sqrt(variance + 1e-5)
}
