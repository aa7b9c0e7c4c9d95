package nn

import (
	"fmt"
	"sort"
	"strings"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// MergePEFT folds a PEFT LoRA checkpoint into the weights under p, as
// TSD-SR's released transformer.safetensors and vae.safetensors are used:
// for every adapted module, W += (alpha/r) B A. Keys are
// filePrefix + "<module>.lora_A.weight" / ".lora_B.weight" with module
// names relative to p (TSD-SR writes the prefix "transformer." in both of
// its files). A linear adapter has A [r, in] and B [out, r]; a convolution
// adapter has A [r, in, kh, kw] (the base kernel) and B [out, r, 1, 1].
// alpha 0 means alpha = r (TSD-SR's alpha/r = 1).
//
// Everything is checked before anything changes: a key that is not a LoRA
// factor, lacks the prefix, names no adaptable module, misses its partner
// or has a mis-shaped factor is an error listing the offending keys. It
// returns the merged module names, sorted.
func MergePEFT(p *Params, f *safetensors.File, filePrefix string, alpha float64) ([]string, error) {
	type pair struct{ a, b string }
	pairs := map[string]*pair{}
	var unknown []string
	for _, key := range f.Names() {
		rel, ok := strings.CutPrefix(key, filePrefix)
		mod, isA := strings.CutSuffix(rel, ".lora_A.weight")
		mod2, isB := strings.CutSuffix(rel, ".lora_B.weight")
		if !ok || (!isA && !isB) {
			unknown = append(unknown, key)
			continue
		}
		if isB {
			mod = mod2
		}
		pr := pairs[mod]
		if pr == nil {
			pr = &pair{}
			pairs[mod] = pr
		}
		if isA {
			pr.a = key
		} else {
			pr.b = key
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("nn: PEFT LoRA: keys that are not %q<module>.lora_A/B.weight: %s", filePrefix, listNames(unknown))
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("nn: PEFT LoRA: no adapter in the file")
	}
	byName := map[string]module{}
	for _, m := range p.reg.modules {
		if rel, ok := strings.CutPrefix(m.name, p.prefix); ok {
			byName[rel] = m
		}
	}
	mods := make([]string, 0, len(pairs))
	for m := range pairs {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	var problems []string
	adapters := make([]*LoRA, 0, len(mods))
	for _, name := range mods {
		pr := pairs[name]
		m, ok := byName[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: no linear or conv module of that name", name))
			continue
		case pr.a == "" || pr.b == "":
			problems = append(problems, fmt.Sprintf("%s: lora_A and lora_B must both be present", name))
			continue
		}
		ia, _ := f.Info(pr.a)
		ib, _ := f.Info(pr.b)
		l, err := peftAdapter(m, ia.Shape, ib.Shape, alpha)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		adapters = append(adapters, l)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("nn: PEFT LoRA: %s", listNames(problems))
	}
	for i, name := range mods {
		l := adapters[i]
		if err := f.ReadInto(pairs[name].a, l.A.Data); err != nil {
			return mods[:i], err
		}
		if err := f.ReadInto(pairs[name].b, l.B.Data); err != nil {
			return mods[:i], err
		}
		l.Merge()
	}
	return mods, nil
}

// peftAdapter checks a file's factor shapes against module m and returns an
// unattached adapter on m's weight ready to receive them.
func peftAdapter(m module, aShape, bShape []int, alpha float64) (*LoRA, error) {
	if len(aShape) == 0 || len(bShape) < 2 {
		return nil, fmt.Errorf("factor shapes A %v, B %v", aShape, bShape)
	}
	r := aShape[0]
	if alpha == 0 {
		alpha = float64(r)
	}
	l := &LoRA{Rank: r, Alpha: alpha, Scale: float32(alpha / float64(r))}
	var wantA, wantB []int
	switch layer := m.layer.(type) {
	case *Linear:
		l.base = layer.Weight
		wantA, wantB = []int{r, layer.Weight.Shape[1]}, []int{layer.Weight.Shape[0], r}
	case *Conv2d:
		w := layer.Weight.Shape
		l.base, l.conv = layer.Weight, true
		wantA, wantB = []int{r, w[1], w[2], w[3]}, []int{w[0], r, 1, 1}
	default:
		return nil, fmt.Errorf("not a linear or conv layer")
	}
	if r <= 0 || !tensor.SameShape(aShape, wantA) || !tensor.SameShape(bShape, wantB) {
		return nil, fmt.Errorf("lora_A %v and lora_B %v do not fit weight %v (want %v and %v)", aShape, bShape, l.base.Shape, wantA, wantB)
	}
	l.A, l.B = tensor.New(wantA...), tensor.New(wantB...)
	return l, nil
}
