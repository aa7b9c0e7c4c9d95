package degrade

// USM returns c planes of w x h values unsharp-masked as Real-ESRGAN's
// USMSharp: with blur the (Radius|1) x (Radius|1) Gaussian of OpenCV's
// default sigma (0.3*((k-1)/2 - 1) + 0.8, 8 for radius 50) and residual
// r = img - blur, the sharpened clamp(img + Weight*r, 0, 1) is blended in
// with weight blur(|r|*255 > Threshold), so flat regions keep their noise
// level. Borders reflect.
func USM(pix []float32, w, h, c int, o USMOptions) []float32 {
	return usmRect(pix, w, h, c, o, 0, 0, w, h)
}

// usmRect is USM computed only on the ow x oh rectangle at (x0, y0), with
// the same values: the blur and the mask are needed one kernel radius
// around the rectangle, the soft mask only inside it.
func usmRect(pix []float32, w, h, c int, o USMOptions, x0, y0, ow, oh int) []float32 {
	k := usmSize(o)
	g := toF32(GaussianKernel1D(k, 0.3*(float64(k-1)/2-1)+0.8))
	r := k / 2
	// E is where the mask is needed; clipped only at the plane's edges,
	// so reflecting inside E is reflecting inside the plane.
	ex0, ey0 := max(0, x0-r), max(0, y0-r)
	ew, eh := min(w, x0+ow+r)-ex0, min(h, y0+oh+r)-ey0
	n := w * h
	out := make([]float32, 0, ow*oh*c)
	mask := make([]float32, ew*eh)
	wt, th := float32(o.Weight), float32(o.Threshold)
	for ch := range c {
		img := pix[ch*n : (ch+1)*n]
		res := separableRect(img, w, h, g, ex0, ey0, ew, eh)
		for y := range eh {
			src := img[(ey0+y)*w+ex0:][:ew]
			row := res[y*ew : (y+1)*ew]
			m := mask[y*ew : (y+1)*ew]
			for x, v := range src {
				d := v - row[x]
				row[x] = d // the residual, in place of the blur
				if abs32(d)*255 > th {
					m[x] = 1
				} else {
					m[x] = 0
				}
			}
		}
		soft := separableRect(mask, ew, eh, g, x0-ex0, y0-ey0, ow, oh)
		for y := range oh {
			src := img[(y0+y)*w+x0:][:ow]
			res := res[(y0-ey0+y)*ew+x0-ex0:][:ow]
			sm := soft[y*ow : (y+1)*ow]
			for x, v := range src {
				sharp := clamp01(v + wt*res[x])
				out = append(out, sm[x]*sharp+(1-sm[x])*v)
			}
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
