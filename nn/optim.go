package nn

import (
	"fmt"
	"math"
	"strconv"

	"tsdsr/internal/parallel"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// AdamWConfig holds AdamW's hyperparameters.
type AdamWConfig struct {
	LR           float64
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
}

// DefaultAdamW returns torch.optim.AdamW's defaults (lr 1e-3, betas 0.9 and
// 0.999, eps 1e-8, weight decay 0.01).
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), step for
// step the update of torch.optim.AdamW:
//
//	w -= lr*wd*w
//	m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//	w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
//
// The step count t is shared by all parameters; a parameter without a
// gradient in a step is left untouched (moments included). Set LR before
// each Step to follow a Schedule.
type AdamW struct {
	AdamWConfig
	params []Param
	m, v   [][]float32
	step   int
}

// NewAdamW returns an optimiser over params (usually Params.Trainable()).
func NewAdamW(params []Param, cfg AdamWConfig) *AdamW {
	o := &AdamW{AdamWConfig: cfg, params: params}
	for _, p := range params {
		o.m = append(o.m, make([]float32, p.T.Numel()))
		o.v = append(o.v, make([]float32, p.T.Numel()))
	}
	return o
}

// Steps returns the number of Step calls so far (restored by Load).
func (o *AdamW) Steps() int { return o.step }

// Params returns the optimised parameters.
func (o *AdamW) Params() []Param { return o.params }

// ZeroGrad drops the gradients of the optimised parameters.
func (o *AdamW) ZeroGrad() { ZeroGrad(o.params) }

// Step applies one update from the accumulated gradients.
func (o *AdamW) Step() {
	o.step++
	t := float64(o.step)
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	decay := float32(1 - o.LR*o.WeightDecay)
	stepSize := float32(o.LR / (1 - math.Pow(o.Beta1, t)))
	invBC2 := float32(1 / math.Sqrt(1-math.Pow(o.Beta2, t)))
	eps := float32(o.Eps)
	for i, p := range o.params {
		if p.T.Grad == nil {
			continue
		}
		w, g, m, v := p.T.Data, p.T.Grad.Data, o.m[i], o.v[i]
		parallel.For(len(w), 1<<14, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				gj := g[j]
				w[j] *= decay
				m[j] = b1*m[j] + (1-b1)*gj
				v[j] = b2*v[j] + (1-b2)*gj*gj
				w[j] -= stepSize * m[j] / (float32(math.Sqrt(float64(v[j])))*invBC2 + eps)
			}
		})
	}
}

// Save writes the optimiser state (moments as F32, step count and
// hyperparameters as metadata) to a safetensors file, keyed
// "<param>.exp_avg" and "<param>.exp_avg_sq" as in PyTorch's state dict.
// Loading it back resumes training bit for bit.
func (o *AdamW) Save(path string) error {
	ts := map[string]*tensor.Tensor{}
	for i, p := range o.params {
		ts[p.Name+".exp_avg"] = tensor.FromData(o.m[i], p.T.Shape...)
		ts[p.Name+".exp_avg_sq"] = tensor.FromData(o.v[i], p.T.Shape...)
	}
	meta := map[string]string{
		"optimizer":    "AdamW",
		"step":         strconv.Itoa(o.step),
		"lr":           fmtFloat(o.LR),
		"beta1":        fmtFloat(o.Beta1),
		"beta2":        fmtFloat(o.Beta2),
		"eps":          fmtFloat(o.Eps),
		"weight_decay": fmtFloat(o.WeightDecay),
	}
	return safetensors.Save(path, ts, meta, safetensors.F32)
}

