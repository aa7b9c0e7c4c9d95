package gemm

import (
	"math"
	"sync"
	"unsafe"

	"tsdsr/internal/parallel"
)

// microKernel is the signature of a register-tiled inner kernel; see
// path.micro.
type microKernel func(kc int, a, b unsafe.Pointer, ldb int, c unsafe.Pointer, ldc int, beta float32)

// Cache blocking, sized for a core with 32 KiB L1d and 512 KiB L2 (AMD Zen 3)
// or larger:
//   - kc: depth of one packed panel pass. A kc x nr B micro-panel (16 KiB at
//     nr=16) plus a kc x mr A micro-panel stay in L1 across the inner loop.
//   - mc: rows of A per task; the mc x kc packed A block (144 KiB) stays in L2
//     while the task sweeps its columns.
//   - ncTask: columns per task; the kc x ncTask packed B slice (512 KiB) is
//     streamed from L2/L3 once per A block.
//   - nc: columns packed per outer pass (kc x nc = 4 MiB of B, L3-resident).
//   - mcOuter: rows of A packed per outer pass (bounds the scratch memory).
var (
	kcBlock      = 256
	mcBlock      = 144
	ncTask       = 512
	ncBlock      = 4096
	mcOuterBlock = 4096
)

// An untransposed B is read in place instead of packed when m <= directBRows
// and B holds at most directBElems floats: with few rows of A each B element
// is used only m times, so copying it costs as much as the arithmetic
// (convolution forward bands: m = output channels, n = pixels). A large B
// is still packed: its rows are far apart, and reading them in place from
// DRAM stalls the kernel (measured: 10% faster in place for a 4.7 MB B,
// 35% slower for a 38 MB one).
var (
	directBRows  = 192
	directBElems = 1 << 21
)

// parallelWork is the m*n*k above which the blocked loop uses several
// goroutines: below it, goroutine start-up costs more than it saves.
const parallelWork = 64 * 64 * 64

// scratch holds packing buffers, tilePool the edge-tile buffers of macro.
var (
	scratch  = sync.Pool{New: func() any { return new([]float32) }}
	tilePool = sync.Pool{New: func() any { return new([maxTile]float32) }}
)

// getScratch returns a pooled slice of at least n floats.
func getScratch(n int) *[]float32 {
	s := scratch.Get().(*[]float32)
	if cap(*s) < n {
		*s = make([]float32, n)
	}
	*s = (*s)[:n]
	return s
}

// blocked runs the Goto/BLIS loop nest with p's micro-kernel:
//
//	for jc over n by nc:            pack B[pc:pc+kc, jc:jc+nc] (shared)
//	  for pc over k by kc:
//	    for ic over m by mcOuter:   pack alpha*A[ic:, pc:pc+kc] (shared)
//	      parallel over (mc rows x ncTask columns) tasks:
//	        for jr by nr: for ir by mr: micro-kernel
//
// The first pc pass applies beta to C; later passes accumulate.
//
// With b16 set, B is bfloat16 (b is nil) and is widened while it is packed.
func blocked(p *path, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, b16 []uint16, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := p.mr, p.nr
	kc := min(kcBlock, k)
	// Balance the k passes: 300 is better done as 150+150 than 256+44.
	if passes := (k + kc - 1) / kc; passes > 1 {
		kc = (k + passes - 1) / passes
	}
	nc := roundUp(min(ncBlock, n), nr)
	mco := roundUp(min(mcOuterBlock, m), mr)
	mc := min(mcBlock/mr*mr, mco)
	nct := min(ncTask/nr*nr, nc)

	bufA := getScratch(mco * kc)
	bufB := getScratch(nc * kc)
	defer scratch.Put(bufA)
	defer scratch.Put(bufB)
	ap, bp := *bufA, *bufB

	threaded := m*n*k >= parallelWork && parallel.Threads() > 1
	directB := !transB && b16 == nil && m <= directBRows && k*n <= directBElems
	run := func(count, grain int, fn func(lo, hi int)) {
		if threaded {
			parallel.For(count, grain, fn)
		} else {
			fn(0, count)
		}
	}

	for jc := 0; jc < n; jc += nc {
		nb := min(nc, n-jc)
		nPanels := (nb + nr - 1) / nr
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			bet := beta
			if pc > 0 {
				bet = 1
			}
			run(nPanels, 8, func(lo, hi int) {
				for q := lo; q < hi; q++ {
					j0 := q * nr
					if directB && j0+nr <= nb {
						continue // read in place by macro
					}
					if b16 != nil {
						packB16(bp[q*nr*kb:(q+1)*nr*kb], nr, transB, b16, ldb, pc, kb, jc+j0, min(nr, nb-j0))
						continue
					}
					packB(bp[q*nr*kb:(q+1)*nr*kb], nr, transB, b, ldb, pc, kb, jc+j0, min(nr, nb-j0))
				}
			})
			for ic := 0; ic < m; ic += mco {
				mb := min(mco, m-ic)
				mPanels := (mb + mr - 1) / mr
				run(mPanels, 8, func(lo, hi int) {
					for q := lo; q < hi; q++ {
						i0 := q * mr
						packA(ap[q*mr*kb:(q+1)*mr*kb], mr, transA, alpha, a, lda, pc, kb, ic+i0, min(mr, mb-i0))
					}
				})
				rowTasks := (mb + mc - 1) / mc
				colTasks := (nb + nct - 1) / nct
				run(rowTasks*colTasks, 1, func(lo, hi int) {
					for t := lo; t < hi; t++ {
						i0 := (t / colTasks) * mc
						j0 := (t % colTasks) * nct
						bd := bsrc{packed: bp[j0*kb:]}
						if directB {
							bd.direct, bd.ld = b[pc*ldb+jc+j0:], ldb
						}
						macro(p, kb, ap[i0*kb:], bd, min(mc, mb-i0), min(nct, nb-j0), c[(ic+i0)*ldc+jc+j0:], ldc, bet)
					}
				})
			}
		}
	}
}

