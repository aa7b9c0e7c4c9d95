// Package tensor is tsdsr's float32 tensor engine with reverse-mode automatic
// differentiation, written for the conv nets and transformers of the paper.
//
// Storage is contiguous and row-major (no strides): a view-free design keeps
// every kernel simple and fast, at the cost of a copy in Transpose/Permute.
// Layouts follow PyTorch: images are NCHW, linear weights are [out, in],
// conv weights are [out, in, kh, kw].
//
// Operations are package functions (Add, MatMul, Conv2d, ...). When any input
// requires a gradient and gradient recording is on (see NoGrad), the result
// remembers how it was made; Backward on a scalar result then fills Grad of
// every leaf that requires a gradient. Inference with frozen weights records
// nothing and so keeps no tape memory.
package tensor

import (
	"fmt"
	"strings"
)

// Tensor is an n-dimensional float32 array. Data holds the elements in
// row-major order; len(Data) == product of Shape.
type Tensor struct {
	Shape []int
	Data  []float32
	// Grad accumulates dLoss/dTensor across Backward calls for leaves that
	// require a gradient; it is nil until the first Backward reaches it.
	Grad *Tensor

	requiresGrad bool
	node         *node // nil for leaves and for results of unrecorded ops
	// bf16 holds the values of a tensor compacted by CompactBF16 (Data is
	// then nil).
	bf16 []uint16
}

// New returns a zero tensor of the given shape.
func New(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, Numel(shape))}
}

// FromData wraps data (not copied) as a tensor of the given shape.
// It panics when the sizes disagree: that is a programming error.
func FromData(data []float32, shape ...int) *Tensor {
	if len(data) != Numel(shape) {
		panic(fmt.Sprintf("tensor.FromData: %d elements for shape %v", len(data), shape))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

// Scalar returns a 0-dimensional tensor holding v.
func Scalar(v float32) *Tensor { return &Tensor{Shape: []int{}, Data: []float32{v}} }

// Full returns a tensor of the given shape filled with v.
func Full(v float32, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		t.Data[i] = v
	}
	return t
}

// Numel is the number of elements of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("tensor: negative dimension in shape %v", shape))
		}
		n *= d
	}
	return n
}

// Numel is the number of elements of t.
func (t *Tensor) Numel() int { return len(t.Data) }

// Dim is the number of dimensions of t.
func (t *Tensor) Dim() int { return len(t.Shape) }

// Item returns the single element of a one-element tensor.
func (t *Tensor) Item() float32 {
	if len(t.Data) != 1 {
		panic(fmt.Sprintf("tensor.Item: shape %v has %d elements", t.Shape, len(t.Data)))
	}
	return t.Data[0]
}

// Clone returns a deep copy of t's shape and data, detached from any graph.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// String describes the shape and the first few values.
func (t *Tensor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Tensor%v[", t.Shape)
	for i, v := range t.Data {
		if i == 8 {
			b.WriteString(" ...")
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.4g", v)
	}
	b.WriteByte(']')
	return b.String()
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
