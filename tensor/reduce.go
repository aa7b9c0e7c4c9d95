package tensor

import (
	"fmt"
	"slices"

	"tsdsr/internal/parallel"
)

// Sum returns the sum of all elements as a scalar.
func Sum(a *Tensor) *Tensor {
	var s float64
	for _, v := range a.Data {
		s += float64(v)
	}
	out := Scalar(float32(s))
	return record(out, func(g *Tensor) {
		ga := make([]float32, len(a.Data))
		for i := range ga {
			ga[i] = g.Data[0]
		}
		a.accumulateOwned(ga)
	}, a)
}

// MSE returns mean((a - b)^2) over all elements; a and b have equal shapes.
func MSE(a, b *Tensor) *Tensor {
	if !SameShape(a.Shape, b.Shape) {
		panic(fmt.Sprintf("tensor.MSE: shapes %v and %v differ", a.Shape, b.Shape))
	}
	var s float64
	for i, v := range a.Data {
		d := float64(v - b.Data[i])
		s += d * d
	}
	n := float32(len(a.Data))
	out := Scalar(float32(s / float64(len(a.Data))))
	return record(out, func(g *Tensor) {
		k := 2 * g.Data[0] / n
		if a.requiresGrad {
			ga := make([]float32, len(a.Data))
			for i, v := range a.Data {
				ga[i] = k * (v - b.Data[i])
			}
			a.accumulateOwned(ga)
		}
		if b.requiresGrad {
			gb := make([]float32, len(b.Data))
			for i, v := range a.Data {
				gb[i] = -k * (v - b.Data[i])
			}
			b.accumulateOwned(gb)
		}
	}, a, b)
}

// Mean returns the mean of all elements as a scalar.
func Mean(a *Tensor) *Tensor {
	if len(a.Data) == 0 {
		panic(fmt.Sprintf("tensor.Mean: empty tensor of shape %v", a.Shape))
	}
	return Scale(Sum(a), 1/float32(len(a.Data)))
}

// SumAxis sums a over one axis (negative counts from the end). With keepDim
// the axis stays with size 1, otherwise it is removed. Sums accumulate in
// float64. The gradient broadcasts back along the axis.
func SumAxis(a *Tensor, axis int, keepDim bool) *Tensor {
	return sumAxis("SumAxis", a, axis, keepDim, 1)
}

// MeanAxis averages a over one axis; see SumAxis.
func MeanAxis(a *Tensor, axis int, keepDim bool) *Tensor {
	axis = normAxis("MeanAxis", axis, a.Shape)
	if a.Shape[axis] == 0 {
		panic(fmt.Sprintf("tensor.MeanAxis: empty axis %d of %v", axis, a.Shape))
	}
	return sumAxis("MeanAxis", a, axis, keepDim, 1/float64(a.Shape[axis]))
}

// sumAxis computes scale * sum over axis, viewing a as [outer, n, inner].
func sumAxis(op string, a *Tensor, axis int, keepDim bool, scale float64) *Tensor {
	axis = normAxis(op, axis, a.Shape)
	outer, n, inner := splitAt(a.Shape, axis)
	shape := slices.Clone(a.Shape)
	if keepDim {
		shape[axis] = 1
	} else {
		shape = slices.Delete(shape, axis, axis+1)
	}
	out := New(shape...)
	if inner == 1 {
		parallel.For(outer, max(1, elemGrain/max(1, n)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				var s float64
				for _, v := range a.Data[o*n : (o+1)*n] {
					s += float64(v)
				}
				out.Data[o] = float32(s * scale)
			}
		})
	} else {
		// Rows of inner contiguous values are added into a float64 row.
		parallel.For(outer, max(1, elemGrain/max(1, n*inner)), func(lo, hi int) {
			acc := make([]float64, inner)
			for o := lo; o < hi; o++ {
				clear(acc)
				for k := 0; k < n; k++ {
					for i, v := range a.Data[(o*n+k)*inner : (o*n+k+1)*inner] {
						acc[i] += float64(v)
					}
				}
				dst := out.Data[o*inner : (o+1)*inner]
				for i, s := range acc {
					dst[i] = float32(s * scale)
				}
			}
		})
	}
	return record(out, func(g *Tensor) {
		ga := make([]float32, len(a.Data))
		sc := float32(scale)
		parallel.For(outer*n, max(1, elemGrain/max(1, inner)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				src := g.Data[(r/n)*inner : (r/n+1)*inner]
				dst := ga[r*inner : (r+1)*inner]
				for i, v := range src {
					dst[i] = sc * v
				}
			}
		})
		a.accumulateOwned(ga)
	}, a)
}
