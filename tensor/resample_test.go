package tensor_test

import (
	"math/rand/v2"
	"testing"

	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

// checkGather fails when out[i] != in[src(i)] for some flat output index i.
func checkGather(t *testing.T, name string, in, out *tensor.Tensor, src func(i int) int) {
	t.Helper()
	for i, v := range out.Data {
		if want := in.Data[src(i)]; v != want {
			t.Fatalf("%s: element %d is %g, want %g", name, i, v, want)
		}
	}
}

// unflatten splits a flat row-major index into coordinates of shape.
func unflatten(i int, shape ...int) []int {
	c := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		c[d] = i % shape[d]
		i /= shape[d]
	}
	return c
}

func TestUpsample2x(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	x := tensortest.Rand(r, 2, 3, 4, 5)
	y := tensor.Upsample2x(x) // [2, 3, 8, 10]
	if !tensor.SameShape(y.Shape, []int{2, 3, 8, 10}) {
		t.Fatalf("shape %v", y.Shape)
	}
	checkGather(t, "Upsample2x", x, y, func(i int) int {
		c := unflatten(i, 2, 3, 8, 10)
		return ((c[0]*3+c[1])*4+c[2]/2)*5 + c[3]/2
	})
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Upsample2x(in[0]) }, 1e-2, 1e-3, x)
}

func TestPixelShuffle(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	const n, c, h, w, f = 2, 3, 4, 5, 2
	x := tensortest.Rand(r, n, c*f*f, h, w)
	y := tensor.PixelShuffle(x, f) // [2, 3, 8, 10]
	if !tensor.SameShape(y.Shape, []int{n, c, h * f, w * f}) {
		t.Fatalf("shape %v", y.Shape)
	}
	checkGather(t, "PixelShuffle", x, y, func(i int) int {
		o := unflatten(i, n, c, h*f, w*f)
		ch := o[1]*f*f + (o[2]%f)*f + o[3]%f
		return ((o[0]*c*f*f+ch)*h+o[2]/f)*w + o[3]/f
	})
	back := tensor.PixelUnshuffle(y, f) // [2, 12, 4, 5]
	checkGather(t, "PixelUnshuffle(PixelShuffle)", x, back, func(i int) int { return i })
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.PixelShuffle(in[0], 3) }, 1e-2, 1e-3,
		tensortest.Rand(r, 1, 18, 2, 3))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.PixelUnshuffle(in[0], 2) }, 1e-2, 1e-3,
		tensortest.Rand(r, 2, 2, 4, 6))
}

func TestPatchify(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	const n, c, h, w, p = 2, 3, 3, 4, 2 // h, w count patches
	x := tensortest.Rand(r, n, c, h*p, w*p)
	tok := tensor.Patchify(x, p) // [2, 12, 12]
	if !tensor.SameShape(tok.Shape, []int{n, h * w, c * p * p}) {
		t.Fatalf("shape %v", tok.Shape)
	}
	checkGather(t, "Patchify", x, tok, func(i int) int {
		o := unflatten(i, n, h, w, c, p, p) // token (y, x), feature (c, i, j)
		return ((o[0]*c+o[3])*h*p+o[1]*p+o[4])*w*p + o[2]*p + o[5]
	})
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Patchify(in[0], p) }, 1e-2, 1e-3, x)
}

// TestPatchifyLinearIsConv checks the identity SD3's patch embedding relies
// on: a stride-p p x p convolution is a linear layer over Patchify tokens.
func TestPatchifyLinearIsConv(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	const n, c, hidden, p = 2, 4, 5, 2
	x := tensortest.Rand(r, n, c, 6, 8)
	wt, b := tensortest.Rand(r, hidden, c, p, p), tensortest.Rand(r, hidden)
	conv := tensor.Conv2d(x, wt, b, p, 0) // [N, hidden, 3, 4]
	tok := tensor.Patchify(x, p)          // [N, 12, c*p*p]
	ntok, feat := tok.Shape[1], tok.Shape[2]
	for bi := range n {
		for ti := range ntok {
			for o := range hidden {
				want := float64(b.Data[o]) // Linear: tok · W[o, :] + b[o]
				for f := range feat {
					want += float64(tok.Data[(bi*ntok+ti)*feat+f]) * float64(wt.Data[o*feat+f])
				}
				got := float64(conv.Data[(bi*hidden+o)*ntok+ti])
				if d := got - want; d > 1e-5 || d < -1e-5 {
					t.Fatalf("batch %d token %d channel %d: conv %g, linear over patches %g", bi, ti, o, got, want)
				}
			}
		}
	}
}

func TestUnpatchify(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const n, c, h, w, p = 2, 3, 2, 3, 2
	x := tensortest.Rand(r, n, h*w, p*p*c)
	img := tensor.Unpatchify(x, p, c, h, w) // [2, 3, 4, 6]
	if !tensor.SameShape(img.Shape, []int{n, c, h * p, w * p}) {
		t.Fatalf("shape %v", img.Shape)
	}
	// diffusers: x.reshape(n, h, w, p, p, c); einsum("nhwpqc->nchpwq").
	checkGather(t, "Unpatchify", x, img, func(i int) int {
		o := unflatten(i, n, c, h, p, w, p) // out (n, c, h, p, w, q)
		return ((((o[0]*h+o[2])*w+o[4])*p+o[3])*p+o[5])*c + o[1]
	})
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Unpatchify(in[0], p, c, h, w) }, 1e-2, 1e-3, x)
}

func TestResampleShapePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"upsample rank":    func() { tensor.Upsample2x(tensor.New(3, 4, 4)) },
		"shuffle channels": func() { tensor.PixelShuffle(tensor.New(1, 6, 2, 2), 2) },
		"unshuffle size":   func() { tensor.PixelUnshuffle(tensor.New(1, 1, 3, 4), 2) },
		"patchify size":    func() { tensor.Patchify(tensor.New(1, 1, 4, 5), 2) },
		"unpatchify":       func() { tensor.Unpatchify(tensor.New(1, 6, 12), 2, 3, 2, 2) },
	} {
		if !tensortest.Panics(f) {
			t.Errorf("%s: no panic", name)
		}
	}
}
