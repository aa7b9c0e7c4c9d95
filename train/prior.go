package train

import (
	"context"
	"fmt"
	"io"
	"math"

	"tsdsr/flow"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// Batcher yields training batches of clean (scaled) latents [n, C, h, w],
// drawing every random choice from r.
type Batcher interface {
	Batch(r *rng.Rand, n int) *tensor.Tensor
}

// PriorOptions is the recipe of flow-matching prior training (SD3's
// objective: v = eps - x0 regressed at logit-normal noise levels).
type PriorOptions struct {
	Steps       int     // optimiser steps
	Batch       int     // latents per step
	LR          float64 // peak learning rate
	Warmup      int     // linear warm-up steps before the cosine decay
	WeightDecay float64 // AdamW decoupled weight decay
	ClipNorm    float64 // gradient-norm clipping (0: none)
	EMADecay    float64 // EMA decay (0: no EMA)
	LogitMean   float64 // logit-normal sigma sampling, SD3: 0
	LogitStd    float64 // SD3: 1

	ValSigmas []float32 // noise levels of the validation loss (default 0.2, 0.5, 0.8)
	ValBatch  int       // latents per validation forward pass (default 8)
	SaveEvery int       // checkpoint period in steps (0: at the end and on interruption only)
	EvalEvery int       // validation period in steps (0: at the end only)
	Progress  io.Writer // progress bar (nil: none)
}

// DefaultPriorOptions returns the recipe defaults: AdamW (0.9, 0.999,
// eps 1e-8) with weight decay 1e-4, clipping 1.0, EMA 0.999 and SD3's
// logit-normal(0, 1) noise levels.
func DefaultPriorOptions() PriorOptions {
	return PriorOptions{Steps: 1000, Batch: 8, LR: 1e-4, Warmup: 100, WeightDecay: 1e-4, ClipNorm: 1,
		EMADecay: 0.999, LogitStd: 1, ValSigmas: []float32{0.2, 0.5, 0.8}, ValBatch: 8, SaveEvery: 500, EvalEvery: 500}
}

// valSeed fixes the validation noise, so every evaluation of every run
// sees the same noisy latents and losses are comparable.
const valSeed = 0x7a1

// TrainPrior trains the network v (whose parameters are p) on latents from
// data, checkpointing into run: the parts "model" (all of p, diffusers
// names), "optimizer" and, with EMA, "ema". It restores run's latest
// checkpoint first, so a resumed run continues exactly. val, when not nil,
// holds held-out latents [M, C, h, w] for the validation loss at fixed
// noise levels, computed with the EMA weights when there are any (those are
// the weights a prior ships with).
func TrainPrior(ctx context.Context, run *Run, v flow.Velocity, p *nn.Params, data Batcher, val *tensor.Tensor, o PriorOptions) error {
	if o.Steps <= 0 || o.Batch <= 0 || o.LR <= 0 {
		return fmt.Errorf("train: prior needs positive steps, batch and learning rate")
	}
	if len(o.ValSigmas) == 0 {
		o.ValSigmas = []float32{0.2, 0.5, 0.8}
	}
	if o.ValBatch <= 0 {
		o.ValBatch = 8
	}
	cfg := nn.DefaultAdamW()
	cfg.LR, cfg.WeightDecay = o.LR, o.WeightDecay
	opt := nn.NewAdamW(p.Trainable(), cfg)
	run.Add("model", Weights(p))
	run.Add("optimizer", opt)
	var ema *nn.EMA
	if o.EMADecay > 0 {
		ema = nn.NewEMA(p.Trainable(), o.EMADecay)
		run.Add("ema", ema)
	}
	if _, err := run.Restore(); err != nil {
		return err
	}
	sched := nn.CosineWarmup(o.LR, o.Warmup, o.Steps)
	sch := flow.SD3()

	step := func(s int, r *rng.Rand) (Scalars, int, error) {
		x0 := data.Batch(r, o.Batch) // [B, C, h, w]
		eps := tensor.New(x0.Shape...)
		r.FillNormal(eps.Data, 0, 1)
		sigma := make([]float32, o.Batch)
		for i := range sigma {
			sigma[i] = sch.Sigma(sch.LogitNormalIndex(r, o.LogitMean, o.LogitStd))
		}
		xt := flow.Noise(x0, eps, sigma)
		loss := tensor.MSE(v(xt, flow.Timesteps(sigma)), flow.Target(x0, eps))
		opt.ZeroGrad()
		loss.Backward()
		norm := nn.GradNorm(opt.Params())
		if o.ClipNorm > 0 {
			norm = nn.ClipGradNorm(opt.Params(), o.ClipNorm)
		}
		m := Scalars{"loss": float64(loss.Item()), "lr": sched(s), "grad_norm": norm}
		if math.IsNaN(norm) || math.IsInf(norm, 0) {
			// A non-finite gradient would poison the moments: skip the update.
			m["skipped"] = 1
			return m, o.Batch, nil
		}
		opt.LR = sched(s)
		opt.Step()
		if ema != nil {
			// diffusers' EMAModel warm-up: decay (1+n)/(10+n) until it reaches the target.
			ema.Decay = min(o.EMADecay, float64(1+ema.Updates())/float64(10+ema.Updates()))
			ema.Update()
		}
		return m, o.Batch, nil
	}

	var eval func(int) (Scalars, error)
	if val != nil {
		eval = func(int) (Scalars, error) {
			if ema != nil {
				ema.Swap()
				defer ema.Swap()
			}
			return ValidationLoss(v, val, o.ValSigmas, o.ValBatch), nil
		}
	}
	return run.Loop(ctx, Loop{Steps: o.Steps, SaveEvery: o.SaveEvery, EvalEvery: o.EvalEvery,
		Step: step, Eval: eval, Progress: o.Progress, Show: []string{"loss", "lr"}})
}

// ValidationLoss returns, for each noise level sigma, the mean squared
// velocity error of v on the latents val [M, C, h, w] noised with fixed
// noise ("val_0.5" for sigma 0.5), and their mean ("val"). The x0 error of
// the implied clean estimate is sigma^2 times the velocity error.
func ValidationLoss(v flow.Velocity, val *tensor.Tensor, sigmas []float32, batch int) Scalars {
	defer tensor.NoGrad()()
	m := Scalars{}
	var total float64
	per := val.Numel() / val.Shape[0]
	for k, sg := range sigmas {
		r := rng.New(valSeed).Child(uint64(k))
		var sum float64
		for lo := 0; lo < val.Shape[0]; lo += batch {
			hi := min(val.Shape[0], lo+batch)
			shape := append([]int{hi - lo}, val.Shape[1:]...)
			x0 := tensor.FromData(val.Data[lo*per:hi*per], shape...)
			eps := tensor.New(shape...)
			r.FillNormal(eps.Data, 0, 1)
			sigma := make([]float32, hi-lo)
			for i := range sigma {
				sigma[i] = sg
			}
			pred := v(flow.Noise(x0, eps, sigma), flow.Timesteps(sigma))
			sum += float64(tensor.MSE(pred, flow.Target(x0, eps)).Item()) * float64(hi-lo)
		}
		mse := sum / float64(val.Shape[0])
		m[fmt.Sprintf("val_%g", sg)] = mse
		total += mse
	}
	m["val"] = total / float64(len(sigmas))
	return m
}
