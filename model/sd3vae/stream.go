package sd3vae

// Streaming: activations too large to keep whole are never stored. A
// stream computes one sample's map band of rows by band of rows, top to
// bottom, asking its input stream for the rows it needs (with the
// convolution's halo) and caching only the rows its consumers may still
// ask for. A GroupNorm needs its input's whole-image statistics before
// it can normalise a single row, so building a stream that normalises
// runs a statistics pass first: the input stream is computed top to
// bottom once, its sums accumulated and the rows thrown away; the
// normalising pass then recomputes them. The statistics are exact (the
// same float64 sums as the stored path, in a different order), so the
// result equals the stored path's up to float32 rounding, at the price of
// recomputing the streamed layers once per GroupNorm that follows them.
//
// A stage runs streamed when its input or output map would hold more than
// streamAbove bytes; a streamed map that fits is stored again, so the
// recomputation restarts from there.

import (
	"context"
	"fmt"
	"sync/atomic"

	"tsdsr/nn"
	"tsdsr/tensor"
)

// streamAbove is the size in bytes of one activation map (one sample)
// above which a stage streams instead of storing its output. SD3 stores
// everything up to a 1024x1024 image (its largest map there, 256
// channels at full size in the decoder's last level, is 1.07 GB) and
// streams the full-size levels of larger images, so that a 4096x4096
// image stores no map above 1.25 GB. Tests lower it.
var streamAbove int64 = 1280 << 20

// statsPasses counts statistics passes over streams (for tests).
var statsPasses atomic.Int64

// stream is one sample's activation [C, H, W], computed in row bands.
type stream struct {
	c, h, w int
	// fill computes rows [r0, r1) into dst [C, r1-r0, W].
	fill func(ctx context.Context, r0, r1 int, dst []float32) error
	// cache holds rows [lo, hi) as [C, hi-lo, W]. Requests only move
	// down, so rows above the latest request are dropped.
	cache  []float32
	lo, hi int
}

// mapBytes is the float32 size of a c x h x w map.
func mapBytes(c, h, w int) int64 { return 4 * int64(c) * int64(h) * int64(w) }

// storedStream streams sample n of a stored activation.
func storedStream(x *tensor.Tensor, n int) *stream {
	c, h, w := x.Shape[1], x.Shape[2], x.Shape[3]
	return &stream{c: c, h: h, w: w, fill: func(_ context.Context, r0, r1 int, dst []float32) error {
		m := (r1 - r0) * w
		for ch := range c {
			copy(dst[ch*m:(ch+1)*m], x.Data[((n*c+ch)*h+r0)*w:])
		}
		return nil
	}}
}

// get returns rows [r0, r1) (within [0, H)) as [C, r1-r0, W], computing
// only the rows not cached. The result must not be modified.
func (s *stream) get(ctx context.Context, r0, r1 int) ([]float32, error) {
	if r0 < 0 || r1 > s.h || r0 >= r1 {
		panic(fmt.Sprintf("sd3vae: stream rows [%d, %d) of %d", r0, r1, s.h))
	}
	if r0 < s.lo || r0 > s.hi { // not contiguous with the cache: start afresh
		s.cache, s.lo, s.hi = nil, r0, r0
	}
	hi := max(r1, s.hi)
	n, old := hi-r0, s.hi-s.lo
	buf := make([]float32, s.c*n*s.w)
	kept := s.hi - r0 // cached rows from r0 on
	for ch := range s.c {
		copy(buf[ch*n*s.w:ch*n*s.w+kept*s.w], s.cache[(ch*old+r0-s.lo)*s.w:])
	}
	if m := hi - s.hi; m > 0 {
		tmp := make([]float32, s.c*m*s.w)
		if err := s.fill(ctx, s.hi, hi, tmp); err != nil {
			return nil, err
		}
		for ch := range s.c {
			copy(buf[(ch*n+kept)*s.w:(ch*n+n)*s.w], tmp[ch*m*s.w:])
		}
	}
	s.cache, s.lo, s.hi = buf, r0, hi
	if hi == r1 {
		return buf, nil
	}
	k := r1 - r0
	out := make([]float32, s.c*k*s.w)
	for ch := range s.c {
		copy(out[ch*k*s.w:(ch+1)*k*s.w], buf[ch*n*s.w:])
	}
	return out, nil
}

