package tensor

// binary applies f elementwise with broadcasting; df gives the partial
// derivatives (d/da, d/db) at (a, b, out) for the backward pass.
func binary(a, b *Tensor, f func(x, y float32) float32, df func(x, y, z float32) (float32, float32)) *Tensor {
	shape, err := BroadcastShape(a.Shape, b.Shape)
	if err != nil {
		panic(err)
	}
	out := New(shape...)
	ia, ib := broadcastIndex(a.Shape, shape), broadcastIndex(b.Shape, shape)
	switch {
	case ia == nil && ib == nil:
		for i := range out.Data {
			out.Data[i] = f(a.Data[i], b.Data[i])
		}
	case ia == nil:
		for i := range out.Data {
			out.Data[i] = f(a.Data[i], b.Data[ib[i]])
		}
	default:
		for i := range out.Data {
			x, y := at(a.Data, ia, i), at(b.Data, ib, i)
			out.Data[i] = f(x, y)
		}
	}
	return record(out, func(g *Tensor) {
		ga := make([]float32, len(g.Data))
		gb := make([]float32, len(g.Data))
		for i, gv := range g.Data {
			da, db := df(at(a.Data, ia, i), at(b.Data, ib, i), out.Data[i])
			ga[i], gb[i] = gv*da, gv*db
		}
		if a.requiresGrad {
			a.accumulateOwned(reduceTo(ga, ia, len(a.Data)))
		}
		if b.requiresGrad {
			b.accumulateOwned(reduceTo(gb, ib, len(b.Data)))
		}
	}, a, b)
}

func at(d []float32, idx []int32, i int) float32 {
	if idx == nil {
		return d[i]
	}
	return d[idx[i]]
}

// Add returns a + b with broadcasting.
func Add(a, b *Tensor) *Tensor {
	return binary(a, b, func(x, y float32) float32 { return x + y },
		func(_, _, _ float32) (float32, float32) { return 1, 1 })
}

// Sub returns a - b with broadcasting.
func Sub(a, b *Tensor) *Tensor {
	return binary(a, b, func(x, y float32) float32 { return x - y },
		func(_, _, _ float32) (float32, float32) { return 1, -1 })
}

// Mul returns a * b elementwise with broadcasting.
func Mul(a, b *Tensor) *Tensor {
	return binary(a, b, func(x, y float32) float32 { return x * y },
		func(x, y, _ float32) (float32, float32) { return y, x })
}

// Div returns a / b elementwise with broadcasting.
func Div(a, b *Tensor) *Tensor {
	return binary(a, b, func(x, y float32) float32 { return x / y },
		func(x, y, _ float32) (float32, float32) { return 1 / y, -x / (y * y) })
}
