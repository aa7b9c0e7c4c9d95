package gemm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"tsdsr/internal/parallel"
)

// BenchmarkGemm times C = A*B on the shapes with 1 and 2 threads for
// the gemm-ceiling kernel, every Sgemm path (gonum included), and reports
// GFLOP/s and the ratios to the ceiling kernel ("x-ceiling"), to gonum
// ("x-gonum") and to the FMA peak ("x-peak": independent FMA chains with no
// memory traffic, the hardware limit), all measured in the same run. Run:
//
//	GOEXPERIMENT=simd go test -run '^$' -bench Gemm -benchtime 10x ./internal/gemm/
func BenchmarkGemm(b *testing.B) {
	shapes := [][3]int{{1024, 1024, 1024}, {4096, 1024, 1024}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		r := rand.New(rand.NewPCG(7, 8))
		a, bb, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
		flop := 2 * float64(m) * float64(n) * float64(k)
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("%dx%dx%d/threads=%d", m, n, k, th), func(b *testing.B) {
				defer parallel.SetThreads(parallel.SetThreads(th))
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(th))
				gflops := map[string]float64{}
				peak := 0.0
				if ceilingName() != "" {
					for range 3 {
						peak = max(peak, fmaPeak(th))
					}
				}
				measure := func(name string, fn func()) {
					b.Run(name, func(b *testing.B) {
						fn() // warm up caches and scratch pools
						b.ResetTimer()
						for range b.N {
							fn()
						}
						g := flop * float64(b.N) / b.Elapsed().Seconds() / 1e9
						gflops[name] = g
						b.ReportMetric(g, "GFLOP/s")
						if ceil := gflops["ceiling"]; ceil > 0 && name != "ceiling" {
							b.ReportMetric(g/ceil, "x-ceiling")
						}
						if gn := gflops["gonum"]; gn > 0 && name != "gonum" && name != "ceiling" {
							b.ReportMetric(g/gn, "x-gonum")
						}
						if peak > 0 {
							b.ReportMetric(g/peak, "x-peak")
						}
					})
				}
				if ceilingName() != "" {
					measure("ceiling", func() { ceilingGemm(a, bb, c, m, n, k, th) })
				}
				// gonum first so later paths can report their speed-up over it.
				names := append([]string{"gonum"}, Kernels()...)
				for _, name := range names[:len(names)-1] {
					if name == "go" && m > 1024 {
						continue // seconds per call; the 1024 shape shows it
					}
					measure(name, func() {
						prev, _ := SetKernel(name)
						defer SetKernel(prev)
						Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
					})
				}
			})
		}
	}
}

// BenchmarkShapes times the default path on the shapes the model uses, in
// the transpose combinations the forward and backward passes need. The
// convolution shapes are one im2col band of tensor.Conv2d (3x3, 64->64
// channels, 2048 output pixels per band on 2 threads).
func BenchmarkShapes(b *testing.B) {
	type shape struct {
		name           string
		transA, transB bool
		m, n, k        int
	}
	shapes := []shape{
		{"conv-fwd(W*cols)", false, false, 64, 2048, 576},
		{"conv-dW(dY*cols^T)", false, true, 64, 576, 2048},
		{"conv-dcols(W^T*dY)", true, false, 576, 2048, 64},
		{"attn-QK^T", false, true, 4096, 4096, 64},
		{"attn-PV", false, false, 4096, 64, 4096},
		{"linear-fwd(A*W^T)", false, true, 2048, 1536, 384},
		{"linear-dW(dY^T*X)", true, false, 1536, 384, 2048},
	}
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(9, 10))
			a, bb, c := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), make([]float32, s.m*s.n)
			lda, ldb := s.k, s.n
			if s.transA {
				lda = s.m
			}
			if s.transB {
				ldb = s.k
			}
			Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			b.ResetTimer()
			for range b.N {
				Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			}
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkDirectB compares reading an untransposed B in place with packing
// it, on the convolution forward band and a wider one.
func BenchmarkDirectB(b *testing.B) {
	for _, n := range []int{2048, 16384} {
		m, k := 64, 576
		r := rand.New(rand.NewPCG(11, 12))
		a, bb, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
		for _, direct := range []bool{true, false} {
			b.Run(fmt.Sprintf("n=%d/direct=%v", n, direct), func(b *testing.B) {
				saved := directBRows
				defer func() { directBRows = saved }()
				if !direct {
					directBRows = 0
				}
				Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
				b.ResetTimer()
				for range b.N {
					Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
