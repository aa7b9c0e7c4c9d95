package distill

import (
	"fmt"
	"math"

	"tsdsr/flow"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// Scores are the two score networks L_TSD reads, seen as flow velocities
// (eps - x0 at model timestep 1000 sigma): Real is the frozen teacher psi,
// Fake the online fake score phi. Both are evaluated without gradients.
type Scores struct {
	Real, Fake flow.Velocity
}

// Index range of the timesteps TSD-SR's score distillation samples, [lo, hi).
const (
	IndexLo = 50
	IndexHi = 950
)

// DASM's trajectory geometry: from index i0 the trajectory spans
// DASMSpan + b indices with b uniform in [-DASMJitter, DASMJitter].
const (
	DASMSpan   = 200
	DASMJitter = 25
)

// DASMWeights returns the weights of an n-step DASM trajectory: 1 for the
// sampled point and 0.3 for each later one (TSD-SR's [1, 0.3, 0.3, 0.3]
// for n = 4).
func DASMWeights(n int) []float32 {
	w := make([]float32, n)
	for k := range w {
		w[k] = 0.3
	}
	if n > 0 {
		w[0] = 1
	}
	return w
}

// DASMIndices returns the n training indices of a DASM trajectory that
// starts at i0 with jitter b: right = min(i0 + DASMSpan + b, 999), the
// n+1 points of linspace(i0, right, n+1) truncated to integers, and the
// first n of them. Indices grow toward lower noise. Truncation is exact
// here (i0 + floor(k (right - i0) / n)); a float32 linspace can only
// differ when k (right - i0) / n is not representable, which never happens
// for n = 4.
func DASMIndices(i0, b, n int) []int {
	right := min(i0+DASMSpan+b, 999)
	out := make([]int, n)
	for k := range out {
		out[k] = i0 + k*(right-i0)/n
	}
	return out
}

// SampleTrajectories draws, for each of batch samples, the start index
// i0 ~ U[IndexLo, IndexHi) and (when steps > 1) the jitter b, and returns
// each sample's DASM indices (one index per sample when steps is 1).
func SampleTrajectories(r *rng.Rand, batch, steps int) [][]int {
	out := make([][]int, batch)
	for n := range out {
		i0 := flow.UniformIndex(r, IndexLo, IndexHi)
		if steps <= 1 {
			out[n] = []int{i0}
			continue
		}
		b := r.IntN(2*DASMJitter+1) - DASMJitter
		out[n] = DASMIndices(i0, b, steps)
	}
	return out
}

// Grad returns the target score distillation gradient for the student's
// output latents zHat [N, ...], given the HR latents zH (unused when
// lambda is 1), the noise eps (one draw shared by both trajectories) and
// each sample's trajectory indices idx[n] (K indices; K = 1 without DASM)
// with weights w (K values):
//
//	sigma_k = sigma(idx[n][k]) per sample;  zh_0 = (1-sigma_0) zHat + sigma_0 eps,  z_0 = (1-sigma_0) zH + sigma_0 eps
//	grad_vsd_k = w_k sigma_k^2 (v_psi(zh_k) - v_phi(zh_k))
//	grad_tsm_k = w_k sigma_k^2 (v_psi(zh_k) - v_psi(z_k))
//	grad = sum_k lambda grad_vsd_k + (1 - lambda) grad_tsm_k
//	zh_{k+1} = zh_k + (sigma_{k+1} - sigma_k) v_phi(zh_k),  z_{k+1} = z_k + (sigma_{k+1} - sigma_k) v_psi(z_k)
//
// Non-finite entries of grad are replaced by 0. Descending along grad moves
// zHat where the teacher's score is higher than the fake score's (VSD) and
// where the teacher's prediction at zHat agrees with the one at the target
// (TSM). No gradient is recorded.
func Grad(sched flow.Schedule, s Scores, zHat, zH, eps *tensor.Tensor, idx [][]int, w []float32, lambda float64) *tensor.Tensor {
	defer tensor.NoGrad()()
	n := zHat.Shape[0]
	if len(idx) != n {
		panic(fmt.Sprintf("distill.Grad: %d trajectories for batch %d", len(idx), n))
	}
	steps := len(w)
	for _, tr := range idx {
		if len(tr) != steps {
			panic(fmt.Sprintf("distill.Grad: trajectory of %d indices for %d weights", len(tr), steps))
		}
	}
	lam := float32(lambda)
	needTSM := lam != 1
	needFake := lam != 0 || steps > 1 // the zh trajectory moves along v_phi
	if needTSM && zH == nil {
		panic("distill.Grad: TSM (lambda < 1) needs the HR latents")
	}
	per := zHat.Numel() / n
	grad := make([]float32, zHat.Numel())
	sig := make([]float32, n)
	for i := range n {
		sig[i] = sched.Sigma(idx[i][0])
	}
	zh := flow.Noise(zHat.Detach(), eps, sig)
	var z *tensor.Tensor
	if needTSM {
		z = flow.Noise(zH.Detach(), eps, sig)
	}
	for k := range steps {
		t := flow.Timesteps(sig)
		var vr, vrz, vf *tensor.Tensor
		if needTSM { // one teacher call on both trajectories: [zh; z]
			v := s.Real(tensor.Concat(0, zh, z), append(append([]float32(nil), t...), t...))
			parts := tensor.Split(v, 0, n, n)
			vr, vrz = parts[0], parts[1]
		} else {
			vr = s.Real(zh, t)
		}
		if needFake {
			vf = s.Fake(zh, t)
		}
		for i := range n {
			c := w[k] * sig[i] * sig[i]
			lo, hi := i*per, (i+1)*per
			g, r := grad[lo:hi], vr.Data[lo:hi]
			switch {
			case !needTSM:
				f := vf.Data[lo:hi]
				for j := range g {
					g[j] += c * (r[j] - f[j])
				}
			case lam == 0:
				rz := vrz.Data[lo:hi]
				for j := range g {
					g[j] += c * (r[j] - rz[j])
				}
			default:
				f, rz := vf.Data[lo:hi], vrz.Data[lo:hi]
				for j := range g {
					g[j] += c * (lam*(r[j]-f[j]) + (1-lam)*(r[j]-rz[j]))
				}
			}
		}
		if k+1 < steps {
			next := make([]float32, n)
			for i := range n {
				next[i] = sched.Sigma(idx[i][k+1])
			}
			zh = flow.Step(zh, vf, sig, next)
			if needTSM {
				z = flow.Step(z, vrz, sig, next)
			}
			sig = next
		}
	}
	for j, v := range grad {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			grad[j] = 0
		}
	}
	return tensor.FromData(grad, zHat.Shape...)
}

