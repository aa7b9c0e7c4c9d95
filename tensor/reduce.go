package tensor

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
		panic("tensor.MSE: shapes differ")
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
