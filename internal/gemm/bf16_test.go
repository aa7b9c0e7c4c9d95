package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"tsdsr/internal/parallel"
)

// TestSgemmBF16 checks that a bfloat16 B gives exactly Sgemm's result on
// the widened B, on every kernel, transposed or not, across the cache
// blocks and on one and two threads.
func TestSgemmBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := [][3]int{{5, 7, 3}, {33, 47, 17}, {150, 530, 300}, {7, 1100, 37}, {301, 23, 520}}
	for _, kernel := range Kernels() {
		useKernel(t, kernel)
		for _, th := range []int{1, 2} {
			prev := parallel.SetThreads(th)
			for i, sh := range shapes {
				m, n, k := sh[0], sh[1], sh[2]
				transB := i%2 == 0
				ldb := n + 3
				if transB {
					ldb = k + 3
				}
				rows := k
				if transB {
					rows = n
				}
				b16 := make([]uint16, (rows-1)*ldb+ldb)
				bw := make([]float32, len(b16))
				for j := range b16 {
					b16[j] = uint16(math.Float32bits(float32(r.NormFloat64())) >> 16)
					bw[j] = math.Float32frombits(uint32(b16[j]) << 16)
				}
				a := randSlice(r, m*k)
				c0 := randSlice(r, m*n)
				want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
				Sgemm(false, transB, m, n, k, 0.5, a, k, bw, ldb, 1, want, n)
				SgemmBF16(false, transB, m, n, k, 0.5, a, k, b16, ldb, 1, got, n)
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("%s, %d threads, %dx%dx%d transB=%v: c[%d] = %v, want %v", kernel, th, m, n, k, transB, j, got[j], want[j])
					}
				}
			}
			parallel.SetThreads(prev)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("short bfloat16 B did not panic")
		}
	}()
	SgemmBF16(false, true, 4, 4, 4, 1, make([]float32, 16), 4, make([]uint16, 15), 4, 0, make([]float32, 16), 4)
}
