package sd3vae

// Whole-image GroupNorm in row bands, and the banded convolutions it is
// fused into.
//
// TSD-SR's tiled VAE must normalise with statistics of the whole image:
// per-tile statistics shift colours from tile to tile. Here every layer
// runs on the whole activation, so the statistics are whole-image by
// construction, while memory stays bounded by working in bands of rows:
// GroupStats sums a map in one pass, and each convolution that follows a
// GroupNorm(+SiLU) normalises its input band by band as it reads it, so
// the normalised map (and the 4x larger upsampled map in front of an
// upsampler's convolution) never exists in full.

import (
	"context"
	"fmt"
	"math"

	"tsdsr/internal/parallel"
	"tsdsr/nn"
	"tsdsr/tensor"
)

// grain is the number of elements below which a loop is not split.
const grain = 1 << 14

// GroupStats accumulates, for a GroupNorm over NCHW activations, the sum
// and the sum of squares of every (sample, group) in float64, over any
// number of row bands or tiles, so that each band can then be normalised
// with the statistics of the whole image.
type GroupStats struct {
	N, C, Groups int
	sum, sq      []float64 // [N*Groups]
	pixels       int64     // spatial positions accumulated per channel
}

// NewGroupStats returns empty statistics for activations of n samples and
// c channels in groups groups.
func NewGroupStats(n, c, groups int) *GroupStats {
	if n <= 0 || groups <= 0 || c%groups != 0 {
		panic(fmt.Sprintf("sd3vae.NewGroupStats: %d samples, %d channels, %d groups", n, c, groups))
	}
	return &GroupStats{N: n, C: c, Groups: groups, sum: make([]float64, n*groups), sq: make([]float64, n*groups)}
}

// check panics unless x is [N, C, H, W] and 0 <= y0 <= y1 <= H.
func (s *GroupStats) check(op string, x *tensor.Tensor, y0, y1 int) (h, w int) {
	if x.Dim() != 4 || x.Shape[0] != s.N || x.Shape[1] != s.C || y0 < 0 || y1 < y0 || y1 > x.Shape[2] {
		panic(fmt.Sprintf("sd3vae.GroupStats.%s: rows [%d, %d) of %v for statistics of [%d, %d, H, W]", op, y0, y1, x.Shape, s.N, s.C))
	}
	return x.Shape[2], x.Shape[3]
}

// Accumulate adds rows [y0, y1) of x [N, C, H, W] to the statistics. The
// rows of a band or tile are passed with their own tensor and 0, height.
// Channel planes are summed in parallel, each in a fixed order, so the
// result does not depend on the number of threads.
func (s *GroupStats) Accumulate(x *tensor.Tensor, y0, y1 int) {
	h, w := s.check("Accumulate", x, y0, y1)
	planes, m := s.N*s.C, (y1-y0)*w
	part := make([]float64, 2*planes) // per plane: sum, sum of squares
	parallel.For(planes, max(1, grain/max(1, m)), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			d := x.Data[p*h*w+y0*w : p*h*w+y1*w]
			// Four chains hide the latency of float64 adds.
			var a0, a1, a2, a3, q0, q1, q2, q3 float64
			i := 0
			for ; i+4 <= len(d); i += 4 {
				v0, v1, v2, v3 := float64(d[i]), float64(d[i+1]), float64(d[i+2]), float64(d[i+3])
				a0, a1, a2, a3 = a0+v0, a1+v1, a2+v2, a3+v3
				q0, q1, q2, q3 = q0+v0*v0, q1+v1*v1, q2+v2*v2, q3+v3*v3
			}
			for ; i < len(d); i++ {
				v := float64(d[i])
				a0, q0 = a0+v, q0+v*v
			}
			part[2*p], part[2*p+1] = (a0+a1)+(a2+a3), (q0+q1)+(q2+q3)
		}
	})
	cpg := s.C / s.Groups
	for p := range planes {
		g := p/s.C*s.Groups + p%s.C/cpg
		s.sum[g] += part[2*p]
		s.sq[g] += part[2*p+1]
	}
	s.pixels += int64(m)
}

// Affine returns the per-(sample, channel) map of the normalisation,
// GroupNorm(x)[n, c] = a[n*C+c] * x[n, c] + b[n*C+c], for the statistics
// accumulated so far, weight and bias [C] (nil: 1 and 0) and eps; the
// variance is the biased one, as torch.nn.GroupNorm's.
func (s *GroupStats) Affine(weight, bias *tensor.Tensor, eps float32) (a, b []float32) {
	if s.pixels == 0 {
		panic("sd3vae.GroupStats.Affine: no statistics accumulated")
	}
	cpg := s.C / s.Groups
	cnt := float64(s.pixels) * float64(cpg)
	a, b = make([]float32, s.N*s.C), make([]float32, s.N*s.C)
	for n := range s.N {
		for c := range s.C {
			g := n*s.Groups + c/cpg
			mean := s.sum[g] / cnt
			rstd := 1 / math.Sqrt(max(0, s.sq[g]/cnt-mean*mean)+float64(eps))
			sc, sh := rstd, -mean*rstd
			if weight != nil {
				sc *= float64(weight.Data[c])
				sh *= float64(weight.Data[c])
			}
			if bias != nil {
				sh += float64(bias.Data[c])
			}
			a[n*s.C+c], b[n*s.C+c] = float32(sc), float32(sh)
		}
	}
	return a, b
}

