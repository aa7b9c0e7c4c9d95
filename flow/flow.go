// Package flow is the rectified-flow noise schedule of Stable Diffusion 3 and
// TSD-SR, kept apart from the networks: a model is seen only as a Velocity
// callback, as stable-diffusion.cpp's denoiser sees it.
//
// A clean latent x0 and noise eps meet on the straight line
//
//	x_t = (1 - sigma) x0 + sigma eps,   velocity v = dx_t/dsigma = eps - x0,
//
// and a network trained to predict v at timestep t = 1000 sigma turns noise
// into data by integrating dx/dsigma = v from sigma = 1 down to 0 (Euler).
//
// The discrete schedule is diffusers' FlowMatchEulerDiscreteScheduler with
// 1000 training steps and shift 3: training index i (0 = most noise) has
// s = (1000 - i)/1000 and sigma = shift s / (1 + (shift - 1) s). Shifting
// spends more of the schedule at high noise, where the global structure of a
// large latent is decided.
package flow

import (
	"math"

	"tsdsr/rng"
	"tsdsr/tensor"
)

// Velocity is a network seen by the sampler: it maps a batch x [N, ...] and
// one model timestep per sample (1000 sigma) to the predicted velocity eps - x0
// of x's shape.
type Velocity func(x *tensor.Tensor, timestep []float32) *tensor.Tensor

// Schedule is a shifted discrete flow-matching schedule.
type Schedule struct {
	TrainSteps int     // number of training indices (1000)
	Shift      float64 // timestep shift (3 for SD3 and TSD-SR)
}

// SD3 returns the schedule of SD3 and TSD-SR: 1000 steps, shift 3.
func SD3() Schedule { return Schedule{TrainSteps: 1000, Shift: 3} }

// shift maps an unshifted noise level s in [0, 1] to shift s / (1 + (shift-1) s).
func (s Schedule) shift(x float64) float64 { return s.Shift * x / (1 + (s.Shift-1)*x) }

// Sigma returns the noise level of training index i in [0, TrainSteps):
// index 0 is sigma 1 (pure noise), the last index the smallest sigma.
func (s Schedule) Sigma(i int) float32 {
	if i < 0 || i >= s.TrainSteps {
		panic("flow: training index out of range")
	}
	return float32(s.shift(float64(s.TrainSteps-i) / float64(s.TrainSteps)))
}

// Sigmas returns Sigma of each index.
func (s Schedule) Sigmas(idx []int) []float32 {
	out := make([]float32, len(idx))
	for k, i := range idx {
		out[k] = s.Sigma(i)
	}
	return out
}

// TimestepScale converts a noise level to the network's timestep input,
// t = 1000 sigma, as SD3's transformer expects.
const TimestepScale = 1000

// Timesteps returns the model timesteps 1000 sigma of sigmas.
func Timesteps(sigmas []float32) []float32 {
	out := make([]float32, len(sigmas))
	for k, v := range sigmas {
		out[k] = TimestepScale * v
	}
	return out
}

// InferenceSigmas returns the n+1 noise levels of an n-step sampler, as
// diffusers' set_timesteps computes them: n values spaced linearly between
// the largest and the smallest training sigma (both already shifted), then
// shifted again (diffusers applies the shift to that range a second time),
// followed by a final 0.
func (s Schedule) InferenceSigmas(n int) []float32 {
	if n < 1 {
		panic("flow: at least one inference step")
	}
	hi := s.shift(1)
	lo := s.shift(1 / float64(s.TrainSteps))
	out := make([]float32, n+1)
	for k := range n {
		x := hi
		if n > 1 {
			x = hi + (lo-hi)*float64(k)/float64(n-1)
		}
		out[k] = float32(s.shift(x))
	}
	return out
}

