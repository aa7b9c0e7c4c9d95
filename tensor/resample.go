package tensor

import (
	"fmt"

	"tsdsr/internal/parallel"
)

// This file holds the pure data movements between image and token layouts:
// nearest upsampling, pixel (un)shuffle and the patch (un)embedding of the
// diffusion transformer. Each backward is the adjoint movement.

// Upsample2x is nearest-neighbour upsampling by 2 of x [N, C, H, W] to
// [N, C, 2H, 2W] (torch.nn.Upsample(scale_factor=2, mode="nearest")).
// Its gradient sums each 2x2 output block.
func Upsample2x(x *Tensor) *Tensor {
	if x.Dim() != 4 {
		panic(fmt.Sprintf("tensor.Upsample2x: x %v, want [N, C, H, W]", x.Shape))
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	out := New(n, c, 2*h, 2*w) // [N, C, 2H, 2W]
	planes(n*c, h*w, func(p int) {
		src, dst := x.Data[p*h*w:(p+1)*h*w], out.Data[p*4*h*w:(p+1)*4*h*w]
		for i := range h {
			row := dst[2*i*2*w : (2*i+1)*2*w]
			for j, v := range src[i*w : (i+1)*w] {
				row[2*j], row[2*j+1] = v, v
			}
			copy(dst[(2*i+1)*2*w:(2*i+2)*2*w], row)
		}
	})
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data)) // [N, C, H, W]
		planes(n*c, h*w, func(p int) {
			src, dst := g.Data[p*4*h*w:(p+1)*4*h*w], gx[p*h*w:(p+1)*h*w]
			for i := range h {
				r0, r1 := src[2*i*2*w:(2*i+1)*2*w], src[(2*i+1)*2*w:(2*i+2)*2*w]
				d := dst[i*w : (i+1)*w]
				for j := range d {
					d[j] = r0[2*j] + r0[2*j+1] + r1[2*j] + r1[2*j+1]
				}
			}
		})
		x.accumulateOwned(gx)
	}, x)
}

// PixelShuffle rearranges x [N, C*r*r, H, W] to [N, C, H*r, W*r]
// (torch.nn.functional.pixel_shuffle): out[n, c, h*r+i, w*r+j] =
// x[n, c*r*r + i*r + j, h, w].
func PixelShuffle(x *Tensor, r int) *Tensor {
	if x.Dim() != 4 || r < 1 || x.Shape[1]%(r*r) != 0 {
		panic(fmt.Sprintf("tensor.PixelShuffle: x %v, factor %d: want [N, C*r*r, H, W]", x.Shape, r))
	}
	n, c, h, w := x.Shape[0], x.Shape[1]/(r*r), x.Shape[2], x.Shape[3]
	out := New(n, c, h*r, w*r) // [N, C, H*r, W*r]
	shuffle(x.Data, out.Data, n*c, h, w, r, true)
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data)) // [N, C*r*r, H, W]
		shuffle(gx, g.Data, n*c, h, w, r, false)
		x.accumulateOwned(gx)
	}, x)
}

// PixelUnshuffle is the inverse of PixelShuffle: x [N, C, H, W] with H and W
// divisible by r becomes [N, C*r*r, H/r, W/r].
func PixelUnshuffle(x *Tensor, r int) *Tensor {
	if x.Dim() != 4 || r < 1 || x.Shape[2]%r != 0 || x.Shape[3]%r != 0 {
		panic(fmt.Sprintf("tensor.PixelUnshuffle: x %v, factor %d: want H and W divisible by r", x.Shape, r))
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2]/r, x.Shape[3]/r
	out := New(n, c*r*r, h, w) // [N, C*r*r, H/r, W/r]
	shuffle(out.Data, x.Data, n*c, h, w, r, false)
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data)) // [N, C, H, W]
		shuffle(g.Data, gx, n*c, h, w, r, true)
		x.accumulateOwned(gx)
	}, x)
}