// Apply writes the normalised rows [y0, y1) of x into the same rows of dst
// (which may be x itself: in place), with weight, bias and eps as in
// Affine, followed by SiLU when silu is set (fused: one pass over memory).
func (s *GroupStats) Apply(dst, x *tensor.Tensor, y0, y1 int, weight, bias *tensor.Tensor, eps float32, silu bool) {
	h, w := s.check("Apply", x, y0, y1)
	if !tensor.SameShape(dst.Shape, x.Shape) {
		panic(fmt.Sprintf("sd3vae.GroupStats.Apply: dst %v for x %v", dst.Shape, x.Shape))
	}
	a, b := s.Affine(weight, bias, eps)
	m := (y1 - y0) * w
	parallel.For(s.N*s.C, max(1, grain/max(1, m)), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			off := p*h*w + y0*w
			affineSiLU(dst.Data[off:off+m], x.Data[off:off+m], a[p], b[p], silu)
		}
	})
}

// affineSiLU sets dst[i] = a*src[i] + b, then SiLU when silu is set; dst
// may be src.
func affineSiLU(dst, src []float32, a, b float32, silu bool) {
	dst = dst[:len(src)]
	if silu {
		for i, v := range src {
			y := v*a + b
			dst[i] = y * sigmoid(y)
		}
		return
	}
	for i, v := range src {
		dst[i] = v*a + b
	}
}

// stats returns the whole-image GroupNorm of x for the layer as a
// per-(sample, channel) affine map.
func stats(l *nn.GroupNorm, x *tensor.Tensor) (a, b []float32) {
	s := NewGroupStats(x.Shape[0], x.Shape[1], l.Groups)
	s.Accumulate(x, 0, x.Shape[2])
	return s.Affine(l.Weight, l.Bias, l.Eps)
}

// sigmoid is 1/(1+e^-x) without overflow for either sign (as tensor's).
func sigmoid(x float32) float32 {
	if x >= 0 {
		return 1 / (1 + tensor.Expf(-x))
	}
	e := tensor.Expf(x)
	return e / (1 + e)
}

// feed is a convolution's input computed on the fly from a stored
// activation x [N, C, H, W]: upsampled 2x (nearest) when up is set, then
// mapped by a per-(sample, channel) affine a*x+b when a is set, then
// passed through SiLU when silu is set.
type feed struct {
	x    *tensor.Tensor
	up   bool
	a, b []float32 // [N*C], nil: identity
	silu bool
}

// size is the channels, height and width of the fed input.
func (f *feed) size() (c, h, w int) {
	c, h, w = f.x.Shape[1], f.x.Shape[2], f.x.Shape[3]
	if f.up {
		h, w = 2*h, 2*w
	}
	return c, h, w
}

// fill writes rows [i0, i1) of sample n's input, rows outside [0, H) being
// zero padding, with pl zero columns on the left and pr on the right, into
// dst [C, i1-i0, pl+W+pr].
func (f *feed) fill(dst []float32, n, i0, i1, pl, pr int) {
	c, h, w := f.size()
	xh, xw := f.x.Shape[2], f.x.Shape[3]
	rows, wp := i1-i0, pl+w+pr
	parallel.For(c*rows, max(1, grain/wp), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			ch, i := t/rows, i0+t%rows
			d := dst[t*wp : (t+1)*wp]
			if i < 0 || i >= h {
				clear(d)
				continue
			}
			clear(d[:pl])
			clear(d[pl+w:])
			row, p := d[pl:pl+w], n*c+ch
			if f.up {
				src := f.x.Data[(p*xh+i/2)*xw : (p*xh+i/2+1)*xw]
				for j, v := range src {
					row[2*j], row[2*j+1] = v, v
				}
			} else {
				copy(row, f.x.Data[(p*xh+i)*xw:(p*xh+i+1)*xw])
			}
			switch {
			case f.a != nil:
				affineSiLU(row, row, f.a[p], f.b[p], f.silu)
			case f.silu:
				affineSiLU(row, row, 1, 0, true)
			}
		}
	})
}

// Band sizes: a band's input and output each hold at most about
// bandElems elements, and a band has at least 2 rows per thread so that
// its convolution has work for every thread. Tests set maxBandRows to
// force many bands on small images.
var (
	bandElems   = 1 << 23
	maxBandRows = 0 // 0: no cap
)

// convOp is one convolution layer with its zero padding, which may differ
// on each side (the downsamplers pad only bottom and right).
type convOp struct {
	l                      *nn.Conv2d
	stride, pt, pb, pl, pr int
}

// same is a stride-1 convolution padded to keep the size (k = 1 or 3).
func same(l *nn.Conv2d) convOp {
	p := l.Weight.Shape[2] / 2
	return convOp{l: l, stride: 1, pt: p, pb: p, pl: p, pr: p}
}

