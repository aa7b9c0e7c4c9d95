package imageio

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must never panic, and an
// image it accepts must be valid and within the pixel limit. Run it with
// `go test -fuzz=FuzzDecode ./imageio`; as a plain test it checks the seeds.
func FuzzDecode(f *testing.F) {
	r := image.Rect(0, 0, 7, 5)
	rgba := image.NewNRGBA(r)
	g16 := image.NewGray16(r)
	pal := image.NewPaletted(r, color.Palette{color.NRGBA{1, 2, 3, 4}, color.Gray{200}})
	for i := range rgba.Pix {
		rgba.Pix[i] = byte(i * 13)
	}
	for i := range g16.Pix {
		g16.Pix[i] = byte(i * 29)
	}
	for i := range pal.Pix {
		pal.Pix[i] = byte(i % 2)
	}
	var seeds [][]byte
	add := func(enc func(*bytes.Buffer) error) {
		var b bytes.Buffer
		if err := enc(&b); err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b.Bytes())
	}
	for _, img := range []image.Image{rgba, g16, pal} {
		add(func(b *bytes.Buffer) error { return png.Encode(b, img) })
		add(func(b *bytes.Buffer) error { return tiff.Encode(b, img, nil) })
	}
	add(func(b *bytes.Buffer) error { return jpeg.Encode(b, rgba, nil) })
	add(func(b *bytes.Buffer) error { return bmp.Encode(b, rgba) })
	add(func(b *bytes.Buffer) error { return gif.Encode(b, pal, nil) })
	gray := NewImage(3, 3, 1)
	gray.Alpha = make([]float32, 9)
	add(func(b *bytes.Buffer) error { return Encode(b, gray, nil) })
	seeds = append(seeds, quadrantJPEG(f, exifSegment(binary.LittleEndian, 6)))
	if data, err := os.ReadFile(filepath.Join("testdata", "gopher-doc.1bpp.lossless.webp")); err == nil {
		seeds = append(seeds, data)
	}
	seeds = append(seeds, pngHeader(100000, 100000), jpegHeader(65535, 65535))
	for _, s := range seeds[:len(seeds):len(seeds)] {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(bytes.NewReader(data), &DecodeOptions{MaxPixels: limit})
		if err != nil {
			if m != nil {
				t.Fatal("image returned with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if m.Width*m.Height > limit {
			t.Fatalf("%dx%d exceeds the limit", m.Width, m.Height)
		}
		if m.BitDepth != 8 && m.BitDepth != 16 {
			t.Fatalf("bit depth %d", m.BitDepth)
		}
	})
}