// TSDLoss is the surrogate whose gradient with respect to zHat is grad
// divided by the number of elements:
//
//	L = 0.5 mean((zHat - stopgrad(zHat - grad))^2),  dL/dzHat = grad / numel.
//
// Its value is 0.5 mean(grad^2), a gauge of the score mismatch.
func TSDLoss(zHat, grad *tensor.Tensor) *tensor.Tensor {
	target := make([]float32, zHat.Numel())
	for i, v := range zHat.Data {
		target[i] = v - grad.Data[i]
	}
	return tensor.Scale(tensor.MSE(zHat, tensor.FromData(target, zHat.Shape...)), 0.5)
}

// FakeLoss is the fake score's objective on the student's (detached)
// outputs x0, in x0 space: with x_t = sigma eps + (1 - sigma) x0 per sample,
//
//	L = mean((x_t - sigma v_phi(x_t) - x0)^2),
//
// which equals mean(sigma^2 (v_phi - (eps - x0))^2): flow matching on the
// student's distribution, weighted by sigma^2.
func FakeLoss(fake flow.Velocity, x0, eps *tensor.Tensor, sigma []float32) *tensor.Tensor {
	x0 = x0.Detach()
	xt := flow.Noise(x0, eps, sigma)
	v := fake(xt, flow.Timesteps(sigma))
	return tensor.MSE(flow.X0(xt, v, sigma), x0)
}
