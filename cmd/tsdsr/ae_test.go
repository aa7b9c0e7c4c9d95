package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/imageio"
)

// TestAERoundTripAndEncodeDecode runs the ae command on a gray JPEG of a
// size not divisible by 8: the outputs keep the input size, and
// encode+decode gives the same pixels as roundtrip.
func TestAERoundTripAndEncodeDecode(t *testing.T) {
	src := "../../../shared/data/real-lr/edge-cases/wolf_gray.jpg"
	if _, err := os.Stat(src); err != nil {
		t.Skip("no ../shared data")
	}
	m, err := imageio.ReadFile(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	rt, lat, dec := filepath.Join(dir, "rt.png"), filepath.Join(dir, "z.safetensors"), filepath.Join(dir, "dec.png")
	for _, args := range [][]string{
		{"roundtrip", "-i", src, "-o", rt},
		{"encode", "-i", src, "-o", lat},
		{"decode", "-i", lat, "-o", dec},
	} {
		if err := runAE(ctx, args); err != nil {
			t.Fatalf("ae %v: %v", args, err)
		}
	}
	a, err := imageio.ReadFile(rt, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := imageio.ReadFile(dec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Width != m.Width || a.Height != m.Height || b.Width != m.Width || b.Height != m.Height {
		t.Fatalf("sizes: in %dx%d, roundtrip %dx%d, decode %dx%d", m.Width, m.Height, a.Width, a.Height, b.Width, b.Height)
	}
	for i := range a.Pix {
		if a.Pix[i] != b.Pix[i] {
			t.Fatal("encode+decode differs from roundtrip")
		}
	}
	if err := runAE(ctx, []string{"roundtrip", "-i", src, "-o", src}); err == nil {
		t.Fatal("ae overwrote its input")
	}
}
