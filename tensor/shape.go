package tensor

import (
	"fmt"
	"slices"

	"tsdsr/internal/parallel"
)

// normAxis maps a possibly negative axis (counted from the end, as in
// PyTorch) into [0, dims); op names the caller in the panic message.
func normAxis(op string, axis int, shape []int) int {
	if axis < 0 {
		axis += len(shape)
	}
	if axis < 0 || axis >= len(shape) {
		panic(fmt.Sprintf("tensor.%s: axis out of range for shape %v", op, shape))
	}
	return axis
}

// splitAt views shape as [outer, shape[axis], inner].
func splitAt(shape []int, axis int) (outer, n, inner int) {
	return Numel(shape[:axis]), shape[axis], Numel(shape[axis+1:])
}

// gradBuf returns t's gradient storage, creating it zeroed on first use, for
// backward passes that scatter-add into a region of an input (Slice, Split)
// instead of materialising a full-size gradient per output.
func gradBuf(t *Tensor) []float32 {
	if t.Grad == nil {
		t.Grad = New(t.Shape...)
	}
	return t.Grad.Data
}

// Reshape returns a with a new shape of the same number of elements; one
// dimension may be -1 and is inferred. The result shares a's data (storage
// is contiguous, so no copy is needed); its gradient is reshaped back.
func Reshape(a *Tensor, shape ...int) *Tensor {
	shape = slices.Clone(shape)
	infer, n := -1, 1
	for i, d := range shape {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			panic(fmt.Sprintf("tensor.Reshape: bad shape %v for %v", shape, a.Shape))
		default:
			n *= d
		}
	}
	if infer >= 0 {
		if n == 0 || len(a.Data)%n != 0 {
			panic(fmt.Sprintf("tensor.Reshape: cannot infer -1 in %v for %v", shape, a.Shape))
		}
		shape[infer] = len(a.Data) / n
		n *= shape[infer]
	}
	if n != len(a.Data) {
		panic(fmt.Sprintf("tensor.Reshape: shape %v does not hold the %d elements of %v", shape, len(a.Data), a.Shape))
	}
	out := &Tensor{Shape: shape, Data: a.Data}
	return record(out, func(g *Tensor) { a.accumulateOwned(g.Data) }, a)
}

// Transpose swaps dimensions d0 and d1 (negative counts from the end).
func Transpose(a *Tensor, d0, d1 int) *Tensor {
	d0, d1 = normAxis("Transpose", d0, a.Shape), normAxis("Transpose", d1, a.Shape)
	perm := make([]int, len(a.Shape))
	for i := range perm {
		perm[i] = i
	}
	perm[d0], perm[d1] = d1, d0
	return Permute(a, perm...)
}

// Permute reorders dimensions: output dimension i is input dimension
// perm[i]. The data is copied in blocks: contiguous runs when the last
// dimension stays last (e.g. [N, L, H, D] <-> [N, H, L, D]), cache-sized
// tiles otherwise.
func Permute(a *Tensor, perm ...int) *Tensor {
	if len(perm) != len(a.Shape) {
		panic(fmt.Sprintf("tensor.Permute: permutation %v for shape %v", perm, a.Shape))
	}
	seen := make([]bool, len(perm))
	shape := make([]int, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			panic(fmt.Sprintf("tensor.Permute: %v is not a permutation of the dims of %v", perm, a.Shape))
		}
		seen[p] = true
		shape[i] = a.Shape[p]
	}
	perm = slices.Clone(perm)
	out := New(shape...)
	permuteData(out.Data, a.Data, a.Shape, perm)
	return record(out, func(g *Tensor) {
		inv := make([]int, len(perm))
		for i, p := range perm {
			inv[p] = i
		}
		ga := make([]float32, len(a.Data))
		permuteData(ga, g.Data, shape, inv)
		a.accumulateOwned(ga)
	}, a)
}

