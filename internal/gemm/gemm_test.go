package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/internal/parallel"
)

// refGemm is the float64 reference: C = alpha*op(A)*op(B) + beta*C, with
// beta == 0 ignoring C.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			s *= float64(alpha)
			if beta != 0 {
				s += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = s
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra stride beyond the stored row length
	padC           int
}

// run executes one case with every kernel available on this machine and
// compares each result with the float64 reference, elementwise within a
// tolerance scaled by k. It also checks that Sgemm touches no element of C
// outside the m x n window (the row padding of ldc).
func (tc gemmCase) run(t *testing.T, r *rand.Rand) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc := max(ac, 1)+tc.padA, max(bc, 1)+tc.padB, max(tc.n, 1)+tc.padC
	a := randSlice(r, max(0, (ar-1)*lda+ac))
	b := randSlice(r, max(0, (br-1)*ldb+bc))
	c0 := randSlice(r, tc.m*ldc) // full rows: the padding must survive
	if tc.beta == 0 {
		for i := range c0 {
			c0[i] = float32(math.NaN())
		}
	}
	want := refGemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c0, ldc)
	tol := 1e-5 * float64(tc.k+4) * float64(max(1, math.Abs(float64(tc.alpha)))+math.Abs(float64(tc.beta)))
	c := make([]float32, len(c0))
	for _, name := range Kernels() {
		useKernel(t, name)
		copy(c, c0)
		Sgemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
		for i := 0; i < tc.m; i++ {
			for j := 0; j < ldc; j++ {
				got := c[i*ldc+j]
				if j >= tc.n {
					if math.Float32bits(got) != math.Float32bits(c0[i*ldc+j]) {
						t.Fatalf("%s %+v: C[%d][%d] outside the matrix changed: %v -> %v", name, tc, i, j, c0[i*ldc+j], got)
					}
					continue
				}
				w := want[i*tc.n+j]
				if d := math.Abs(float64(got) - w); !(d <= tol*math.Max(1, math.Sqrt(math.Abs(w)))) {
					t.Fatalf("%s %+v: C[%d][%d] = %v, want %v (|diff| %.3g > tol %.3g)", name, tc, i, j, got, w, d, tol)
				}
			}
		}
	}
}

// useKernel switches Sgemm to the named path until the test ends.
func useKernel(t *testing.T, name string) {
	prev, err := SetKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetKernel(prev) })
}

func TestSgemmRandom(t *testing.T) {
	sizes := []int{1, 2, 3, 5, 7, 13, 16, 17, 31, 33, 47, 64, 97}
	r := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 120; it++ {
		tc := gemmCase{
			transA: it&1 != 0, transB: it&2 != 0,
			m: sizes[r.IntN(len(sizes))], n: sizes[r.IntN(len(sizes))], k: sizes[r.IntN(len(sizes))],
			alpha: []float32{1, -0.5, 2.25}[r.IntN(3)],
			beta:  []float32{0, 1, -1.5}[r.IntN(3)],
			padA:  r.IntN(3) * 5, padB: r.IntN(3) * 3, padC: r.IntN(2) * 7,
		}
		tc.run(t, r)
	}
}

// TestSgemmBlocking covers sizes that cross the cache blocks (k > kc, m >
// mc, n > ncTask) on one and two threads, every transpose combination.
func TestSgemmBlocking(t *testing.T) {
	shapes := [][3]int{{150, 530, 300}, {7, 1100, 37}, {301, 23, 520}, {64, 600, 9}}
	for _, th := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", th), func(t *testing.T) {
			defer parallel.SetThreads(parallel.SetThreads(th))
			r := rand.New(rand.NewPCG(3, uint64(th)))
			for _, s := range shapes {
				for tr := 0; tr < 4; tr++ {
					gemmCase{transA: tr&1 != 0, transB: tr&2 != 0, m: s[0], n: s[1], k: s[2],
						alpha: 0.75, beta: []float32{0, 1, 0.5}[tr%3], padA: 3, padB: 1, padC: 2}.run(t, r)
				}
			}
		})
	}
}

// TestSgemmDegenerate checks k == 0 and alpha == 0: C = beta*C, and beta == 0
// clears NaNs.
func TestSgemmDegenerate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []gemmCase{
		{m: 3, n: 4, k: 0, alpha: 1, beta: 0},
		{m: 3, n: 4, k: 0, alpha: 1, beta: 2},
		{m: 20, n: 30, k: 40, alpha: 0, beta: 0},
		{m: 20, n: 30, k: 40, alpha: 0, beta: -1, padC: 3},
	} {
		tc.run(t, r)
	}
}

func TestSetKernel(t *testing.T) {
	if _, err := SetKernel("no-such-kernel"); err == nil {
		t.Fatal("SetKernel accepted an unknown name")
	}
	ks := Kernels()
	if Kernel() != ks[0] {
		t.Fatalf("default kernel %q, want the first of %v", Kernel(), ks)
	}
	prev, err := SetKernel("go")
	if err != nil || Kernel() != "go" {
		t.Fatalf("SetKernel(go): %v, now %q", err, Kernel())
	}
	if _, err := SetKernel(""); err != nil || Kernel() != ks[0] || prev != ks[0] {
		t.Fatalf("SetKernel(\"\") did not restore the default: %q", Kernel())
	}
}

func TestSgemmBadArgs(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a too-short C")
		}
	}()
	Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
}

// TestGather checks the transposing pack (SIMD 8x8 blocks where the CPU has
// them, then 4-row and 1-row steps) for every panel width the kernels use,
// including widths no kernel on this machine exercises.
func TestGather(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, w := range []int{4, 6, 8, 16, 32} {
		for _, kb := range []int{1, 7, 8, 19, 64} {
			for _, nv := range []int{1, 3, 4, 5, 8, 9, 13, 16, 25, 32} {
				if nv > w {
					continue
				}
				for _, alpha := range []float32{1, -2} {
					ld := kb + 3
					x := randSlice(r, 2+nv*ld)
					dst := randSlice(r, kb*w)
					want := append([]float32(nil), dst...)
					for i := 0; i < nv; i++ {
						for p := 0; p < kb; p++ {
							want[p*w+i] = alpha * x[2+i*ld+p]
						}
					}
					gather(dst, w, alpha, x, ld, 2, kb, nv)
					for i := range dst {
						if dst[i] != want[i] {
							t.Fatalf("w=%d kb=%d nv=%d alpha=%v: dst[%d] = %v, want %v", w, kb, nv, alpha, i, dst[i], want[i])
						}
					}
				}
			}
		}
	}
}
