package gemm

import (
	"testing"
	"unsafe"
)

func BenchmarkMicro(b *testing.B) {
	for _, p := range paths {
		if p.micro == nil {
			continue
		}
		b.Run(p.name, func(b *testing.B) {
			const kc = 256
			a := make([]float32, kc*p.mr)
			bb := make([]float32, kc*p.nr)
			c := make([]float32, p.mr*p.nr)
			for i := range a {
				a[i] = 1
			}
			for range b.N {
				p.micro(kc, unsafe.Pointer(&a[0]), unsafe.Pointer(&bb[0]), p.nr, unsafe.Pointer(&c[0]), p.nr, 1)
			}
			b.ReportMetric(2*float64(kc*p.mr*p.nr)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
