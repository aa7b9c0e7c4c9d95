package tensor_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/internal/parallel"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// convTaps calls f with the flat indices into the output, x and w of every
// product the convolution of x and w (stride s, padding p, output ho x wo)
// sums, in the order of output element, then input channel, kernel row and
// kernel column.
func convTaps(x, w *tensor.Tensor, s, p, ho, wo int, f func(oi, xi, wi int)) {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	for in := range n {
		for co := range cout {
			for oh := range ho {
				for ow := range wo {
					oi := ((in*cout+co)*ho+oh)*wo + ow
					for c := range cin {
						for ki := range kh {
							for kj := range kw {
								ih, iw := oh*s-p+ki, ow*s-p+kj
								if ih < 0 || ih >= h || iw < 0 || iw >= wd {
									continue
								}
								f(oi, ((in*cin+c)*h+ih)*wd+iw, ((co*cin+c)*kh+ki)*kw+kj)
							}
						}
					}
				}
			}
		}
	}
}

// naiveConv is the textbook float64 convolution, the reference for Conv2d.
func naiveConv(x, w, b *tensor.Tensor, s, p int) (out []float64, ho, wo int) {
	h, wd, cout, kh, kw := x.Shape[2], x.Shape[3], w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo = (h+2*p-kh)/s+1, (wd+2*p-kw)/s+1
	out = make([]float64, x.Shape[0]*cout*ho*wo)
	if b != nil {
		for i := range out {
			out[i] = float64(b.Data[i/(ho*wo)%cout])
		}
	}
	convTaps(x, w, s, p, ho, wo, func(oi, xi, wi int) {
		out[oi] += float64(x.Data[xi]) * float64(w.Data[wi])
	})
	return out, ho, wo
}

// naiveConvGrad returns dx and dw of sum(conv(x, w) * g) in float64.
func naiveConvGrad(x, w, g *tensor.Tensor, s, p int) (dx, dw []float64) {
	dx, dw = make([]float64, len(x.Data)), make([]float64, len(w.Data))
	convTaps(x, w, s, p, g.Shape[2], g.Shape[3], func(oi, xi, wi int) {
		gv := float64(g.Data[oi])
		dx[xi] += gv * float64(w.Data[wi])
		dw[wi] += gv * float64(x.Data[xi])
	})
	return dx, dw
}

func maxRelErr(got []float32, want []float64) float64 {
	var e float64
	for i, v := range want {
		e = math.Max(e, math.Abs(float64(got[i])-v)/math.Max(1, math.Abs(v)))
	}
	return e
}

var convCases = []struct {
	n, cin, h, w, cout, k, s, p int
	bias                        bool
}{
	{1, 3, 7, 7, 4, 3, 1, 1, true},  // same-size 3x3
	{2, 3, 8, 6, 5, 3, 2, 1, true},  // strided, non-square, batch 2
	{1, 4, 5, 9, 3, 1, 1, 0, true},  // 1x1: the direct GEMM path
	{2, 2, 6, 5, 3, 3, 1, 0, false}, // no bias, no padding
	{1, 3, 9, 7, 2, 4, 2, 1, true},  // even kernel, stride 2
	{1, 2, 5, 5, 3, 1, 2, 0, false}, // strided 1x1 goes through im2col
	{1, 2, 3, 4, 2, 5, 1, 2, true},  // kernel wider than the image
	{2, 3, 6, 6, 4, 3, 3, 2, false}, // stride 3, padding 2
	{1, 2, 4, 5, 3, 1, 1, 1, true},  // padded 1x1: a zero border
	{1, 2, 7, 7, 2, 1, 3, 0, false}, // stride larger than the kernel
}

func TestConv2dMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range convCases {
		x, w := tensortest.Rand(r, c.n, c.cin, c.h, c.w), tensortest.Rand(r, c.cout, c.cin, c.k, c.k)
		var b *tensor.Tensor
		if c.bias {
			b = tensortest.Rand(r, c.cout)
		}
		got := tensor.Conv2d(x, w, b, c.s, c.p)
		want, ho, wo := naiveConv(x, w, b, c.s, c.p)
		if !tensor.SameShape(got.Shape, []int{c.n, c.cout, ho, wo}) {
			t.Fatalf("%+v: shape %v, want %v", c, got.Shape, []int{c.n, c.cout, ho, wo})
		}
		if e := maxRelErr(got.Data, want); e > 1e-5 {
			t.Errorf("%+v: max rel err %.3g", c, e)
		}
	}
}

