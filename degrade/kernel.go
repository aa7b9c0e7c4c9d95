package degrade

import (
	"fmt"
	"math"

	"tsdsr/rng"
)

// KernelParams is one sampled blur kernel, enough to rebuild it exactly.
// Sigmas are in pixels, Theta in radians, Cutoff in radians per pixel.
type KernelParams struct {
	Type   string  `json:"type"`
	Size   int     `json:"size"`
	SigmaX float64 `json:"sigma_x,omitempty"`
	SigmaY float64 `json:"sigma_y,omitempty"`
	Theta  float64 `json:"theta,omitempty"`
	Beta   float64 `json:"beta,omitempty"`
	Cutoff float64 `json:"cutoff,omitempty"`
}

// Kernel is a square filter of odd Size, row-major (row = y), summing to 1.
type Kernel struct {
	Size int
	W    []float64
}

// Build computes the kernel p describes. It panics on an unknown type or an
// even size, which Validate rules out.
func (p KernelParams) Build() Kernel {
	switch p.Type {
	case KernelIso, KernelAniso:
		return quadKernel(p, func(q float64) float64 { return math.Exp(-0.5 * q) })
	case KernelGeneralizedIso, KernelGeneralizedAniso:
		return quadKernel(p, func(q float64) float64 { return math.Exp(-0.5 * math.Pow(q, p.Beta)) })
	case KernelPlateauIso, KernelPlateauAniso:
		return quadKernel(p, func(q float64) float64 { return 1 / (math.Pow(q, p.Beta) + 1) })
	case KernelSinc:
		return SincKernel(p.Cutoff, p.Size)
	}
	panic(fmt.Sprintf("degrade: unknown kernel type %q", p.Type))
}

// quadKernel evaluates f at the quadratic form q = v^T Sigma^-1 v on the
// integer grid centred on the kernel, with Sigma = R diag(sx^2, sy^2) R^T
// rotated by Theta (BasicSR's sigma_matrix2), then normalises.
func quadKernel(p KernelParams, f func(q float64) float64) Kernel {
	checkSize(p.Size)
	sin, cos := math.Sincos(p.Theta)
	ix, iy := 1/(p.SigmaX*p.SigmaX), 1/(p.SigmaY*p.SigmaY)
	a := cos*cos*ix + sin*sin*iy
	b := cos * sin * (ix - iy)
	c := sin*sin*ix + cos*cos*iy
	r := p.Size / 2
	k := Kernel{Size: p.Size, W: make([]float64, p.Size*p.Size)}
	for i := range p.Size {
		y := float64(i - r)
		for j := range p.Size {
			x := float64(j - r)
			k.W[i*p.Size+j] = f(a*x*x + 2*b*x*y + c*y*y)
		}
	}
	k.normalize()
	return k
}

// SincKernel returns the circularly symmetric ideal low-pass filter of the
// given cutoff (radians, pi = Nyquist) truncated to size x size:
// cutoff*J1(cutoff*r) / (2*pi*r), with its limit cutoff^2/(4*pi) at r = 0.
func SincKernel(cutoff float64, size int) Kernel {
	checkSize(size)
	c := float64(size-1) / 2
	k := Kernel{Size: size, W: make([]float64, size*size)}
	for i := range size {
		for j := range size {
			r := math.Hypot(float64(i)-c, float64(j)-c)
			if r == 0 {
				k.W[i*size+j] = cutoff * cutoff / (4 * math.Pi)
			} else {
				k.W[i*size+j] = cutoff * math.J1(cutoff*r) / (2 * math.Pi * r)
			}
		}
	}
	k.normalize()
	return k
}

// GaussianKernel1D returns the normalised 1-D Gaussian of the given size
// and sigma; the outer product with itself is the iso kernel.
func GaussianKernel1D(size int, sigma float64) []float64 {
	checkSize(size)
	g := make([]float64, size)
	s := 0.0
	for i := range g {
		x := float64(i - size/2)
		g[i] = math.Exp(-x * x / (2 * sigma * sigma))
		s += g[i]
	}
	for i := range g {
		g[i] /= s
	}
	return g
}

// Pad returns k zero-padded to size x size (Real-ESRGAN pads every kernel
// to 21 so they stack into one tensor; filtering is unchanged).
func (k Kernel) Pad(size int) Kernel {
	if size <= k.Size {
		return k
	}
	checkSize(size)
	o := (size - k.Size) / 2
	p := Kernel{Size: size, W: make([]float64, size*size)}
	for i := range k.Size {
		copy(p.W[(i+o)*size+o:], k.W[i*k.Size:(i+1)*k.Size])
	}
	return p
}

func (k *Kernel) normalize() {
	s := 0.0
	for _, v := range k.W {
		s += v
	}
	for i := range k.W {
		k.W[i] /= s
	}
}

func checkSize(size int) {
	if size < 1 || size%2 == 0 {
		panic(fmt.Sprintf("degrade: kernel size %d, want odd", size))
	}
}

// sampleKernel draws one kernel as Real-ESRGAN's dataset does: a size, then
// a sinc kernel with probability SincProb (wider cutoff range for sizes of
// 13 and up), else a family by TypeProbs with sigma_x (and for anisotropic
// ones sigma_y and a rotation in [-pi, pi]) uniform in Sigma and a shape
// beta drawn half the time below 1 and half above.
func sampleKernel(r *rng.Rand, o *KernelOptions) KernelParams {
	p := KernelParams{Size: o.Sizes[r.IntN(len(o.Sizes))]}
	if r.Float64() < o.SincProb {
		cut := o.SincCutoff
		if p.Size < 13 {
			cut = o.SincCutoffSmall
		}
		p.Type, p.Cutoff = KernelSinc, r.Uniform(cut[0], cut[1])
		return p
	}
	p.Type = o.Types[choose(r, o.TypeProbs)]
	p.SigmaX = r.Uniform(o.Sigma[0], o.Sigma[1])
	p.SigmaY = p.SigmaX
	switch p.Type {
	case KernelAniso, KernelGeneralizedAniso, KernelPlateauAniso:
		p.SigmaY = r.Uniform(o.Sigma[0], o.Sigma[1])
		p.Theta = r.Uniform(-math.Pi, math.Pi)
	}
	beta := func(lo, hi float64) float64 {
		if r.Float64() < 0.5 {
			return r.Uniform(lo, 1)
		}
		return r.Uniform(1, hi)
	}
	switch p.Type {
	case KernelGeneralizedIso, KernelGeneralizedAniso:
		p.Beta = beta(o.BetaG[0], o.BetaG[1])
	case KernelPlateauIso, KernelPlateauAniso:
		p.Beta = beta(o.BetaP[0], o.BetaP[1])
	}
	return p
}

// sampleSinc draws the final sinc filter (any size, one cutoff range).
func sampleSinc(r *rng.Rand, sizes []int, cutoff [2]float64) KernelParams {
	size := sizes[r.IntN(len(sizes))]
	return KernelParams{Type: KernelSinc, Size: size, Cutoff: r.Uniform(cutoff[0], cutoff[1])}
}

// choose returns index i with probability p[i].
func choose(r *rng.Rand, p []float64) int {
	u := r.Float64()
	for i, v := range p {
		if u < v {
			return i
		}
		u -= v
	}
	return len(p) - 1
}

// pick returns a uniformly chosen element of s.
func pick(r *rng.Rand, s []string) string { return s[r.IntN(len(s))] }