// bsrc says where macro finds B: packed panels, or (when direct is set)
// full-width panels in place in the caller's B with row stride ld, only the
// ragged last panel being packed.
type bsrc struct {
	packed, direct []float32
	ld             int
}

// macro multiplies an mb-row packed A block by an nb-column B block (both kb
// deep) into C, one register tile at a time. Tiles that stick out of C go
// through a local buffer.
func macro(p *path, kb int, ap []float32, bs bsrc, mb, nb int, c []float32, ldc int, beta float32) {
	mr, nr := p.mr, p.nr
	// Edge tiles go through a pooled buffer: a local array would escape
	// (the kernel is called through a func value) and cost an allocation
	// per call.
	var tmp *[maxTile]float32
	defer func() {
		if tmp != nil {
			tilePool.Put(tmp)
		}
	}()
	for j := 0; j < nb; j += nr {
		nv := min(nr, nb-j)
		bPanel, ldb := unsafe.Pointer(&bs.packed[j*kb]), nr
		if bs.direct != nil && nv == nr {
			bPanel, ldb = unsafe.Pointer(&bs.direct[j]), bs.ld
		}
		for i := 0; i < mb; i += mr {
			aPanel := unsafe.Pointer(&ap[i*kb])
			mv := min(mr, mb-i)
			if mv == mr && nv == nr {
				p.micro(kb, aPanel, bPanel, ldb, unsafe.Pointer(&c[i*ldc+j]), ldc, beta)
				continue
			}
			if tmp == nil {
				tmp = tilePool.Get().(*[maxTile]float32)
			}
			p.micro(kb, aPanel, bPanel, ldb, unsafe.Pointer(&tmp[0]), nr, 0)
			finishTile(tmp[:], nr, mv, nv, unsafe.Pointer(&c[i*ldc+j]), ldc, beta)
		}
	}
}

// maxTile bounds mr*nr over all micro-kernels.
const maxTile = 16 * 32

// packA copies rows [i0, i0+mv) and columns [pc, pc+kb) of alpha*op(A) into
// dst as kb consecutive groups of mr floats (one per k step), zero-padding
// rows mv..mr-1.
func packA(dst []float32, mr int, transA bool, alpha float32, a []float32, lda, pc, kb, i0, mv int) {
	dst = dst[:kb*mr]
	if mv < mr {
		clear(dst)
	}
	if transA {
		// op(A)[i][p] = a[p*lda+i]: each k step is a contiguous run of mv.
		for p := 0; p < kb; p++ {
			src := a[(pc+p)*lda+i0 : (pc+p)*lda+i0+mv]
			d := dst[p*mr : p*mr+mv]
			if alpha == 1 {
				copy(d, src)
			} else {
				for i, v := range src {
					d[i] = alpha * v
				}
			}
		}
		return
	}
	// op(A)[i][p] = a[i*lda+p]: gather one k step from each of the rows,
	// so the writes stay sequential.
	gather(dst, mr, alpha, a, lda, i0*lda+pc, kb, mv)
}

