package degrade

import (
	"testing"

	"tsdsr/internal/parallel"
	"tsdsr/rng"
)

// BenchmarkSamplePair512 measures one 512 -> 128 pair (USM, crop,
// degradation, bicubic LRUp) on one goroutine, from a 1024 x 768 photo;
// seeds vary so the cost averages over sampled kernel sizes and scales.
func BenchmarkSamplePair512(b *testing.B) {
	defer parallel.SetThreads(parallel.SetThreads(1))
	photo := testPhoto(1024, 768)
	o := DefaultOptions()
	b.ResetTimer()
	for i := range b.N {
		if _, err := SamplePair(photo, rng.New(uint64(i)), o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlur21 is the worst-case stage-1 blur: a 21 x 21 anisotropic
// kernel over three 512 x 512 planes, on one goroutine.
func BenchmarkBlur21(b *testing.B) {
	defer parallel.SetThreads(parallel.SetThreads(1))
	pix := testPlanes(512, 512, 3, 1)
	p := KernelParams{Type: KernelAniso, Size: 21, SigmaX: 2, SigmaY: 1, Theta: 0.5}
	for b.Loop() {
		filter(pix, 512, 512, 3, p)
	}
}