// permuteData writes src (of shape shape) permuted by perm into dst.
func permuteData(dst, src []float32, shape, perm []int) {
	if len(src) == 0 {
		return
	}
	// Collapse: drop size-1 dims and merge input dims that stay adjacent and
	// in order in the output, so [N, L, H, D] -> [N, H, L, D] becomes a
	// small problem with a long contiguous inner run.
	var s []int // collapsed input shape
	var p []int // collapsed perm
	{
		keep := make([]int, 0, len(perm)) // output order of non-unit input dims
		for _, q := range perm {
			if shape[q] != 1 {
				keep = append(keep, q)
			}
		}
		// Groups of consecutive input dims, in output order.
		type group struct{ first, size int }
		var groups []group
		for i, q := range keep {
			if i > 0 && q == keep[i-1]+1 {
				groups[len(groups)-1].size *= shape[q]
				continue
			}
			groups = append(groups, group{q, shape[q]})
		}
		// Rank the groups by their first input dim to get the collapsed input.
		order := make([]int, len(groups))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(x, y int) int { return groups[x].first - groups[y].first })
		// Output dim i is collapsed input dim p[i] = rank of group i.
		p = make([]int, len(groups))
		s = make([]int, len(groups))
		for r, gi := range order {
			p[gi] = r
			s[r] = groups[gi].size
		}
	}
	r := len(s)
	if r <= 1 {
		copy(dst, src)
		return
	}
	inStride := make([]int, r)
	st := 1
	for i := r - 1; i >= 0; i-- {
		inStride[i] = st
		st *= s[i]
	}
	outShape := make([]int, r)
	srcStride := make([]int, r) // input stride of each output dim
	for i, q := range p {
		outShape[i] = s[q]
		srcStride[i] = inStride[q]
	}
	if p[r-1] == r-1 {
		// The innermost input dim stays innermost: copy runs of s[r-1].
		inner := s[r-1]
		rows := len(src) / inner
		parallel.For(rows, max(1, elemGrain/inner), func(lo, hi int) {
			for row := lo; row < hi; row++ {
				off, rem := 0, row
				for d := r - 2; d >= 0; d-- {
					off += (rem % outShape[d]) * srcStride[d]
					rem /= outShape[d]
				}
				copy(dst[row*inner:(row+1)*inner], src[off:off+inner])
			}
		})
		return
	}
	// The innermost dims differ: transpose 2-D tiles spanned by the output's
	// last dim (input dim p[r-1], stride srcStride[r-1] in src) and the
	// input's last dim (output dim b, stride outStride[b] in dst).
	outStride := make([]int, r)
	st = 1
	for i := r - 1; i >= 0; i-- {
		outStride[i] = st
		st *= outShape[i]
	}
	b := slices.Index(p, r-1)
	const tile = 32
	rowsN, colsN := outShape[r-1], outShape[b] // i runs along dst's last dim, j along src's last
	tilesI, tilesJ := (rowsN+tile-1)/tile, (colsN+tile-1)/tile
	outer := len(src) / (rowsN * colsN)
	// Other output dims, decoded from the outer index.
	var others []int
	for d := 0; d < r-1; d++ {
		if d != b {
			others = append(others, d)
		}
	}
	sA := srcStride[r-1]
	dB := outStride[b]
	parallel.For(outer*tilesI*tilesJ, max(1, elemGrain/(tile*tile)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			tj, ti, o := t%tilesJ, (t/tilesJ)%tilesI, t/(tilesJ*tilesI)
			srcOff, dstOff := 0, 0
			for k := len(others) - 1; k >= 0; k-- {
				d := others[k]
				c := o % outShape[d]
				o /= outShape[d]
				srcOff += c * srcStride[d]
				dstOff += c * outStride[d]
			}
			i0, i1 := ti*tile, min(ti*tile+tile, rowsN)
			j0, j1 := tj*tile, min(tj*tile+tile, colsN)
			for j := j0; j < j1; j++ {
				sj := src[srcOff+j:]
				dj := dst[dstOff+j*dB:]
				for i := i0; i < i1; i++ {
					dj[i] = sj[i*sA]
				}
			}
		}
	})
}