// bandRows is the number of rows a pass over s asks for at a time.
func (s *stream) bandRows() int {
	return max(1, min(s.h, bandElems/max(1, s.c*s.w)))
}

// each passes every band of s, top to bottom, to f.
func (s *stream) each(ctx context.Context, f func(r0, r1 int, band []float32)) error {
	step := s.bandRows()
	for r0 := 0; r0 < s.h; r0 += step {
		if err := ctx.Err(); err != nil {
			return err
		}
		r1 := min(s.h, r0+step)
		band, err := s.get(ctx, r0, r1)
		if err != nil {
			return err
		}
		f(r0, r1, band)
	}
	return nil
}

// statsOf runs a statistics pass over s for a GroupNorm with groups
// groups and returns the per-channel affine map of the normalisation.
func (s *stream) statsOf(ctx context.Context, groups int, weight, bias *tensor.Tensor, eps float32) (a, b []float32, err error) {
	statsPasses.Add(1)
	st := NewGroupStats(1, s.c, groups)
	err = s.each(ctx, func(r0, r1 int, band []float32) {
		st.Accumulate(tensor.FromData(band, 1, s.c, r1-r0, s.w), 0, r1-r0)
	})
	if err != nil {
		return nil, nil, err
	}
	a, b = st.Affine(weight, bias, eps)
	return a, b, nil
}