func TestConv2dGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range convCases {
		t.Run(fmt.Sprintf("%dx%dx%dx%d_k%d_s%d_p%d", c.n, c.cin, c.h, c.w, c.k, c.s, c.p), func(t *testing.T) {
			x, w := tensortest.Rand(r, c.n, c.cin, c.h, c.w), tensortest.Rand(r, c.cout, c.cin, c.k, c.k)
			if !c.bias {
				tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
					return tensor.Conv2d(in[0], in[1], nil, c.s, c.p)
				}, 1e-2, 2e-3, x, w)
				return
			}
			b := tensortest.Rand(r, c.cout)
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
				return tensor.Conv2d(in[0], in[1], in[2], c.s, c.p)
			}, 1e-2, 2e-3, x, w, b)
		})
	}
}

// TestConv2dBands uses an image big enough to be processed in several
// im2col row bands, forward and backward, against the float64 reference.
func TestConv2dBands(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	defer parallel.SetThreads(parallel.SetThreads(1)) // backward bands of ~512 columns
	for _, s := range []int{1, 2} {
		x := tensortest.Rand(r, 2, 4, 100, 90).SetRequiresGrad(true) // backward: 20 bands at stride 1, 5 at stride 2; forward: 50 and 10
		w := tensortest.Rand(r, 4, 4, 3, 3).SetRequiresGrad(true)
		y := tensor.Conv2d(x, w, nil, s, 1) // [2, 4, Ho, Wo]
		want, _, _ := naiveConv(x, w, nil, s, 1)
		if e := maxRelErr(y.Data, want); e > 1e-5 {
			t.Errorf("stride %d forward: max rel err %.3g", s, e)
		}
		g := tensortest.Rand(r, y.Shape...)
		y.BackwardWith(g)
		dx, dw := naiveConvGrad(x, w, g, s, 1)
		if e := maxRelErr(x.Grad.Data, dx); e > 1e-5 {
			t.Errorf("stride %d dx: max rel err %.3g", s, e)
		}
		if e := maxRelErr(w.Grad.Data, dw); e > 1e-4 {
			t.Errorf("stride %d dw: max rel err %.3g", s, e)
		}
	}
}

// TestConv2dOnlyWeightGrad covers a first layer: the image needs no gradient.
func TestConv2dOnlyWeightGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x, w := tensortest.Rand(r, 1, 3, 6, 6), tensortest.Rand(r, 2, 3, 3, 3).SetRequiresGrad(true)
	tensor.Sum(tensor.Conv2d(x, w, nil, 1, 1)).Backward()
	if x.Grad != nil || w.Grad == nil {
		t.Fatalf("x.Grad %v, w.Grad %v: want only the weight gradient", x.Grad, w.Grad)
	}
	g := tensor.Full(1, 1, 2, 6, 6)
	_, dw := naiveConvGrad(x, w, g, 1, 1)
	if e := maxRelErr(w.Grad.Data, dw); e > 1e-5 {
		t.Errorf("dw: max rel err %.3g", e)
	}
}

func TestConv2dShapePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"channels": func() { tensor.Conv2d(tensor.New(1, 3, 4, 4), tensor.New(2, 4, 3, 3), nil, 1, 1) },
		"bias":     func() { tensor.Conv2d(tensor.New(1, 3, 4, 4), tensor.New(2, 3, 3, 3), tensor.New(3), 1, 1) },
		"rank":     func() { tensor.Conv2d(tensor.New(3, 4, 4), tensor.New(2, 3, 3, 3), nil, 1, 1) },
		"kernel":   func() { tensor.Conv2d(tensor.New(1, 3, 2, 2), tensor.New(2, 3, 5, 5), nil, 1, 1) },
		"stride":   func() { tensor.Conv2d(tensor.New(1, 3, 4, 4), tensor.New(2, 3, 3, 3), nil, 0, 1) },
	} {
		if !tensortest.Panics(f) {
			t.Errorf("%s: no panic", name)
		}
	}
}