// packB copies rows [pc, pc+kb) and columns [j0, j0+nv) of op(B) into dst
// as kb consecutive groups of nr floats, zero-padding columns nv..nr-1.
func packB(dst []float32, nr int, transB bool, b []float32, ldb, pc, kb, j0, nv int) {
	dst = dst[:kb*nr]
	if nv < nr {
		clear(dst)
	}
	if !transB {
		for p := 0; p < kb; p++ {
			copy(dst[p*nr:p*nr+nv], b[(pc+p)*ldb+j0:(pc+p)*ldb+j0+nv])
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p].
	gather(dst, nr, 1, b, ldb, j0*ldb+pc, kb, nv)
}

// packB16 is packB for a bfloat16 B: each element is widened (exactly:
// a bfloat16 is the top half of a float32) as it is copied.
func packB16(dst []float32, nr int, transB bool, b []uint16, ldb, pc, kb, j0, nv int) {
	dst = dst[:kb*nr]
	if nv < nr {
		clear(dst)
	}
	if !transB {
		for p := 0; p < kb; p++ {
			widen(dst[p*nr:p*nr+nv], b[(pc+p)*ldb+j0:(pc+p)*ldb+j0+nv])
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p], four rows of b at a time as in gather.
	off := j0*ldb + pc
	r := 0
	for ; r+4 <= nv; r += 4 {
		s0 := b[off+r*ldb : off+r*ldb+kb]
		s1 := b[off+(r+1)*ldb : off+(r+1)*ldb+kb]
		s2 := b[off+(r+2)*ldb : off+(r+2)*ldb+kb]
		s3 := b[off+(r+3)*ldb : off+(r+3)*ldb+kb]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		d := dst[r:]
		for p := range s0 {
			q := d[p*nr : p*nr+4 : p*nr+4]
			q[0], q[1], q[2], q[3] = bf16(s0[p]), bf16(s1[p]), bf16(s2[p]), bf16(s3[p])
		}
	}
	for ; r < nv; r++ {
		src := b[off+r*ldb : off+r*ldb+kb]
		d := dst[r:]
		for p, v := range src {
			d[p*nr] = bf16(v)
		}
	}
}

// bf16 widens a bfloat16.
func bf16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// widen sets dst[i] = bf16(src[i]).
func widen(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = bf16(v)
	}
}

// transpose8, when set (amd64 with AVX), transposes an 8x8 block between
// strided buffers: gather's fast path.
var transpose8 func(dst unsafe.Pointer, lddst int, src unsafe.Pointer, ldsrc int)

// gather transposes: for rows r < nv of x (row r starts at off+r*ld, kb
// long) it sets dst[p*w+r] = alpha*x[off+r*ld+p]. Rows go in 8x8 SIMD blocks
// where possible, then four at a time so each k step writes four adjacent
// floats while reading four sequential streams.
func gather(dst []float32, w int, alpha float32, x []float32, ld, off, kb, nv int) {
	r := 0
	if transpose8 != nil && alpha == 1 && w >= 8 {
		for ; r+8 <= nv; r += 8 {
			src := x[off+r*ld : off+(r+7)*ld+kb] // bounds the 8 rows read
			p := 0
			for ; p+8 <= kb; p += 8 {
				transpose8(unsafe.Pointer(&dst[p*w+r]), w, unsafe.Pointer(&src[p]), ld)
			}
			for ; p < kb; p++ {
				d := dst[p*w+r : p*w+r+8]
				for i := range d {
					d[i] = src[i*ld+p]
				}
			}
		}
	}
	for ; r+4 <= nv; r += 4 {
		s0 := x[off+r*ld : off+r*ld+kb]
		s1 := x[off+(r+1)*ld : off+(r+1)*ld+kb]
		s2 := x[off+(r+2)*ld : off+(r+2)*ld+kb]
		s3 := x[off+(r+3)*ld : off+(r+3)*ld+kb]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		d := dst[r:]
		if alpha == 1 {
			for p := range s0 {
				q := d[p*w : p*w+4 : p*w+4]
				q[0], q[1], q[2], q[3] = s0[p], s1[p], s2[p], s3[p]
			}
		} else {
			for p := range s0 {
				q := d[p*w : p*w+4 : p*w+4]
				q[0], q[1], q[2], q[3] = alpha*s0[p], alpha*s1[p], alpha*s2[p], alpha*s3[p]
			}
		}
	}
	for ; r < nv; r++ {
		src := x[off+r*ld : off+r*ld+kb]
		d := dst[r:]
		for p, v := range src {
			d[p*w] = alpha * v
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// finishTile writes the top-left mv x nv corner of the tile t (row stride
// ts) into C with the beta rule of path.micro.
func finishTile(t []float32, ts, mv, nv int, c unsafe.Pointer, ldc int, beta float32) {
	cs := unsafe.Slice((*float32)(c), (mv-1)*ldc+nv)
	for i := 0; i < mv; i++ {
		ci := cs[i*ldc : i*ldc+nv]
		ti := t[i*ts : i*ts+nv]
		switch beta {
		case 0:
			copy(ci, ti)
		case 1:
			for j, v := range ti {
				ci[j] += v
			}
		default:
			for j, v := range ti {
				ci[j] = beta*ci[j] + v
			}
		}
	}
}
