package tensor_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
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

func TestReshape(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	x := tensortest.Rand(r, 2, 3, 4)
	y := tensor.Reshape(x, 4, -1)
	if !slices.Equal(y.Shape, []int{4, 6}) || !slices.Equal(y.Data, x.Data) {
		t.Fatalf("Reshape(4, -1) gave %v", y.Shape)
	}
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
		// Reshape feeding a non-elementwise op checks the gradient is
		// reshaped back, not just passed through.
		return tensor.Softmax(tensor.Reshape(in[0], 3, -1))
	}, 1e-2, 1e-2, tensortest.Rand(r, 2, 3, 2))
	for _, bad := range [][]int{{5, -1}, {-1, -1}, {7}, {2, -2, 6}} {
		if !tensortest.Panics(func() { tensor.Reshape(x, bad...) }) {
			t.Errorf("Reshape(%v) of %v did not panic", bad, x.Shape)
		}
	}
}

// naivePermute is the obvious coordinate-by-coordinate reference.
func naivePermute(x *tensor.Tensor, perm []int) *tensor.Tensor {
	shape := make([]int, len(perm))
	for i, p := range perm {
		shape[i] = x.Shape[p]
	}
	out := tensor.New(shape...)
	coord := make([]int, len(shape))
	for k := range out.Data {
		rem := k
		for d := len(shape) - 1; d >= 0; d-- {
			coord[d] = rem % shape[d]
			rem /= shape[d]
		}
		src := 0
		for d := range x.Shape {
			// input dim d is output dim i with perm[i] == d
			src = src*x.Shape[d] + coord[slices.Index(perm, d)]
		}
		out.Data[k] = x.Data[src]
	}
	return out
}

func TestPermuteMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	cases := []struct {
		shape, perm []int
	}{
		{[]int{2, 37, 4, 16}, []int{0, 2, 1, 3}},     // attention [N, L, H, D] -> [N, H, L, D]
		{[]int{2, 4, 37, 16}, []int{0, 2, 1, 3}},     // and back
		{[]int{2, 5, 33, 35}, []int{0, 2, 3, 1}},     // NCHW -> NHWC (tiled path)
		{[]int{2, 33, 35, 5}, []int{0, 3, 1, 2}},     // NHWC -> NCHW
		{[]int{3, 1, 4, 1, 5}, []int{4, 3, 2, 1, 0}}, // unit dims, full reversal
		{[]int{70, 65}, []int{1, 0}},
		{[]int{2, 3, 4, 5, 6}, []int{1, 0, 4, 2, 3}},
		{[]int{3, 4}, []int{0, 1}},
		{[]int{2, 0, 3}, []int{2, 1, 0}},
	}
	for _, c := range cases {
		x := tensortest.Rand(r, c.shape...)
		got, want := tensor.Permute(x, c.perm...), naivePermute(x, c.perm)
		if !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.Data, want.Data) {
			t.Errorf("Permute(%v, %v) differs from the reference", c.shape, c.perm)
		}
	}
	// A large attention-shaped transpose runs the parallel path.
	x := tensortest.Rand(r, 1, 300, 4, 64)
	if got, want := tensor.Permute(x, 0, 2, 1, 3), naivePermute(x, []int{0, 2, 1, 3}); !slices.Equal(got.Data, want.Data) {
		t.Error("large attention permute differs from the reference")
	}
	x = tensortest.Rand(r, 1, 16, 130, 129)
	if got, want := tensor.Permute(x, 0, 2, 3, 1), naivePermute(x, []int{0, 2, 3, 1}); !slices.Equal(got.Data, want.Data) {
		t.Error("large NCHW -> NHWC permute differs from the reference")
	}
}

func TestPermuteTransposeGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Permute(in[0], 2, 0, 3, 1) }, 1e-2, 1e-3,
		tensortest.Rand(r, 2, 3, 4, 5))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Transpose(in[0], -1, 1) }, 1e-2, 1e-3,
		tensortest.Rand(r, 2, 3, 4))
	x := tensortest.Rand(r, 2, 3, 4)
	if got, want := tensor.Transpose(x, 0, 2), naivePermute(x, []int{2, 1, 0}); !slices.Equal(got.Data, want.Data) {
		t.Error("Transpose(0, 2) differs from Permute(2, 1, 0)")
	}
}

func TestSliceConcatSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	x := tensortest.Rand(r, 2, 5, 3)
	s := tensor.Slice(x, 1, 1, 4)
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 3; k++ {
				if s.Data[(i*3+j)*3+k] != x.Data[(i*5+j+1)*3+k] {
					t.Fatalf("Slice value at %d %d %d", i, j, k)
				}
			}
		}
	}
	parts := tensor.Split(x, -2, 2, 0, 3)
	if !slices.Equal(parts[1].Shape, []int{2, 0, 3}) {
		t.Fatalf("empty split part has shape %v", parts[1].Shape)
	}
	back := tensor.Concat(1, parts...)
	if !slices.Equal(back.Shape, x.Shape) || !slices.Equal(back.Data, x.Data) {
		t.Fatal("Concat(Split(x)) != x")
	}
	for axis := 0; axis < 3; axis++ {
		t.Run(fmt.Sprint("axis", axis), func(t *testing.T) {
			a, b := tensortest.Rand(r, 2, 3, 4), tensortest.Rand(r, 2, 3, 4)
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
				c := tensor.Concat(axis, in[0], in[1])
				p := tensor.Split(c, axis, 1, c.Shape[axis]-2, 1)
				// Pieces used unequally (and one twice) so each region's
				// gradient differs.
				return tensor.Concat(axis, tensor.Mul(p[0], p[0]), tensor.Scale(p[1], 3), p[2], tensor.Slice(in[0], axis, 0, 1))
			}, 1e-2, 1e-2, a, b)
		})
	}
}

func TestPad2dValues(t *testing.T) {
	x := tensor.FromData([]float32{1, 2, 3, 4, 5, 6}, 1, 1, 2, 3)
	cases := []struct {
		mode                     tensor.PadMode
		top, bottom, left, right int
		shape                    []int
		want                     []float32
	}{
		{tensor.PadZero, 1, 0, 0, 1, []int{1, 1, 3, 4}, []float32{0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0}},
		// torch.nn.functional.pad(x, (2, 2, 1, 0), mode="reflect")
		{tensor.PadReflect, 1, 0, 2, 2, []int{1, 1, 3, 7}, []float32{
			6, 5, 4, 5, 6, 5, 4,
			3, 2, 1, 2, 3, 2, 1,
			6, 5, 4, 5, 6, 5, 4}},
		{tensor.PadReplicate, 0, 2, 1, 0, []int{1, 1, 4, 4}, []float32{
			1, 1, 2, 3,
			4, 4, 5, 6,
			4, 4, 5, 6,
			4, 4, 5, 6}},
		// Negative pads crop.
		{tensor.PadZero, 0, -1, -1, 1, []int{1, 1, 1, 3}, []float32{2, 3, 0}},
	}
	for _, c := range cases {
		y := tensor.Pad2d(x, c.top, c.bottom, c.left, c.right, c.mode)
		if !slices.Equal(y.Shape, c.shape) || !slices.Equal(y.Data, c.want) {
			t.Errorf("Pad2d(%d %d %d %d, %v) = %v %v, want %v %v", c.top, c.bottom, c.left, c.right, c.mode, y.Shape, y.Data, c.shape, c.want)
		}
	}
	if !tensortest.Panics(func() { tensor.Pad2d(x, 2, 0, 0, 0, tensor.PadReflect) }) {
		t.Error("reflect pad as large as the input did not panic")
	}
}

func TestPad2dGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, mode := range []tensor.PadMode{tensor.PadZero, tensor.PadReflect, tensor.PadReplicate} {
		t.Run(mode.String(), func(t *testing.T) {
			tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
				return tensor.Pad2d(in[0], 2, 1, -1, 3, mode)
			}, 1e-2, 1e-3, tensortest.Rand(r, 2, 3, 4, 5))
		})
	}
}

// TestReuseAcrossOps uses one input many times, through shared-data
// reshapes, a permute, a matmul and a norm, so the gradient must be the sum
// of every path (Reshape hands its gradient buffer over without a copy).
func TestReuseAcrossOps(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
		x := in[0]                                                         // [2, 3, 4]
		a := tensor.Reshape(x, 6, 4)                                       // shares x's data
		b := tensor.Reshape(x, 2, 12)                                      // and again
		att := tensor.Softmax(tensor.MatMul(x, tensor.Transpose(x, 1, 2))) // [2, 3, 3]
		y := tensor.MatMul(att, tensor.LayerNorm(x, nil, nil, 1e-5))       // [2, 3, 4]
		return tensor.Add(tensor.Add(tensor.Reshape(y, 6, 4), a), tensor.Reshape(tensor.Mul(b, b), 6, 4))
	}, 1e-2, 1e-2, tensortest.Rand(r, 2, 3, 4))
}