// materialise computes all of s into a stored [1, C, H, W] activation.
func (s *stream) materialise(ctx context.Context) (*tensor.Tensor, error) {
	out := tensor.New(1, s.c, s.h, s.w)
	err := s.each(ctx, func(r0, r1 int, band []float32) {
		storeRows(out, band, 0, r0, r1)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// convStream is op applied to in's map, upsampled 2x (nearest) first when
// up is set, then mapped by the per-channel affine a*x+b when a is set,
// then through SiLU when silu is set (f's fields, with f.x unused).
func convStream(op convOp, in *stream, f feed) *stream {
	w, bias := convWeights(op.l)
	cin, hin, win := in.c, in.h, in.w
	if f.up {
		hin, win = 2*hin, 2*win
	}
	if w.Shape[1] != cin {
		panic(fmt.Sprintf("sd3vae: convolution %v streamed %d channels", w.Shape, cin))
	}
	k, s := w.Shape[2], op.stride
	out := &stream{c: w.Shape[0], h: (hin+op.pt+op.pb-k)/s + 1, w: (win+op.pl+op.pr-k)/s + 1}
	wp := op.pl + win + op.pr
	out.fill = func(ctx context.Context, r0, r1 int, dst []float32) error {
		i0, i1 := r0*s-op.pt, (r1-1)*s-op.pt+k // fed rows, padding included
		j0, j1 := max(i0, 0), min(i1, hin)     // fed rows inside the map
		var src []float32                      // input rows [s0, s0+sn)
		s0, sn := 0, 0
		if j0 < j1 {
			s1 := j1
			s0 = j0
			if f.up {
				s0, s1 = j0/2, (j1-1)/2+1
			}
			var err error
			if src, err = in.get(ctx, s0, s1); err != nil {
				return err
			}
			sn = s1 - s0
		}
		rows := i1 - i0
		band := make([]float32, cin*rows*wp)
		for ch := range cin {
			for r := range rows {
				i := i0 + r
				if i < j0 || i >= j1 {
					continue // zero padding
				}
				d := band[(ch*rows+r)*wp : (ch*rows+r+1)*wp]
				row := d[op.pl : op.pl+win]
				if f.up {
					sr := src[(ch*sn+i/2-s0)*in.w:][:in.w]
					for j, v := range sr {
						row[2*j], row[2*j+1] = v, v
					}
				} else {
					copy(row, src[(ch*sn+i-s0)*in.w:][:in.w])
				}
				switch {
				case f.a != nil:
					affineSiLU(row, row, f.a[ch], f.b[ch], f.silu)
				case f.silu:
					affineSiLU(row, row, 1, 0, true)
				}
			}
		}
		y := tensor.Conv2d(tensor.FromData(band, 1, cin, rows, wp), w, bias, s, 0)
		copy(dst, y.Data)
		return nil
	}
	return out
}

// stream builds the resnet over in, running the statistics passes of its
// two GroupNorms.
func (r *resnet) stream(ctx context.Context, in *stream) (*stream, error) {
	a, b, err := in.statsOf(ctx, r.norm1.Groups, r.norm1.Weight, r.norm1.Bias, r.norm1.Eps)
	if err != nil {
		return nil, err
	}
	h := convStream(same(r.conv1), in, feed{a: a, b: b, silu: true})
	if a, b, err = h.statsOf(ctx, r.norm2.Groups, r.norm2.Weight, r.norm2.Bias, r.norm2.Eps); err != nil {
		return nil, err
	}
	c2 := convStream(same(r.conv2), h, feed{a: a, b: b, silu: true})
	var sc *stream
	if r.shortcut != nil {
		sc = convStream(same(r.shortcut), in, feed{})
	}
	out := &stream{c: c2.c, h: c2.h, w: c2.w}
	out.fill = func(ctx context.Context, r0, r1 int, dst []float32) error {
		y, err := c2.get(ctx, r0, r1)
		if err != nil {
			return err
		}
		res := in
		if sc != nil {
			res = sc
		}
		x, err := res.get(ctx, r0, r1)
		if err != nil {
			return err
		}
		for i, v := range y {
			dst[i] = v + x[i]
		}
		return nil
	}
	return out, nil
}

// act is an activation on its way through a coder: stored whole (t,
// [N, C, H, W]) or streamed (s, one sample).
type act struct {
	t *tensor.Tensor
	s *stream
}

func (a act) dims() (c, h, w int) {
	if a.s != nil {
		return a.s.c, a.s.h, a.s.w
	}
	return a.t.Shape[1], a.t.Shape[2], a.t.Shape[3]
}

// big reports whether a's map is too large to store.
func (a act) big() bool { return mapBytes(a.dims()) > streamAbove }

// stored returns a as a stored activation, computing a stream.
func (a act) stored(ctx context.Context) (*tensor.Tensor, error) {
	if a.t != nil {
		return a.t, nil
	}
	return a.s.materialise(ctx)
}

// streamed returns a as a stream (a stored a holds one sample).
func (a act) streamed() *stream {
	if a.s != nil {
		return a.s
	}
	return storedStream(a.t, 0)
}

// settle stores a streamed activation that is small enough, so that
// later statistics passes restart from it instead of recomputing it.
func settle(ctx context.Context, a act) (act, error) {
	if a.s == nil || a.big() {
		return a, nil
	}
	t, err := a.s.materialise(ctx)
	return act{t: t}, err
}

// convAct runs op on cur fed as f (f.x is set here), streamed when its
// input or output map is too large to store.
func convAct(ctx context.Context, op convOp, cur act, f feed) (act, error) {
	_, h, w := cur.dims()
	if f.up {
		h, w = 2*h, 2*w
	}
	k := op.l.Weight.Shape[2]
	s := max(op.stride, 1)
	out := act{s: &stream{c: op.l.Weight.Shape[0], h: (h+op.pt+op.pb-k)/s + 1, w: (w+op.pl+op.pr-k)/s + 1}}
	if cur.big() || out.big() {
		return settle(ctx, act{s: convStream(op, cur.streamed(), f)})
	}
	x, err := cur.stored(ctx)
	if err != nil {
		return act{}, err
	}
	f.x = x
	t, err := conv(ctx, op, f)
	return act{t: t}, err
}

// resnetAct runs r on cur, streamed when its maps are too large to store.
func resnetAct(ctx context.Context, r *resnet, cur act) (act, error) {
	_, h, w := cur.dims()
	if cur.big() || mapBytes(r.conv1.Weight.Shape[0], h, w) > streamAbove {
		s, err := r.stream(ctx, cur.streamed())
		if err != nil {
			return act{}, err
		}
		return settle(ctx, act{s: s})
	}
	x, err := cur.stored(ctx)
	if err != nil {
		return act{}, err
	}
	t, err := r.forward(ctx, x)
	return act{t: t}, err
}

// normAct returns the whole-image GroupNorm of cur as an affine map,
// with a statistics pass when cur is streamed.
func normAct(ctx context.Context, l *nn.GroupNorm, cur act) (a, b []float32, err error) {
	if cur.s != nil {
		return cur.s.statsOf(ctx, l.Groups, l.Weight, l.Bias, l.Eps)
	}
	a, b = stats(l, cur.t)
	return a, b, nil
}