// convRun is a convOp bound to its input, with its weights resolved.
type convRun struct {
	op            convOp
	f             feed
	w, b          *tensor.Tensor
	cin, hin, win int
	cout, ho, wo  int
	k, wp, rows   int
	buf           []float32 // input band, reused
}

// bind resolves the layer's weights (an unmerged LoRA adapter folded in)
// and the output geometry for input f.
func (op convOp) bind(f feed) *convRun {
	c := &convRun{op: op, f: f}
	c.w, c.b = convWeights(op.l)
	c.cin, c.hin, c.win = f.size()
	if c.w.Shape[1] != c.cin {
		panic(fmt.Sprintf("sd3vae: convolution %v fed %d channels", c.w.Shape, c.cin))
	}
	c.cout, c.k = c.w.Shape[0], c.w.Shape[2]
	c.ho = (c.hin+op.pt+op.pb-c.k)/op.stride + 1
	c.wo = (c.win+op.pl+op.pr-c.k)/op.stride + 1
	c.wp = op.pl + c.win + op.pr
	perRow := max(c.cin*op.stride*c.wp, c.cout*c.wo) // input or output elements
	c.rows = max(bandElems/perRow, 2*parallel.Threads())
	if maxBandRows > 0 {
		c.rows = min(c.rows, maxBandRows)
	}
	c.rows = max(1, min(c.rows, c.ho))
	return c
}

// convWeights returns the layer's kernel and bias, detached so that no
// graph is recorded, with an unmerged LoRA adapter folded into the kernel
// (W + Scale*B*A: for inference the same as adding its branch).
func convWeights(l *nn.Conv2d) (w, b *tensor.Tensor) {
	w = l.Weight.Detach()
	if l.LoRA != nil && !l.LoRA.Merged() {
		w = l.LoRA.Delta()
		addTo(w.Data, l.Weight.Data)
	}
	if l.Bias != nil {
		b = l.Bias.Detach()
	}
	return w, b
}

// band returns output rows [r0, r1) of sample n, [1, Cout, r1-r0, Wo].
func (c *convRun) band(n, r0, r1 int) *tensor.Tensor {
	s := c.op.stride
	i0, i1 := r0*s-c.op.pt, (r1-1)*s-c.op.pt+c.k
	need := c.cin * (i1 - i0) * c.wp
	if len(c.buf) < need {
		c.buf = make([]float32, need)
	}
	c.f.fill(c.buf[:need], n, i0, i1, c.op.pl, c.op.pr)
	in := tensor.FromData(c.buf[:need], 1, c.cin, i1-i0, c.wp)
	return tensor.Conv2d(in, c.w, c.b, s, 0)
}

// run computes the convolution into dst [N, Cout, Ho, Wo] band by band,
// top to bottom, checking ctx before each band. post, when set, is applied
// to each band [Cout, rows, Wo] before it is stored (residual additions).
//
// Each band is stored one band late, after the next band's input was
// read, so dst may be the fed activation itself when the convolution has
// stride 1 and keeps channels: a band's input rows overlap the band above
// only in rows that band has not stored yet.
func (c *convRun) run(ctx context.Context, dst *tensor.Tensor, post func(n, r0, r1 int, band []float32)) error {
	n := c.f.x.Shape[0]
	if !tensor.SameShape(dst.Shape, []int{n, c.cout, c.ho, c.wo}) {
		panic(fmt.Sprintf("sd3vae: convolution output %v into %v", []int{n, c.cout, c.ho, c.wo}, dst.Shape))
	}
	var pending func()
	flush := func() {
		if pending != nil {
			pending()
			pending = nil
		}
	}
	for i := range n {
		for r0 := 0; r0 < c.ho; r0 += c.rows {
			if err := ctx.Err(); err != nil {
				return err
			}
			r1 := min(c.ho, r0+c.rows)
			out := c.band(i, r0, r1)
			flush()
			pending = func() {
				if post != nil {
					post(i, r0, r1, out.Data)
				}
				storeRows(dst, out.Data, i, r0, r1)
			}
		}
	}
	flush()
	return nil
}

// storeRows copies band [C, r1-r0, W] into rows [r0, r1) of sample n of
// dst [N, C, H, W].
func storeRows(dst *tensor.Tensor, band []float32, n, r0, r1 int) {
	c, h, w := dst.Shape[1], dst.Shape[2], dst.Shape[3]
	m := (r1 - r0) * w
	parallel.For(c, max(1, grain/m), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			copy(dst.Data[((n*c+ch)*h+r0)*w:], band[ch*m:(ch+1)*m])
		}
	})
}

// addRows adds rows [r0, r1) of sample n of x [N, C, H, W] to band
// [C, r1-r0, W].
func addRows(band []float32, x *tensor.Tensor, n, r0, r1 int) {
	c, h, w := x.Shape[1], x.Shape[2], x.Shape[3]
	m := (r1 - r0) * w
	parallel.For(c, max(1, grain/m), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			addTo(band[ch*m:(ch+1)*m], x.Data[((n*c+ch)*h+r0)*w:])
		}
	})
}

// addTo sets dst[i] += src[i].
func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}