// Load restores state written by Save: moments, step count and
// hyperparameters. Every optimised parameter must have its moments, with
// matching shapes; on error the optimiser is unchanged.
func (o *AdamW) Load(f *safetensors.File) error {
	if f.Metadata["optimizer"] != "AdamW" {
		return fmt.Errorf("nn.AdamW.Load: not an AdamW state (optimizer %q)", f.Metadata["optimizer"])
	}
	step, err := strconv.Atoi(f.Metadata["step"])
	if err != nil || step < 0 {
		return fmt.Errorf("nn.AdamW.Load: bad step %q", f.Metadata["step"])
	}
	var cfg AdamWConfig
	for _, h := range []struct {
		key string
		dst *float64
	}{{"lr", &cfg.LR}, {"beta1", &cfg.Beta1}, {"beta2", &cfg.Beta2}, {"eps", &cfg.Eps}, {"weight_decay", &cfg.WeightDecay}} {
		if *h.dst, err = strconv.ParseFloat(f.Metadata[h.key], 64); err != nil {
			return fmt.Errorf("nn.AdamW.Load: bad %s %q", h.key, f.Metadata[h.key])
		}
	}
	if err := checkState(f, o.params, ".exp_avg", ".exp_avg_sq"); err != nil {
		return fmt.Errorf("nn.AdamW.Load: %w", err)
	}
	if n := len(f.Names()); n != 2*len(o.params) {
		return fmt.Errorf("nn.AdamW.Load: file holds %d tensors for %d parameters", n, len(o.params))
	}
	for i, p := range o.params {
		f.ReadInto(p.Name+".exp_avg", o.m[i])
		f.ReadInto(p.Name+".exp_avg_sq", o.v[i])
	}
	o.AdamWConfig, o.step = cfg, step
	return nil
}

// checkState verifies that f holds, for every parameter, a tensor named
// name+suffix of the parameter's shape.
func checkState(f *safetensors.File, params []Param, suffixes ...string) error {
	for _, p := range params {
		for _, s := range suffixes {
			in, ok := f.Info(p.Name + s)
			if !ok {
				return fmt.Errorf("no state %q", p.Name+s)
			}
			if !tensor.SameShape(in.Shape, p.T.Shape) {
				return fmt.Errorf("state %q has shape %v, parameter %v", p.Name+s, in.Shape, p.T.Shape)
			}
		}
	}
	return nil
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// ZeroGrad drops the gradients of params.
func ZeroGrad(params []Param) {
	for _, p := range params {
		p.T.ZeroGrad()
	}
}

// GradNorm returns the L2 norm of all gradients of params together
// (parameters without a gradient count as zero). Squares are summed in
// float64 over fixed blocks in parallel, then the blocks in order, so the
// result does not depend on the number of threads.
func GradNorm(params []Param) float64 {
	const block = 1 << 16
	var s float64
	for _, p := range params {
		if p.T.Grad == nil {
			continue
		}
		g := p.T.Grad.Data
		partial := make([]float64, (len(g)+block-1)/block)
		parallel.For(len(partial), 1, func(lo, hi int) {
			for b := lo; b < hi; b++ {
				var acc float64
				for _, v := range g[b*block : min(len(g), (b+1)*block)] {
					acc += float64(v) * float64(v)
				}
				partial[b] = acc
			}
		})
		for _, v := range partial {
			s += v
		}
	}
	return math.Sqrt(s)
}

// ClipGradNorm scales the gradients of params so that their joint L2 norm
// is at most maxNorm, as torch.nn.utils.clip_grad_norm_ (coefficient
// maxNorm/(norm+1e-6), applied only when below 1). It returns the norm
// before clipping; a NaN or infinite norm leaves the gradients unchanged so
// the caller can detect it and skip the step.
func ClipGradNorm(params []Param, maxNorm float64) float64 {
	norm := GradNorm(params)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	c := maxNorm / (norm + 1e-6)
	if c >= 1 {
		return norm
	}
	for _, p := range params {
		if p.T.Grad == nil {
			continue
		}
		g := p.T.Grad.Data
		parallel.For(len(g), 1<<14, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				g[i] = float32(float64(g[i]) * c)
			}
		})
	}
	return norm
}