// Slice returns a[..., start:end, ...] along axis (a copy).
func Slice(a *Tensor, axis, start, end int) *Tensor {
	axis = normAxis("Slice", axis, a.Shape)
	outer, n, inner := splitAt(a.Shape, axis)
	if start < 0 || end > n || start > end {
		panic(fmt.Sprintf("tensor.Slice: range [%d, %d) out of bounds for axis %d of %v", start, end, axis, a.Shape))
	}
	shape := slices.Clone(a.Shape)
	shape[axis] = end - start
	out := New(shape...)
	w := (end - start) * inner
	copyBlocks(out.Data, w, 0, a.Data, n*inner, start*inner, outer, w)
	return record(out, func(g *Tensor) {
		addBlocks(gradBuf(a), n*inner, start*inner, g.Data, w, 0, outer, w)
	}, a)
}

// copyBlocks copies rows blocks of w elements from src (row stride ss,
// offset so) to dst (row stride ds, offset do).
func copyBlocks(dst []float32, ds, do int, src []float32, ss, so, rows, w int) {
	if w == 0 {
		return
	}
	parallel.For(rows, max(1, elemGrain/w), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(dst[r*ds+do:r*ds+do+w], src[r*ss+so:r*ss+so+w])
		}
	})
}

// addBlocks is copyBlocks with dst += src.
func addBlocks(dst []float32, ds, do int, src []float32, ss, so, rows, w int) {
	if w == 0 {
		return
	}
	parallel.For(rows, max(1, elemGrain/w), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d := dst[r*ds+do : r*ds+do+w]
			for i, v := range src[r*ss+so : r*ss+so+w] {
				d[i] += v
			}
		}
	})
}

// Concat joins tensors along axis; all other dimensions must agree.
func Concat(axis int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic("tensor.Concat: no tensors")
	}
	ts = slices.Clone(ts) // the graph keeps the inputs; the caller may reuse its slice
	axis = normAxis("Concat", axis, ts[0].Shape)
	shape := slices.Clone(ts[0].Shape)
	shape[axis] = 0
	for _, t := range ts {
		if len(t.Shape) != len(shape) {
			panic(fmt.Sprintf("tensor.Concat: shapes %v and %v differ in rank", ts[0].Shape, t.Shape))
		}
		for d := range shape {
			if d != axis && t.Shape[d] != shape[d] {
				panic(fmt.Sprintf("tensor.Concat: shapes %v and %v differ off axis %d", ts[0].Shape, t.Shape, axis))
			}
		}
		shape[axis] += t.Shape[axis]
	}
	out := New(shape...)
	outer, n, inner := splitAt(shape, axis)
	offs := make([]int, len(ts))
	off := 0
	for i, t := range ts {
		offs[i] = off
		w := t.Shape[axis] * inner
		copyBlocks(out.Data, n*inner, off, t.Data, w, 0, outer, w)
		off += w
	}
	return record(out, func(g *Tensor) {
		for i, t := range ts {
			if !t.requiresGrad {
				continue
			}
			w := t.Shape[axis] * inner
			gt := make([]float32, len(t.Data))
			copyBlocks(gt, w, 0, g.Data, n*inner, offs[i], outer, w)
			t.accumulateOwned(gt)
		}
	}, ts...)
}

// Split cuts a along axis into consecutive pieces of the given sizes, which
// must add up to the axis length (as torch.split with a list of sizes).
func Split(a *Tensor, axis int, sizes ...int) []*Tensor {
	axis = normAxis("Split", axis, a.Shape)
	total := 0
	for _, s := range sizes {
		if s < 0 {
			panic(fmt.Sprintf("tensor.Split: negative size in %v", sizes))
		}
		total += s
	}
	if total != a.Shape[axis] {
		panic(fmt.Sprintf("tensor.Split: sizes %v do not add up to axis %d of %v", sizes, axis, a.Shape))
	}
	parts := make([]*Tensor, len(sizes))
	start := 0
	for i, s := range sizes {
		parts[i] = Slice(a, axis, start, start+s)
		start += s
	}
	return parts
}