// LogitNormalIndex draws a training index as SD3's training script does
// (compute_density_for_timestep_sampling with weighting "logit_normal"):
// u = sigmoid(N(mean, std)), i = floor(u TrainSteps). With mean 0 and std 1
// the middle noise levels are seen most often.
func (s Schedule) LogitNormalIndex(r *rng.Rand, mean, std float64) int {
	u := 1 / (1 + math.Exp(-(mean + std*r.Normal())))
	return min(int(u*float64(s.TrainSteps)), s.TrainSteps-1)
}

// UniformIndex draws a training index uniformly from [lo, hi); TSD-SR's
// score distillation uses [50, 950).
func UniformIndex(r *rng.Rand, lo, hi int) int { return lo + r.IntN(hi-lo) }

// perSample returns sigma as a [N, 1, ..., 1] tensor broadcasting over a
// batch of x's rank.
func perSample(x *tensor.Tensor, sigma []float32) *tensor.Tensor {
	if len(sigma) != x.Shape[0] {
		panic("flow: one sigma per sample needed")
	}
	shape := make([]int, x.Dim())
	for i := range shape {
		shape[i] = 1
	}
	shape[0] = len(sigma)
	return tensor.FromData(append([]float32(nil), sigma...), shape...)
}

// Noise returns x_t = (1 - sigma_n) x0 + sigma_n eps for each sample n of
// x0 [N, ...]; gradients flow to x0 and eps.
func Noise(x0, eps *tensor.Tensor, sigma []float32) *tensor.Tensor {
	s := perSample(x0, sigma)
	one := make([]float32, len(sigma))
	for i, v := range sigma {
		one[i] = 1 - v
	}
	return tensor.Add(tensor.Mul(x0, perSample(x0, one)), tensor.Mul(eps, s))
}

// Target returns the velocity a network learns, eps - x0.
func Target(x0, eps *tensor.Tensor) *tensor.Tensor { return tensor.Sub(eps, x0) }

// X0 returns the clean estimate x_t - sigma_n v implied by a velocity v
// at noise level sigma_n (exact when v is the true velocity).
func X0(xt, v *tensor.Tensor, sigma []float32) *tensor.Tensor {
	return tensor.Sub(xt, tensor.Mul(v, perSample(xt, sigma)))
}

// Step is one Euler step per sample, x + (next_n - sigma_n) v: with
// next < sigma it moves toward the data.
func Step(x, v *tensor.Tensor, sigma, next []float32) *tensor.Tensor {
	d := make([]float32, len(sigma))
	for i := range sigma {
		d[i] = next[i] - sigma[i]
	}
	return tensor.Add(x, tensor.Mul(v, perSample(x, d)))
}

// Sample integrates from x at sigmas[0] through every level of sigmas with
// Euler steps x += (sigmas[k+1] - sigmas[k]) v(x, 1000 sigmas[k]) (the whole
// batch at one level, as diffusers' pipeline does) and returns the result.
// It records no autograd graph: sampling is inference.
func Sample(v Velocity, x *tensor.Tensor, sigmas []float32) *tensor.Tensor {
	defer tensor.NoGrad()()
	n := x.Shape[0]
	t := make([]float32, n)
	cur, next := make([]float32, n), make([]float32, n)
	for k := 0; k+1 < len(sigmas); k++ {
		for i := range n {
			t[i] = TimestepScale * sigmas[k]
			cur[i], next[i] = sigmas[k], sigmas[k+1]
		}
		x = Step(x, v(x, t), cur, next)
	}
	return x
}

// OneStep is TSD-SR's one-step super-resolution in latent space:
// z = z_L - v(z_L, t = 1000), a single Euler step from sigma = 1 to 0 that
// starts at the LR latent z_L [N, ...] instead of noise. The student's
// training (distill) and the upscaler (sr) both go through it.
func OneStep(v Velocity, zL *tensor.Tensor) *tensor.Tensor {
	t := make([]float32, zL.Shape[0])
	for i := range t {
		t[i] = TimestepScale
	}
	return tensor.Sub(zL, v(zL, t))
}
