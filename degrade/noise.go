package degrade

import (
	"math"

	"tsdsr/rng"
)

// AddGaussian adds zero-mean Gaussian noise of standard deviation sigma/255
// to c planes of n values and clamps to [0, 1]. With gray, one noise plane
// is drawn and added to every channel (Real-ESRGAN's gray noise).
func AddGaussian(pix []float32, n, c int, sigma float64, gray bool, r *rng.Rand) {
	s := float32(sigma / 255)
	if gray {
		noise := make([]float32, n)
		for i := range noise {
			noise[i] = float32(r.Normal()) * s
		}
		for ch := range c {
			p := pix[ch*n : (ch+1)*n]
			for i, v := range noise {
				p[i] = clamp01(p[i] + v)
			}
		}
		return
	}
	for i := range pix[:n*c] {
		pix[i] = clamp01(pix[i] + float32(r.Normal())*s)
	}
}

// AddPoisson adds Real-ESRGAN's Poisson (shot) noise and clamps to [0, 1].
// The image is quantised to 8 bits, L = round(255 v); with u the number of
// distinct levels in the image, vals = 2^ceil(log2 u) and the noise is
// (Poisson(L/255 * vals) / vals - L/255) * scale: brighter pixels get more
// noise in absolute terms, less relative to their value. With gray, the
// noise is computed once on the luma (0.2989 R + 0.587 G + 0.114 B) and
// added to every channel.
func AddPoisson(pix []float32, n, c int, scale float64, gray bool, r *rng.Rand) {
	var levels []uint8
	if gray && c == 3 {
		levels = make([]uint8, n)
		R, G, B := pix[:n], pix[n:2*n], pix[2*n:3*n]
		for i := range levels {
			levels[i] = level(0.2989*R[i] + 0.587*G[i] + 0.114*B[i])
		}
	} else {
		levels = make([]uint8, n*c)
		for i, v := range pix[:n*c] {
			levels[i] = level(v)
		}
	}
	var seen [256]bool
	u := 0
	for _, l := range levels {
		if !seen[l] {
			seen[l] = true
			u++
		}
	}
	vals := math.Exp2(math.Ceil(math.Log2(float64(u))))
	var ps poissonTables
	noise := make([]float32, len(levels))
	for i, l := range levels {
		lam := float64(l) / 255
		k := ps.sample(l, lam*vals, r)
		noise[i] = float32((float64(k)/vals - lam) * scale)
	}
	for ch := range c {
		p := pix[ch*n : (ch+1)*n]
		nz := noise
		if len(noise) != n {
			nz = noise[ch*n : (ch+1)*n]
		}
		for i, v := range nz {
			p[i] = clamp01(p[i] + v)
		}
	}
}

// poissonTables samples Poisson variates by inverting cumulative tables,
// one per 8-bit level: an image has at most 256 distinct means, so the
// tables cost less than the per-pixel rejection samplers they replace.
type poissonTables [256]*poissonCDF

// poissonCDF is P(X <= k) for k = 0, 1, ... until the tail is below 1e-16
// (a 53-bit uniform cannot land there), with a guide table: guide[j] is the
// first k with cdf[k] >= j/len(guide), where the search for u starts.
type poissonCDF struct {
	cdf   []float64
	guide []int32
}

// sample returns a Poisson(lam) variate for level l (lam is fixed per l):
// the smallest k with cdf[k] >= u for a uniform u.
func (t *poissonTables) sample(l uint8, lam float64, r *rng.Rand) int {
	p := t[l]
	if p == nil {
		p = newPoissonCDF(lam)
		t[l] = p
	}
	u := r.Float64()
	k := int(p.guide[int(u*float64(len(p.guide)))])
	for k < len(p.cdf)-1 && p.cdf[k] < u {
		k++
	}
	return k
}

func newPoissonCDF(lam float64) *poissonCDF {
	p := &poissonCDF{}
	if lam <= 0 {
		p.cdf = []float64{1}
	} else {
		kmax := int(lam + 12*math.Sqrt(lam) + 40)
		pmf := math.Exp(-lam)
		s := 0.0
		for k := 0; k <= kmax; k++ {
			if k > 0 {
				pmf *= lam / float64(k)
			}
			s += pmf
			p.cdf = append(p.cdf, s)
			if k > int(lam) && 1-s < 1e-16 {
				break
			}
		}
	}
	p.guide = make([]int32, len(p.cdf))
	k := 0
	for j := range p.guide {
		for k < len(p.cdf)-1 && p.cdf[k] < float64(j)/float64(len(p.guide)) {
			k++
		}
		p.guide[j] = int32(k)
	}
	return p
}

// level quantises v to 8 bits as torch.clamp((v*255).round(), 0, 255):
// float32 product, round half to even.
func level(v float32) uint8 {
	x := math.RoundToEven(float64(float32(v * 255)))
	return uint8(min(255, max(0, x)))
}

func clamp01(v float32) float32 { return min(1, max(0, v)) }
