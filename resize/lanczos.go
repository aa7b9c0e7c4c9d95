package resize

import "math"

// lanczosSupport is the radius of the Lanczos-3 kernel in input pixels at
// scale 1.
const lanczosSupport = 3

// Lanczos resizes a plane with a Lanczos-3 filter, for arbitrary output
// sizes (the CLI's --outscale). It follows Pillow's resampling: centre
// (o+0.5)*in/out, kernel stretched by in/out when downscaling (so it
// antialiases), taps clipped to the image and weights renormalised to sum
// to 1, so a constant image stays constant. Weights are computed in
// float64; values may overshoot [0, 1] and are not clamped.
func Lanczos(src []float32, w, h, ow, oh int) []float32 {
	return resample("Lanczos", lanczosTaps, src, w, h, ow, oh)
}

func lanczos3(x float64) float64 {
	if x == 0 {
		return 1
	}
	if x <= -lanczosSupport || x >= lanczosSupport {
		return 0
	}
	px := math.Pi * x
	return lanczosSupport * math.Sin(px) * math.Sin(px/lanczosSupport) / (px * px)
}

func lanczosTaps(in, out int) *taps {
	scale := float64(in) / float64(out)
	fs := max(scale, 1)
	support := lanczosSupport * fs
	span := func(o int) (lo, hi int, center float64) {
		center = (float64(o) + 0.5) * scale
		lo = max(int(math.Floor(center-support+0.5)), 0)
		hi = min(int(math.Floor(center+support+0.5)), in)
		return lo, max(hi, lo+1), center
	}
	n := 0
	for o := range out {
		lo, hi, _ := span(o)
		n = max(n, hi-lo)
	}
	t := newTaps(out, n)
	ws := make([]float64, n)
	for o := range out {
		lo, hi, center := span(o)
		sum := 0.0
		for i := lo; i < hi; i++ {
			ws[i-lo] = lanczos3((float64(i) - center + 0.5) / fs)
			sum += ws[i-lo]
		}
		for k := range n {
			t.idx[o*n+k] = int32(lo)
			t.w[o*n+k] = 0
			if lo+k < hi && sum != 0 {
				t.idx[o*n+k] = int32(lo + k)
				t.w[o*n+k] = float32(ws[k] / sum)
			}
		}
	}
	return t
}
