package imageio

import (
	"path/filepath"
	"testing"
)

// bench512 returns a 512x512 RGB PNG from the RealSR set, or writes a
// synthetic one when the shared data is absent.
func bench512(b testing.TB) string {
	if m, _ := filepath.Glob("../../shared/data/realsr/HR/*.png"); len(m) > 0 {
		return m[0]
	}
	img := NewImage(512, 512, 3)
	for i := range img.Pix {
		img.Pix[i] = float32(i%251) / 250
	}
	path := filepath.Join(b.TempDir(), "bench.png")
	if err := WriteFile(path, img, nil); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkReadFile512PNG(b *testing.B) {
	path := bench512(b)
	for b.Loop() {
		if _, err := ReadFile(path, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteFile512PNG(b *testing.B) {
	m, err := ReadFile(bench512(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.png")
	for b.Loop() {
		if err := WriteFile(out, m, nil); err != nil {
			b.Fatal(err)
		}
	}
}
