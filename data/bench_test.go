package data

import (
	"context"
	"os"
	"testing"

	"tsdsr/degrade"
)

// BenchmarkLoader512 measures the loader's throughput on real photos: one
// op is one 512 -> 128 pair, built by parallel.Threads() workers in
// batches of 4. Photos come from TSDSR_BENCH_PHOTOS (default
// ../shared/data/train); the first epoch's decodes are included.
func BenchmarkLoader512(b *testing.B) {
	dir := os.Getenv("TSDSR_BENCH_PHOTOS")
	if dir == "" {
		dir = "../../shared/data/train"
	}
	ph, err := OpenDir(dir, 0)
	if err != nil {
		b.Skip(err)
	}
	l, err := NewLoader(context.Background(), ph, Config{Batch: 4, Seed: 1, Options: degrade.DefaultOptions()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i += 4 {
		if _, err := l.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