// shuffle moves data between the channel-blocked layout lo [P, r*r, h, w]
// and the spatial layout hi [P, h*r, w*r] (P = N*C): toHi copies lo into hi,
// otherwise hi into lo.
func shuffle(lo, hi []float32, p, h, w, r int, toHi bool) {
	hw := h * w
	planes(p, hw*r*r, func(q int) {
		l, s := lo[q*hw*r*r:(q+1)*hw*r*r], hi[q*hw*r*r:(q+1)*hw*r*r]
		for i := range r {
			for j := range r {
				src := l[(i*r+j)*hw : (i*r+j+1)*hw] // [h, w]
				for y := range h {
					row := s[(y*r+i)*w*r+j:]
					if toHi {
						for x, v := range src[y*w : (y+1)*w] {
							row[x*r] = v
						}
					} else {
						d := src[y*w : (y+1)*w]
						for x := range d {
							d[x] = row[x*r]
						}
					}
				}
			}
		}
	})
}

// Patchify cuts x [N, C, H, W] into non-overlapping p x p patches and returns
// tokens [N, (H/p)*(W/p), C*p*p], tokens in row-major (h, w) order and the
// feature index ordered (c, i, j). So Linear(Patchify(x, p), W.Reshape(hidden,
// C*p*p), b) equals Conv2d(x, W, b, p, 0) flattened to tokens: SD3's
// pos_embed.proj convolution runs as one matrix product.
func Patchify(x *Tensor, p int) *Tensor {
	if x.Dim() != 4 || p < 1 || x.Shape[2]%p != 0 || x.Shape[3]%p != 0 {
		panic(fmt.Sprintf("tensor.Patchify: x %v, patch %d: want H and W divisible by p", x.Shape, p))
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2]/p, x.Shape[3]/p
	out := New(n, h*w, c*p*p) // [N, h*w, C*p*p]
	patches(x.Data, out.Data, n, c, h, w, p, false, true)
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data)) // [N, C, H, W]
		patches(gx, g.Data, n, c, h, w, p, false, false)
		x.accumulateOwned(gx)
	}, x)
}

// Unpatchify turns tokens x [N, h*w, p*p*c] back into an image
// [N, c, h*p, w*p], reading the feature index ordered (i, j, c) as diffusers'
// SD3Transformer2DModel does: reshape(N, h, w, p, p, c), then
// einsum("nhwpqc->nchpwq").
func Unpatchify(x *Tensor, p, c, h, w int) *Tensor {
	if x.Dim() != 3 || x.Shape[1] != h*w || x.Shape[2] != p*p*c {
		panic(fmt.Sprintf("tensor.Unpatchify: x %v, want [N, %d, %d] (h %d, w %d, p %d, c %d)", x.Shape, h*w, p*p*c, h, w, p, c))
	}
	n := x.Shape[0]
	out := New(n, c, h*p, w*p) // [N, c, h*p, w*p]
	patches(out.Data, x.Data, n, c, h, w, p, true, false)
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data)) // [N, h*w, p*p*c]
		patches(g.Data, gx, n, c, h, w, p, true, true)
		x.accumulateOwned(gx)
	}, x)
}

// patches moves data between an image img [N, C, h*p, w*p] and tokens tok
// [N, h*w, C*p*p] whose feature index is (c, i, j), or (i, j, c) when
// channelsLast. toTokens copies img into tok, otherwise tok into img.
func patches(img, tok []float32, n, c, h, w, p int, channelsLast, toTokens bool) {
	W := w * p
	feat := c * p * p
	planes(n*h, w*feat, func(q int) {
		b, y := q/h, q%h // one row of patches
		for ch := range c {
			plane := img[(b*c+ch)*h*p*W:]
			for i := range p {
				row := plane[(y*p+i)*W : (y*p+i+1)*W]
				for j := range p {
					f := (ch*p+i)*p + j
					if channelsLast {
						f = (i*p+j)*c + ch
					}
					t := tok[(b*h*w+y*w)*feat+f:]
					if toTokens {
						for x := range w {
							t[x*feat] = row[x*p+j]
						}
					} else {
						for x := range w {
							row[x*p+j] = t[x*feat]
						}
					}
				}
			}
		}
	})
}

// planes runs f(i) for i in [0, n) on the worker pool; each item moves about
// size elements, so small tensors stay on the calling goroutine.
func planes(n, size int, f func(i int)) {
	parallel.For(n, max(1, 32768/max(1, size)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			f(i)
		}
	})
}
