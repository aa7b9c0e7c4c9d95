package tensor

import (
	"fmt"

	"tsdsr/internal/parallel"
)

// binOp names the broadcasting arithmetic ops; their kernels are written out
// per op so the inner loops inline (no call per element).
type binOp int

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
)

var binOpNames = [...]string{"Add", "Sub", "Mul", "Div"}

// bcastPlan describes a NumPy-style broadcast of a and b as rows: output
// dims of size 1 are dropped and neighbouring dims where each input is either
// present or broadcast in the same way are merged, so e.g. [N, C, H, W] +
// [C, 1, 1] becomes [N, C, H*W] + [1, C, 1]. The last merged dim is the
// contiguous row; sa and sb are the element strides of a and b per merged
// dim, 0 where the input is broadcast.
type bcastPlan struct {
	dims, sa, sb []int
	inner, rows  int
}

func newBcastPlan(a, b, out []int) *bcastPlan {
	p := &bcastPlan{}
	var fa, fb []bool // per merged dim: is the input present (not broadcast)
	for d, sz := range out {
		if sz == 1 {
			continue
		}
		ja, jb := d-(len(out)-len(a)), d-(len(out)-len(b))
		ha := ja >= 0 && a[ja] == sz
		hb := jb >= 0 && b[jb] == sz
		if k := len(p.dims) - 1; k >= 0 && fa[k] == ha && fb[k] == hb {
			p.dims[k] *= sz
			continue
		}
		p.dims = append(p.dims, sz)
		fa, fb = append(fa, ha), append(fb, hb)
	}
	if len(p.dims) == 0 { // every dim is 1: a single element
		p.dims, fa, fb = []int{1}, []bool{true}, []bool{true}
	}
	p.sa, p.sb = make([]int, len(p.dims)), make([]int, len(p.dims))
	accA, accB := 1, 1
	for k := len(p.dims) - 1; k >= 0; k-- {
		if fa[k] {
			p.sa[k], accA = accA, accA*p.dims[k]
		}
		if fb[k] {
			p.sb[k], accB = accB, accB*p.dims[k]
		}
	}
	p.inner = p.dims[len(p.dims)-1]
	p.rows = Numel(out) / max(1, p.inner)
	if p.inner == 0 {
		p.rows = 0
	}
	return p
}

// offsets returns where row r of the output starts in a and in b.
func (p *bcastPlan) offsets(r int) (oa, ob int) {
	for k := len(p.dims) - 2; k >= 0; k-- {
		c := r % p.dims[k]
		r /= p.dims[k]
		oa += c * p.sa[k]
		ob += c * p.sb[k]
	}
	return oa, ob
}

// binary computes op(a, b) with broadcasting and records its backward.
func binary(op binOp, a, b *Tensor) *Tensor {
	shape, err := BroadcastShape(a.Shape, b.Shape)
	if err != nil {
		panic(fmt.Sprintf("tensor.%s: shapes %v and %v do not broadcast", binOpNames[op], a.Shape, b.Shape))
	}
	out := New(shape...)
	p := newBcastPlan(a.Shape, b.Shape, shape)
	n, xs, ys := p.inner, p.sa[len(p.sa)-1], p.sb[len(p.sb)-1]
	parallel.For(p.rows, max(1, elemGrain/max(1, n)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			oa, ob := p.offsets(r)
			x, y, z := a.Data[oa:], b.Data[ob:], out.Data[r*n:(r+1)*n]
			switch op {
			case opAdd:
				for i := range z {
					z[i] = x[i*xs] + y[i*ys]
				}
			case opSub:
				for i := range z {
					z[i] = x[i*xs] - y[i*ys]
				}
			case opMul:
				for i := range z {
					z[i] = x[i*xs] * y[i*ys]
				}
			case opDiv:
				for i := range z {
					z[i] = x[i*xs] / y[i*ys]
				}
			}
		}
	})
	return record(out, func(g *Tensor) {
		if a.requiresGrad {
			a.accumulateOwned(binaryGrad(op, false, p, g.Data, a, b))
		}
		if b.requiresGrad {
			b.accumulateOwned(binaryGrad(op, true, p, g.Data, a, b))
		}
	}, a, b)
}

// binaryGrad returns dLoss/da (or dLoss/db when forB) of op from the output
// gradient g, summed over the broadcast dims of that input:
//
//	add: (g, g)   sub: (g, -g)   mul: (g*b, g*a)   div: (g/b, -g*a/b^2)
func binaryGrad(op binOp, forB bool, p *bcastPlan, g []float32, a, b *Tensor) []float32 {
	self := a
	if forB {
		self = b
	}
	res := make([]float32, len(self.Data))
	n, xs, ys := p.inner, p.sa[len(p.sa)-1], p.sb[len(p.sb)-1]
	ss := xs
	if forB {
		ss = ys
	}
	// A broadcast input receives several rows' sums in the same place, so
	// parallel chunks add into private buffers merged in row order.
	shared := len(self.Data) != p.rows*n
	parallel.Reduce(p.rows, max(1, elemGrain/max(1, n)), func(lo, hi int) []float32 {
		dst := res
		if shared {
			dst = make([]float32, len(res))
		}
		tmp := make([]float32, n)
		for r := lo; r < hi; r++ {
			oa, ob := p.offsets(r)
			x, y, gr := a.Data[oa:], b.Data[ob:], g[r*n:(r+1)*n]
			switch {
			case op == opAdd, op == opSub && !forB:
				copy(tmp, gr)
			case op == opSub:
				for i, v := range gr {
					tmp[i] = -v
				}
			case op == opMul && !forB:
				for i, v := range gr {
					tmp[i] = v * y[i*ys]
				}
			case op == opMul:
				for i, v := range gr {
					tmp[i] = v * x[i*xs]
				}
			case op == opDiv && !forB:
				for i, v := range gr {
					tmp[i] = v / y[i*ys]
				}
			default: // div, d/db
				for i, v := range gr {
					yv := y[i*ys]
					tmp[i] = -v * x[i*xs] / (yv * yv)
				}
			}
			o := oa
			if forB {
				o = ob
			}
			if ss == 1 {
				d := dst[o : o+n]
				for i, v := range tmp {
					d[i] += v
				}
			} else {
				var s float32
				for _, v := range tmp {
					s += v
				}
				dst[o] += s
			}
		}
		if !shared {
			return nil
		}
		return dst
	}, func(dst []float32) {
		for i, v := range dst {
			res[i] += v
		}
	})
	return res
}

// Add returns a + b with broadcasting.
func Add(a, b *Tensor) *Tensor { return binary(opAdd, a, b) }

// Sub returns a - b with broadcasting.
func Sub(a, b *Tensor) *Tensor { return binary(opSub, a, b) }

// Mul returns a * b elementwise with broadcasting.
func Mul(a, b *Tensor) *Tensor { return binary(opMul, a, b) }

// Div returns a / b elementwise with broadcasting.
func Div(a, b *Tensor) *Tensor { return binary(opDiv, a, b) }
