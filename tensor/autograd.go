package tensor

import (
	"fmt"
	"sync/atomic"
)

// node records how a tensor was computed: its inputs and the function that
// turns the output's gradient into gradients of the inputs.
type node struct {
	inputs []*Tensor
	// backward receives dLoss/dOut (same shape as the output) and must call
	// accumulate on every input that RequiresGrad.
	backward func(gradOut *Tensor)
}

var noGradDepth atomic.Int32

// NoGrad turns off gradient recording for the whole process until the
// returned function is called (calls nest). Use it for inference and for the
// frozen score networks of distillation, so no tape memory is held:
//
//	defer tensor.NoGrad()()
func NoGrad() (restore func()) {
	noGradDepth.Add(1)
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			noGradDepth.Add(-1)
		}
	}
}

// GradEnabled reports whether operations currently record gradients.
func GradEnabled() bool { return noGradDepth.Load() == 0 }

// RequiresGrad reports whether gradients flow to or through t.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks a leaf tensor (a parameter) as needing a gradient
// and returns t. It panics on a non-leaf: gradients of intermediate results
// are decided by their inputs.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor {
	if t.node != nil {
		panic("tensor.SetRequiresGrad: not a leaf tensor")
	}
	t.requiresGrad = v
	return t
}

// Detach returns a tensor sharing t's data that is cut from the graph: no
// gradient flows through it (stop-gradient).
func (t *Tensor) Detach() *Tensor {
	return &Tensor{Shape: t.Shape, Data: t.Data, bf16: t.bf16}
}

// ZeroGrad drops the accumulated gradient.
func (t *Tensor) ZeroGrad() { t.Grad = nil }

// record attaches a backward function to out when any input requires a
// gradient and recording is on. Ops call it last and return out.
func record(out *Tensor, backward func(gradOut *Tensor), inputs ...*Tensor) *Tensor {
	if !GradEnabled() {
		return out
	}
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			out.requiresGrad = true
			out.node = &node{inputs: inputs, backward: backward}
			return out
		}
	}
	return out
}

// accumulate adds g to t's gradient (t.Grad is created on first use).
// g must have t's number of elements; g may be reused by the caller only if
// it was not stored, so accumulate copies when it takes ownership of nothing.
func (t *Tensor) accumulate(g []float32) {
	if !t.requiresGrad {
		return
	}
	if len(g) != len(t.Data) {
		panic(fmt.Sprintf("tensor: gradient of %d elements for shape %v", len(g), t.Shape))
	}
	if t.Grad == nil {
		t.Grad = &Tensor{Shape: t.Shape, Data: append([]float32(nil), g...)}
		return
	}
	d := t.Grad.Data
	for i, v := range g {
		d[i] += v
	}
}

// accumulateOwned is accumulate for a freshly allocated g that the caller
// will not touch again: it is adopted without a copy when possible.
func (t *Tensor) accumulateOwned(g []float32) {
	if t.requiresGrad && t.Grad == nil && len(g) == len(t.Data) {
		t.Grad = &Tensor{Shape: t.Shape, Data: g}
		return
	}
	t.accumulate(g)
}

// Backward computes gradients of the scalar t with respect to every leaf
// that requires a gradient, adding them to the leaves' Grad. Intermediate
// gradients and the graph are freed as soon as they are used, so calling
// Backward twice on the same graph is an error.
func (t *Tensor) Backward() {
	if t.Numel() != 1 {
		panic(fmt.Sprintf("tensor.Backward: output has shape %v, want a scalar", t.Shape))
	}
	t.BackwardWith(Full(1, t.Shape...))
}

// BackwardWith is Backward for a non-scalar t, seeded with dLoss/dt = grad.
func (t *Tensor) BackwardWith(grad *Tensor) {
	if !t.requiresGrad {
		panic("tensor.Backward: output does not require a gradient")
	}
	if t.node == nil && t.Grad != nil {
		t.accumulate(grad.Data)
		return
	}
	// Topological order of the nodes reachable from t (iterative DFS: graphs
	// of deep transformers are too deep for recursion to be comfortable).
	var order []*Tensor
	visited := map[*Tensor]bool{}
	type frame struct {
		t    *Tensor
		next int
	}
	stack := []frame{{t, 0}}
	visited[t] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.t.node == nil || f.next >= len(f.t.node.inputs) {
			order = append(order, f.t)
			stack = stack[:len(stack)-1]
			continue
		}
		in := f.t.node.inputs[f.next]
		f.next++
		if in != nil && in.requiresGrad && !visited[in] {
			visited[in] = true
			stack = append(stack, frame{in, 0})
		}
	}
	t.Grad = nil
	t.accumulate(grad.Data)
	for i := len(order) - 1; i >= 0; i-- {
		v := order[i]
		if v.node == nil {
			continue // a leaf: its Grad stays
		}
		if v.Grad != nil {
			v.node.backward(v.Grad)
		}
		// Free the intermediate gradient and the graph edge.
		v.Grad = nil
		v.node = nil
	}
}
