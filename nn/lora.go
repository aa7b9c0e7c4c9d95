package nn

import (
	"errors"
	"fmt"
	"strings"

	"tsdsr/internal/parallel"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// LoRA is a low-rank adapter on a Linear or Conv2d layer with PEFT's
// semantics: y = base(x) + Scale * B(A(x)), Scale = Alpha/Rank.
//
// On a Linear, A is [r, in] and B is [out, r]. On a Conv2d, A is a
// convolution in -> r with the base kernel, stride and padding
// ([r, in, k, k]) and B a 1x1 convolution r -> out ([out, r, 1, 1]). B
// starts at zero, so attaching an adapter does not change the model.
type LoRA struct {
	A, B  *tensor.Tensor
	Rank  int
	Alpha float64
	Scale float32

	base            *tensor.Tensor // the adapted layer's weight
	conv            bool
	stride, padding int
	merged          bool
}

// LoRAConfig selects and shapes the adapters of AttachLoRA.
type LoRAConfig struct {
	Rank  int
	Alpha float64 // Scale = Alpha/Rank; 0 means Alpha = Rank
	// Targets are module-name suffixes as PEFT's target_modules: a module
	// matches when its name equals a target or ends with "." + target
	// (e.g. "attn.to_q", "ff.net.0.proj").
	Targets []string
	// Gaussian initialises A with N(0, 1/Rank^2) (PEFT's "gaussian");
	// the default is PEFT's kaiming-uniform with a = sqrt(5).
	Gaussian bool
	// Seed makes A's initialisation deterministic: each adapter draws from
	// a generator derived from Seed and its module name.
	Seed uint64
}

// IsLoRA reports whether a parameter name belongs to a LoRA adapter; pass it
// to Params.SetTrainable for adapter-only training.
func IsLoRA(name string) bool {
	n := "." + name
	return strings.Contains(n, ".lora_A.") || strings.Contains(n, ".lora_B.")
}

// AttachLoRA adds an adapter to every Linear and Conv2d under p whose name
// (relative to p) matches one of cfg.Targets, registering
// "<module>.lora_A.weight" and "<module>.lora_B.weight" as PEFT names them.
// It returns the adapted module names. It fails, changing nothing, when the
// config is invalid, when no module matches, or when a matching module
// already has an adapter.
func AttachLoRA(p *Params, cfg LoRAConfig) ([]string, error) {
	if cfg.Rank <= 0 {
		return nil, fmt.Errorf("nn.AttachLoRA: rank %d", cfg.Rank)
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("nn.AttachLoRA: no target modules")
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.Rank)
	}
	var hits []module
	for _, m := range p.reg.modules {
		rel, ok := strings.CutPrefix(m.name, p.prefix)
		if !ok || !matchesTarget(rel, cfg.Targets) {
			continue
		}
		if m.lora() != nil || p.reg.tensors[m.name+".lora_A.weight"] != nil {
			return nil, fmt.Errorf("nn.AttachLoRA: %q already has an adapter", m.name)
		}
		hits = append(hits, m)
	}
	if len(hits) == 0 {
		return nil, fmt.Errorf("nn.AttachLoRA: no module under %q matches %v", p.prefix, cfg.Targets)
	}
	root := &Params{reg: p.reg}
	seed := rng.New(cfg.Seed)
	var names []string
	for _, m := range hits {
		l := &LoRA{Rank: cfg.Rank, Alpha: cfg.Alpha, Scale: float32(cfg.Alpha / float64(cfg.Rank))}
		var aShape, bShape []int
		switch layer := m.layer.(type) {
		case *Linear:
			l.base = layer.Weight
			out, in := layer.Weight.Shape[0], layer.Weight.Shape[1]
			aShape, bShape = []int{cfg.Rank, in}, []int{out, cfg.Rank}
			layer.LoRA = l
		case *Conv2d:
			l.base, l.conv, l.stride, l.padding = layer.Weight, true, layer.Stride, layer.Padding
			w := layer.Weight.Shape // [out, in, kh, kw]
			aShape, bShape = []int{cfg.Rank, w[1], w[2], w[3]}, []int{w[0], cfg.Rank, 1, 1}
			layer.LoRA = l
		}
		l.A = root.Add(m.name+".lora_A.weight", tensor.New(aShape...).SetRequiresGrad(true))
		l.B = root.Add(m.name+".lora_B.weight", tensor.New(bShape...).SetRequiresGrad(true))
		r := seed.Child(nameHash(m.name))
		if cfg.Gaussian {
			r.FillNormal(l.A.Data, 0, 1/float32(cfg.Rank))
		} else {
			fanIn := tensor.Numel(aShape[1:])
			uniformInit(fanIn)(r, l.A.Data)
		}
		rel, _ := strings.CutPrefix(m.name, p.prefix)
		names = append(names, rel)
	}
	return names, nil
}

