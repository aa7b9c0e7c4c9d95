// Package gemm multiplies row-major float32 matrices: the arithmetic core of
// every linear layer, convolution (via im2col) and attention in tsdsr.
//
// Sgemm follows the Goto/BLIS scheme: op(A) and op(B) are copied ("packed")
// into cache-sized panels laid out in the order a register-tiled micro-kernel
// reads them, so that transposes, strides and ragged edges cost one pass of
// copying instead of slowing down the inner loop. The micro-kernel is chosen
// at run time from the CPU features: on amd64 an AVX-512 8x32 or AVX2+FMA
// 6x16 kernel in Go assembly (any build), else plain Go. Builds with
// GOEXPERIMENT=simd also carry the same kernels written with simd/archsimd,
// selectable for comparison; they are slower today (see kernel_amd64.s).
// The work is split over the worker pool of internal/parallel.
//
// SetKernel, or the TSDSR_GEMM_KERNEL environment variable, forces one path
// (tests and benchmarks use it to cover every path the machine offers,
// including gonum's blas32 for comparison).
package gemm

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(X) is X or its transpose. op(A) is m x k, op(B) is k x n, C is m x n.
// lda, ldb and ldc are the row strides of A, B and C as stored.
// When beta is 0, C is not read (NaNs in C do not propagate).
// It is safe for concurrent use on disjoint outputs.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	p := current.Load()
	switch {
	case p.whole != nil:
		p.whole(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case m*n*k <= smallWork:
		// Packing and tiling cost more than they save on tiny products
		// (LoRA adapters, norms over a few channels, unit tests).
		reference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	default:
		blocked(p, transA, transB, m, n, k, alpha, a, lda, b, nil, ldb, beta, c, ldc)
	}
}

// SgemmBF16 is Sgemm with B stored as bfloat16 (the top 16 bits of
// float32s): B's elements are widened exactly while B is packed, so a
// model can keep its weights at half the memory and still compute in
// float32. The result equals Sgemm on the widened B.
func SgemmBF16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	ar, ac, br, bc := m, k, k, n
	if transA {
		ar, ac = k, m
	}
	if transB {
		br, bc = n, k
	}
	check("a", a, ar, ac, lda)
	check("b", b, br, bc, ldb)
	check("c", c, m, n, ldc)
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	p := current.Load()
	if p.whole != nil || m*n*k <= smallWork {
		w := make([]float32, len(b))
		widen(w, b)
		Sgemm(transA, transB, m, n, k, alpha, a, lda, w, ldb, beta, c, ldc)
		return
	}
	blocked(p, transA, transB, m, n, k, alpha, a, lda, nil, b, ldb, beta, c, ldc)
}

// smallWork is the m*n*k below which Sgemm skips packing.
const smallWork = 16 * 16 * 16

// checkArgs panics with a clear message when the strides or slice lengths
// cannot hold the matrices: a programmer error that would otherwise surface
// as an index panic deep in a kernel (or, for unsafe kernels, as a wrong
// read).
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check("a", a, ar, ac, lda)
	check("b", b, br, bc, ldb)
	check("c", c, m, n, ldc)
}

// check panics unless x holds a rows x cols matrix with row stride ld.
func check[T float32 | uint16](name string, x []T, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols {
		panic(fmt.Sprintf("gemm: ld%s=%d < %d columns", name, ld, cols))
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("gemm: len(%s)=%d < %d needed for %dx%d with stride %d", name, len(x), need, rows, cols, ld))
	}
}

// scaleC sets C = beta*C without reading C when beta is 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
			continue
		}
		for j := range ci {
			ci[j] *= beta
		}
	}
}

// path is one way of computing Sgemm: either a micro-kernel driven by the
// blocked, packed, multi-threaded loop nest, or a whole-product routine
// (gonum) that bypasses it.
type path struct {
	name string
	// mr x nr is the register tile of micro.
	mr, nr int
	// micro computes the mr x nr product of an mr-row packed A panel and an
	// nr-column packed B panel over kc steps and writes it into C (row
	// stride ldc, in elements): C = acc when beta is 0 (C not read),
	// C += acc when beta is 1, C = beta*C + acc otherwise. The pointers
	// address float32 data; micro reads kc*mr, kc*nr floats and touches
	// exactly mr rows of nr floats of C.
	micro microKernel
	whole func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// paths lists every path this binary can run on this CPU, fastest first.
var paths []*path

// current is the path Sgemm uses.
var current atomic.Pointer[path]

func init() {
	paths = append(append(asmPaths(), simdPaths()...), goPath, gonumPath)
	current.Store(paths[0])
	if name := os.Getenv("TSDSR_GEMM_KERNEL"); name != "" {
		if _, err := SetKernel(name); err != nil {
			fmt.Fprintln(os.Stderr, err, "- using", Kernel())
		}
	}
}

// Kernels lists the names of the paths usable on this machine, fastest
// first; the first is the default.
func Kernels() []string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = p.name
	}
	return names
}

// Kernel reports the name of the path Sgemm currently uses.
func Kernel() string { return current.Load().name }

// SetKernel forces Sgemm to use the named path (one of Kernels(); "" means
// the default) and returns the previous name. It affects all callers, so it
// is meant for tests, benchmarks and diagnostics.
func SetKernel(name string) (string, error) {
	prev := Kernel()
	if name == "" {
		current.Store(paths[0])
		return prev, nil
	}
	for _, p := range paths {
		if p.name == name {
			current.Store(p)
			return prev, nil
		}
	}
	return prev, fmt.Errorf("gemm: kernel %q not available here (have %s)", name, strings.Join(Kernels(), ", "))
}

// reference is the plain-Go triple loop: slow, obviously correct, and the
// fastest choice for tiny products.
func reference(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			var av float32
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if av == 0 {
				continue
			}
			if transB {
				for j := range ci {
					ci[j] += av * b[j*ldb+p]
				}
			} else {
				bp := b[p*ldb : p*ldb+n]
				for j, bv := range bp {
					ci[j] += av * bv
				}
			}
		}
	}
}
