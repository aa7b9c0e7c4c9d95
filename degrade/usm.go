package degrade

// USM returns c planes of w x h values unsharp-masked as Real-ESRGAN's
// USMSharp: with blur the (Radius|1) x (Radius|1) Gaussian of OpenCV's
// default sigma (0.3*((k-1)/2 - 1) + 0.8, 8 for radius 50) and residual
// r = img - blur, the sharpened clamp(img + Weight*r, 0, 1) is blended in
// with weight blur(|r|*255 > Threshold), so flat regions keep their noise
// level. Borders reflect.
func USM(pix []float32, w, h, c int, o USMOptions) []float32 {
	k := usmSize(o)
	g := toF32(GaussianKernel1D(k, 0.3*(float64(k-1)/2-1)+0.8))
	n := w * h
	out := make([]float32, n*c)
	mask := make([]float32, n)
	wt, th := float32(o.Weight), float32(o.Threshold)
	for ch := range c {
		img := pix[ch*n : (ch+1)*n]
		blur := separable(img, w, h, g)
		for i, v := range img {
			r := v - blur[i]
			blur[i] = r // reuse as the residual
			if abs32(r)*255 > th {
				mask[i] = 1
			} else {
				mask[i] = 0
			}
		}
		soft := separable(mask, w, h, g)
		o := out[ch*n : (ch+1)*n]
		for i, v := range img {
			sharp := clamp01(v + wt*blur[i])
			o[i] = soft[i]*sharp + (1-soft[i])*v
		}
	}
	return out
}

// usmMargin is how far USM reads around a pixel: the blur of the mask of
// the residual of a blur, two kernel radii.
func usmMargin(o USMOptions) int { return 2 * (usmSize(o) / 2) }

// usmSize is the odd kernel size OpenCV uses for Radius.
func usmSize(o USMOptions) int {
	if o.Radius%2 == 0 {
		return o.Radius + 1
	}
	return o.Radius
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