// MergeLoRA merges every adapter under p into its base weight (for export
// or fast inference) and returns how many it merged.
func MergeLoRA(p *Params) int { return eachLoRA(p, (*LoRA).Merge) }

// UnmergeLoRA undoes MergeLoRA and returns how many adapters it unmerged.
func UnmergeLoRA(p *Params) int { return eachLoRA(p, (*LoRA).Unmerge) }

func eachLoRA(p *Params, f func(*LoRA)) int {
	n := 0
	for _, m := range p.reg.modules {
		if l := m.lora(); l != nil && strings.HasPrefix(m.name, p.prefix) {
			f(l)
			n++
		}
	}
	return n
}

func (m module) lora() *LoRA {
	switch l := m.layer.(type) {
	case *Linear:
		return l.LoRA
	case *Conv2d:
		return l.LoRA
	}
	return nil
}

func matchesTarget(name string, targets []string) bool {
	for _, t := range targets {
		if name == t || strings.HasSuffix(name, "."+t) {
			return true
		}
	}
	return false
}

// forward computes the adapter's term Scale * B(A(x)).
func (l *LoRA) forward(x *tensor.Tensor) *tensor.Tensor {
	if l.conv {
		h := tensor.Conv2d(x, l.A, nil, l.stride, l.padding) // [N, r, Ho, Wo]
		return tensor.Scale(tensor.Conv2d(h, l.B, nil, 1, 0), l.Scale)
	}
	h := tensor.Linear(x, l.A, nil) // [..., r]
	return tensor.Scale(tensor.Linear(h, l.B, nil), l.Scale)
}

// Merged reports whether the adapter is folded into the base weight.
func (l *LoRA) Merged() bool { return l.merged }

// Merge folds the adapter into the base weight, W += Scale * B A (for a
// convolution, B's 1x1 kernel times A's kernel), so inference pays nothing
// for it; Forward then skips the adapter. Merging twice is a no-op. Load
// adapter weights before merging: the merged update is the one of A and B
// at merge time.
func (l *LoRA) Merge() {
	if !l.merged {
		l.addDelta(1)
		l.merged = true
	}
}

// Unmerge subtracts the merged update again (exact up to float32 rounding),
// so training can continue on the adapter. It is a no-op when not merged.
func (l *LoRA) Unmerge() {
	if l.merged {
		l.addDelta(-1)
		l.merged = false
	}
}

// Delta returns Scale * B A in the base weight's shape.
func (l *LoRA) Delta() *tensor.Tensor {
	d := tensor.New(l.base.Shape...)
	l.accumulateDelta(d.Data, 1)
	return d
}

func (l *LoRA) addDelta(sign float64) { l.accumulateDelta(l.base.Data, sign) }

// accumulateDelta adds sign*Scale*(B A) to w, viewing A as [r, K] (K = in,
// or in*kh*kw for a convolution) and B as [out, r]. Each element is summed
// in float64 and rounded once.
func (l *LoRA) accumulateDelta(w []float32, sign float64) {
	r := l.Rank
	k := len(l.A.Data) / r
	out := len(l.B.Data) / r
	s := sign * float64(l.Scale)
	a, b := l.A.Data, l.B.Data
	parallel.For(out, max(1, 4096/max(1, k*r)), func(lo, hi int) {
		acc := make([]float64, k)
		for o := lo; o < hi; o++ {
			clear(acc)
			for j := range r {
				bo := float64(b[o*r+j])
				if bo == 0 {
					continue
				}
				for i, av := range a[j*k : (j+1)*k] {
					acc[i] += bo * float64(av)
				}
			}
			row := w[o*k : (o+1)*k]
			for i, v := range acc {
				row[i] = float32(float64(row[i]) + s*v)
			}
		}
	})
}
