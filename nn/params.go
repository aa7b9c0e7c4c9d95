// Package nn holds the building blocks shared by tsdsr's models and trainers:
// a registry of named parameters, layers (Linear, Conv2d, norms), LoRA
// adapters, the AdamW optimiser, gradient clipping, learning-rate schedules
// and an exponential moving average of weights.
//
// Names follow diffusers state-dict keys and are built by joining prefixes,
// as stable-diffusion.cpp does: a block receives a Params scoped to its own
// name (p.Sub("transformer_blocks").Sub("0")) and registers its children
// under their attribute names, so the module tree is the checkpoint key tree
// and no separate name table can drift out of sync.
package nn

import (
	"fmt"
	"hash/fnv"
	"strings"

	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// Param is a registered parameter with its name relative to the Params it
// was listed from.
type Param struct {
	Name string
	T    *tensor.Tensor
}

// Params is a view of a parameter registry scoped to a name prefix. Views
// made by Sub share one registry, so registering through any of them is
// visible from the root. Registration order is kept and is the order of
// List, Trainable and of the optimiser state.
//
// A Params is not safe for concurrent registration; reading registered
// tensors concurrently is fine.
type Params struct {
	reg    *registry
	prefix string // "" or a name ending in "."
}

type registry struct {
	names   []string // full names, in registration order
	tensors map[string]*tensor.Tensor
	modules []module // adaptable layers, for AttachLoRA
	init    *rng.Rand
}

// module is a layer that can take a LoRA adapter, under its full name.
type module struct {
	name  string
	layer any // *Linear or *Conv2d
}

// NewParams returns an empty root registry. Layers created through it draw
// their initial weights from r; each parameter uses its own generator
// derived from r and its full name (r itself is never advanced), so a
// parameter's initial value depends only on the seed and its name, not on
// what was registered before it (as long as r is not advanced elsewhere
// while layers are built). With r nil, weights start at zero: use that for
// models whose weights are loaded next, to skip the initialisation.
//
// Parameters made by the layer constructors require gradients, as in
// PyTorch; Freeze a model that is only evaluated, or run it under
// tensor.NoGrad, so that no graph is recorded.
func NewParams(r *rng.Rand) *Params {
	return &Params{reg: &registry{tensors: map[string]*tensor.Tensor{}, init: r}}
}

// Sub returns the view scoped to the child name: p.Sub("attn").Add("to_q.weight", w)
// registers "attn.to_q.weight" under p's prefix. Dots in name nest further.
func (p *Params) Sub(name string) *Params {
	if name == "" {
		return p
	}
	return &Params{reg: p.reg, prefix: p.prefix + name + "."}
}

// Prefix is the full name prefix of this view ("" for the root).
func (p *Params) Prefix() string { return p.prefix }

// Add registers t under name and returns it. Registering a name twice is a
// programming error and panics.
func (p *Params) Add(name string, t *tensor.Tensor) *tensor.Tensor {
	full := p.prefix + name
	if name == "" || strings.HasSuffix(name, ".") {
		panic(fmt.Sprintf("nn.Params.Add: invalid name %q", full))
	}
	if _, dup := p.reg.tensors[full]; dup {
		panic(fmt.Sprintf("nn.Params.Add: %q registered twice", full))
	}
	p.reg.names = append(p.reg.names, full)
	p.reg.tensors[full] = t
	return t
}

// Get returns the tensor registered under name, or nil.
func (p *Params) Get(name string) *tensor.Tensor { return p.reg.tensors[p.prefix+name] }

// List returns the parameters under p's prefix in registration order, named
// relative to the prefix.
func (p *Params) List() []Param {
	var out []Param
	for _, full := range p.reg.names {
		if rel, ok := strings.CutPrefix(full, p.prefix); ok {
			out = append(out, Param{rel, p.reg.tensors[full]})
		}
	}
	return out
}

// Names returns the relative names of List.
func (p *Params) Names() []string {
	var out []string
	for _, q := range p.List() {
		out = append(out, q.Name)
	}
	return out
}

// Filter returns the parameters whose relative name satisfies match.
func (p *Params) Filter(match func(name string) bool) []Param {
	var out []Param
	for _, q := range p.List() {
		if match(q.Name) {
			out = append(out, q)
		}
	}
	return out
}

// Trainable returns the parameters that require a gradient: what an
// optimiser should update.
func (p *Params) Trainable() []Param {
	var out []Param
	for _, q := range p.List() {
		if q.T.RequiresGrad() {
			out = append(out, q)
		}
	}
	return out
}

// SetTrainable sets RequiresGrad on every parameter to match(name); with
// IsLoRA it gives the adapter-only training mode (base weights frozen).
func (p *Params) SetTrainable(match func(name string) bool) {
	for _, q := range p.List() {
		q.T.SetRequiresGrad(match(q.Name))
	}
}

// Freeze stops gradients to every parameter (frozen teachers, inference).
func (p *Params) Freeze() { p.SetTrainable(func(string) bool { return false }) }

// Count returns the number of scalars in ps.
func Count(ps []Param) int {
	n := 0
	for _, q := range ps {
		n += q.T.Numel()
	}
	return n
}

// Count returns the number of scalar parameters under p's prefix.
func (p *Params) Count() int { return Count(p.List()) }

// Map returns the parameters as a name -> tensor map (sharing the tensors).
func Map(ps []Param) map[string]*tensor.Tensor {
	m := make(map[string]*tensor.Tensor, len(ps))
	for _, q := range ps {
		m[q.Name] = q.T
	}
	return m
}

// Save writes parameters to a safetensors file (atomically; see
// safetensors.Save) in dtype, keyed by their names.
func Save(path string, ps []Param, dtype safetensors.DType, metadata map[string]string) error {
	return safetensors.Save(path, Map(ps), metadata, dtype)
}

// Save writes every parameter under p's prefix, named relative to it.
func (p *Params) Save(path string, dtype safetensors.DType, metadata map[string]string) error {
	return Save(path, p.List(), dtype, metadata)
}

// LoadReport lists the names that did not match in a Load, relative to the
// Params' prefix.
type LoadReport struct {
	Missing    []string // registered but absent from the file
	Unexpected []string // in the file but not registered
}

// Load copies tensors from f into the registered parameters (converting
// F16/BF16 to float32), matching the file's keys against names relative to
// p's prefix. A tensor whose shape differs is always an error. With strict,
// missing or unexpected tensors are errors too; without, they are only
// reported (loading a LoRA-only or partial checkpoint). A NaN or Inf in
// the file is an error too (a model or a resumed run would only produce
// NaN); it is found while reading, so then p holds part of the file: discard
// it. On any other error nothing is modified.
func (p *Params) Load(f *safetensors.File, strict bool) (LoadReport, error) {
	return p.LoadPrefixed(f, "", strict)
}

// LoadPrefixed is Load for a file whose keys carry an extra prefix, such as
// "transformer." in a diffusers LoRA file or "base_model.model." in a PEFT
// one: only keys starting with filePrefix take part, with it removed.
func (p *Params) LoadPrefixed(f *safetensors.File, filePrefix string, strict bool) (LoadReport, error) {
	var rep LoadReport
	var misShaped []string
	list := p.List()
	known := make(map[string]bool, len(list))
	for _, q := range list {
		known[q.Name] = true
		in, ok := f.Info(filePrefix + q.Name)
		if !ok {
			rep.Missing = append(rep.Missing, q.Name)
			continue
		}
		if !tensor.SameShape(in.Shape, q.T.Shape) {
			misShaped = append(misShaped, fmt.Sprintf("%s (file %v, model %v)", q.Name, in.Shape, q.T.Shape))
		}
	}
	for _, key := range f.Names() {
		if name, ok := strings.CutPrefix(key, filePrefix); ok && !known[name] {
			rep.Unexpected = append(rep.Unexpected, name)
		}
	}
	var errs []string
	if len(misShaped) > 0 {
		errs = append(errs, "shape mismatch: "+listNames(misShaped))
	}
	if strict && len(rep.Missing) > 0 {
		errs = append(errs, "missing: "+listNames(rep.Missing))
	}
	if strict && len(rep.Unexpected) > 0 {
		errs = append(errs, "unexpected: "+listNames(rep.Unexpected))
	}
	if len(errs) > 0 {
		return rep, fmt.Errorf("nn: loading %sparameters: %s", scopeNote(p.prefix), strings.Join(errs, "; "))
	}
	for _, q := range list {
		if _, ok := f.Info(filePrefix + q.Name); ok {
			if err := f.ReadInto(filePrefix+q.Name, q.T.Data); err != nil {
				return rep, err // unreachable: shapes were checked above
			}
			if i := firstNonFinite(q.T.Data); i >= 0 {
				return rep, fmt.Errorf("nn: loading %sparameters: %s[%d] is %v: the file holds non-finite weights", scopeNote(p.prefix), q.Name, i, q.T.Data[i])
			}
		}
	}
	return rep, nil
}

// firstNonFinite returns the index of the first NaN or Inf in v, or -1.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if x-x != 0 { // NaN - NaN and Inf - Inf are NaN
			return i
		}
	}
	return -1
}

func scopeNote(prefix string) string {
	if prefix == "" {
		return ""
	}
	return fmt.Sprintf("%q ", strings.TrimSuffix(prefix, "."))
}

// listNames joins names for an error message, eliding long lists.
func listNames(names []string) string {
	const show = 8
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}

// newParam registers a parameter of the given shape that requires a
// gradient, filled by init from its own generator (left zero when the
// registry has no generator).
func (p *Params) newParam(name string, init func(r *rng.Rand, d []float32), shape ...int) *tensor.Tensor {
	t := tensor.New(shape...).SetRequiresGrad(true)
	p.Add(name, t)
	if p.reg.init != nil && init != nil {
		init(p.reg.init.Child(nameHash(p.prefix+name)), t.Data)
	}
	return t
}

// addModule records an adaptable layer under its full name.
func (p *Params) addModule(name string, layer any) {
	p.reg.modules = append(p.reg.modules, module{p.prefix + name, layer})
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