// PadMode selects how Pad2d fills the border.
type PadMode int

const (
	// PadZero fills with zeros.
	PadZero PadMode = iota
	// PadReflect mirrors without repeating the edge (PyTorch "reflect":
	// ... x2 x1 | x0 x1 x2 ...); each pad must be smaller than the size.
	PadReflect
	// PadReplicate repeats the edge value.
	PadReplicate
)

func (m PadMode) String() string {
	switch m {
	case PadZero:
		return "zero"
	case PadReflect:
		return "reflect"
	case PadReplicate:
		return "replicate"
	}
	return fmt.Sprintf("PadMode(%d)", int(m))
}

// padIndex maps each output position of a padded axis of size n to its
// source position, or -1 for a zero. Negative pads crop.
func padIndex(n, before, after int, mode PadMode) []int {
	m := n + before + after
	if m < 0 || (m > 0 && n == 0) {
		panic(fmt.Sprintf("tensor.Pad2d: pads (%d, %d) invalid for size %d", before, after, n))
	}
	if mode == PadReflect && (before >= n || after >= n) {
		panic(fmt.Sprintf("tensor.Pad2d: reflect pads (%d, %d) must be smaller than size %d", before, after, n))
	}
	idx := make([]int, m)
	for i := range idx {
		s := i - before
		if s < 0 || s >= n {
			switch mode {
			case PadZero:
				s = -1
			case PadReflect:
				if s < 0 {
					s = -s
				} else {
					s = 2*(n-1) - s
				}
			case PadReplicate:
				s = min(max(s, 0), n-1)
			default:
				panic(fmt.Sprintf("tensor.Pad2d: unknown mode %v", mode))
			}
		}
		idx[i] = s
	}
	return idx
}

// Pad2d pads (or, for negative amounts, crops) the last two dimensions of x
// (H and W of NCHW): the result has H+top+bottom rows and W+left+right
// columns, the border filled as mode says.
func Pad2d(x *Tensor, top, bottom, left, right int, mode PadMode) *Tensor {
	if len(x.Shape) < 2 {
		panic(fmt.Sprintf("tensor.Pad2d: shape %v has fewer than 2 dims", x.Shape))
	}
	nd := len(x.Shape)
	h, w := x.Shape[nd-2], x.Shape[nd-1]
	ri, ci := padIndex(h, top, bottom, mode), padIndex(w, left, right, mode)
	shape := slices.Clone(x.Shape)
	shape[nd-2], shape[nd-1] = len(ri), len(ci)
	out := New(shape...)
	planes := Numel(x.Shape[:nd-2])
	oh, ow := len(ri), len(ci)
	parallel.For(planes*oh, max(1, elemGrain/max(1, ow)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pl, i := r/oh, r%oh
			if ri[i] < 0 {
				continue
			}
			src := x.Data[(pl*h+ri[i])*w : (pl*h+ri[i]+1)*w]
			dst := out.Data[r*ow : (r+1)*ow]
			for j, c := range ci {
				if c >= 0 {
					dst[j] = src[c]
				}
			}
		}
	})
	return record(out, func(g *Tensor) {
		gx := make([]float32, len(x.Data))
		// Rows of one plane may map to the same source row (reflect,
		// replicate), so parallelise over planes only.
		parallel.For(planes, max(1, elemGrain/max(1, oh*ow)), func(lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				for i, sr := range ri {
					if sr < 0 {
						continue
					}
					src := g.Data[(pl*oh+i)*ow : (pl*oh+i+1)*ow]
					dst := gx[(pl*h+sr)*w : (pl*h+sr+1)*w]
					for j, c := range ci {
						if c >= 0 {
							dst[c] += src[j]
						}
					}
				}
			}
		})
		x.accumulateOwned(gx)
	}, x)
}
