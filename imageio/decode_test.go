package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

const edgeDir = "../../shared/data/real-lr/edge-cases"

func TestEdgeCases(t *testing.T) {
	if _, err := os.Stat(edgeDir); err != nil {
		t.Skip("shared data not available:", err)
	}
	cases := []struct {
		file     string
		w, h, ch int
		alpha    bool
		depth    int
	}{
		{"00003.png", 512, 256, 3, false, 8},
		{"00017_gray.png", 500, 351, 1, false, 8},
		{"0014.jpg", 179, 179, 3, false, 8},
		{"OST_009.png", 448, 640, 3, false, 8},
		{"children-alpha.png", 566, 350, 3, true, 8},
		{"tree_alpha_16bit.png", 342, 256, 3, true, 16},
		{"wolf_gray.jpg", 236, 236, 1, false, 8},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(edgeDir, c.file)
			m, err := ReadFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Width != c.w || m.Height != c.h || m.Channels != c.ch || (m.Alpha != nil) != c.alpha || m.BitDepth != c.depth {
				t.Fatalf("got %dx%d ch=%d alpha=%v depth=%d, want %dx%d ch=%d alpha=%v depth=%d",
					m.Width, m.Height, m.Channels, m.Alpha != nil, m.BitDepth, c.w, c.h, c.ch, c.alpha, c.depth)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			checkAgainstStd(t, path, m)

			// PNG round trip: bit-exact, same shape, whatever the source.
			dir := t.TempDir()
			out := filepath.Join(dir, "out.png")
			if err := WriteFile(out, m, nil); err != nil {
				t.Fatal(err)
			}
			back, err := ReadFile(out, nil)
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, m, back)

			// JPEG round trip keeps gray-ness and drops alpha.
			outj := filepath.Join(dir, "out.jpg")
			if err := WriteFile(outj, m, &EncodeOptions{Quality: 98}); err != nil {
				t.Fatal(err)
			}
			bj, err := ReadFile(outj, nil)
			if err != nil {
				t.Fatal(err)
			}
			if bj.Channels != m.Channels || bj.Alpha != nil || bj.BitDepth != 8 {
				t.Fatalf("JPEG round trip: ch=%d alpha=%v depth=%d", bj.Channels, bj.Alpha != nil, bj.BitDepth)
			}
			if d := meanAbsDiff(m.Pix, bj.Pix); d > 0.05 { // 4:2:0 chroma on fine texture
				t.Fatalf("JPEG round trip mean abs diff %.4f", d)
			}
		})
	}
}

// checkAgainstStd compares m with the standard library's decoding of path,
// sample by sample: values must be exactly v/255 or v/65535 (straight alpha).
func checkAgainstStd(t *testing.T, path string, m *Image) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	n := m.Width * m.Height
	for y := 0; y < m.Height; y += 7 {
		for x := 0; x < m.Width; x += 5 {
			var c color.NRGBA64
			switch s := img.(type) { // straight alpha: keep colour under alpha 0
			case *image.NRGBA:
				p := s.NRGBAAt(x, y)
				c = color.NRGBA64{uint16(p.R) * 0x101, uint16(p.G) * 0x101, uint16(p.B) * 0x101, uint16(p.A) * 0x101}
			case *image.NRGBA64:
				c = s.NRGBA64At(x, y)
			default:
				c = color.NRGBA64Model.Convert(img.At(x, y)).(color.NRGBA64)
			}
			want := [4]uint16{c.R, c.G, c.B, c.A}
			i := y*m.Width + x
			for k := range 4 {
				var got float32
				switch {
				case k == 3 && m.Alpha == nil:
					continue
				case k == 3:
					got = m.Alpha[i]
				case m.Channels == 1:
					got = m.Pix[i]
				default:
					got = m.Pix[k*n+i]
				}
				var exp float32
				if m.BitDepth == 16 {
					exp = float32(want[k]) / 65535
				} else {
					exp = float32(want[k]>>8) / 255
				}
				if got != exp {
					t.Fatalf("pixel (%d,%d) channel %d: got %v, want %v", x, y, k, got, exp)
				}
			}
		}
	}
}

func assertSame(t *testing.T, a, b *Image) {
	t.Helper()
	if a.Width != b.Width || a.Height != b.Height || a.Channels != b.Channels || a.BitDepth != b.BitDepth || (a.Alpha == nil) != (b.Alpha == nil) {
		t.Fatalf("shape changed: %dx%d ch=%d depth=%d alpha=%v -> %dx%d ch=%d depth=%d alpha=%v",
			a.Width, a.Height, a.Channels, a.BitDepth, a.Alpha != nil, b.Width, b.Height, b.Channels, b.BitDepth, b.Alpha != nil)
	}
	if i := firstDiff(a.Pix, b.Pix); i >= 0 {
		t.Fatalf("sample %d: %v -> %v", i, a.Pix[i], b.Pix[i])
	}
	if i := firstDiff(a.Alpha, b.Alpha); i >= 0 {
		t.Fatalf("alpha %d: %v -> %v", i, a.Alpha[i], b.Alpha[i])
	}
}

func firstDiff(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func meanAbsDiff(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		d := float64(a[i] - b[i])
		if d < 0 {
			d = -d
		}
		s += d
	}
	return s / float64(len(a))
}

// encodeStd encodes img with the standard PNG encoder.
func encodeStd(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPNGKinds(t *testing.T) {
	r := image.Rect(0, 0, 5, 3)
	g8 := image.NewGray(r)
	g16 := image.NewGray16(r)
	rgb := image.NewRGBA(r)
	rgba := image.NewNRGBA(r)
	rgba64 := image.NewNRGBA64(r)
	for i := range 15 {
		g8.Pix[i] = byte(17 * i)
		g16.Pix[2*i], g16.Pix[2*i+1] = byte(i), byte(250-i)
		for k := range 4 {
			rgb.Pix[4*i+k] = byte(40*k + i)
			rgba.Pix[4*i+k] = byte(60*k + 3*i)
		}
		rgb.Pix[4*i+3] = 255
		for k := range 8 {
			rgba64.Pix[8*i+k] = byte(31*k + 7*i)
		}
	}
	pal := image.NewPaletted(r, color.Palette{color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 128}, color.NRGBA{9, 9, 9, 0}})
	grayPal := image.NewPaletted(r, color.Palette{color.Gray{0}, color.Gray{100}, color.Gray{255}})
	for i := range 15 {
		pal.Pix[i], grayPal.Pix[i] = byte(i%3), byte(i%3)
	}
	cases := []struct {
		name  string
		img   image.Image
		ch    int
		alpha bool
		depth int
	}{
		{"gray8", g8, 1, false, 8},
		{"gray16", g16, 1, false, 16},
		{"rgb8", rgb, 3, false, 8},
		{"rgba8", rgba, 3, true, 8},
		{"rgba16", rgba64, 3, true, 16},
		{"paletted-trns", pal, 3, true, 8},
		{"paletted-gray", grayPal, 1, false, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(bytes.NewReader(encodeStd(t, c.img)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Channels != c.ch || (m.Alpha != nil) != c.alpha || m.BitDepth != c.depth {
				t.Fatalf("ch=%d alpha=%v depth=%d, want %d %v %d", m.Channels, m.Alpha != nil, m.BitDepth, c.ch, c.alpha, c.depth)
			}
			// Values agree with the source image.
			for y := range 3 {
				for x := range 5 {
					want := color.NRGBA64Model.Convert(c.img.At(x, y)).(color.NRGBA64)
					got := color.NRGBA64Model.Convert(m.ToStdImage().At(x, y)).(color.NRGBA64)
					if got != want {
						t.Fatalf("(%d,%d): %v, want %v", x, y, got, want)
					}
				}
			}
			var b bytes.Buffer
			if err := Encode(&b, m, nil); err != nil {
				t.Fatal(err)
			}
			back, err := Decode(&b, nil)
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, m, back)
		})
	}
}

// TestGrayAlphaPNG checks the one colour type image/png cannot write: our
// encoder's gray+alpha file must read back (through image/png) as gray with
// alpha, 8 and 16 bit.
func TestGrayAlphaPNG(t *testing.T) {
	for _, depth := range []int{8, 16} {
		m := NewImage(4, 3, 1)
		m.BitDepth = depth
		m.Alpha = make([]float32, 12)
		for i := range 12 {
			m.Pix[i] = float32(i) / 11
			m.Alpha[i] = 1 - float32(i)/22
		}
		var b bytes.Buffer
		if err := Encode(&b, m, nil); err != nil {
			t.Fatal(err)
		}
		if ct := pngColorType(b.Bytes()); ct != 4 {
			t.Fatalf("depth %d: colour type %d, want 4", depth, ct)
		}
		std, err := png.Decode(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		c := color.NRGBA64Model.Convert(std.At(3, 2)).(color.NRGBA64)
		wantA := Quantize16(0.5)
		if depth == 8 {
			wantA = uint16(Quantize8(0.5)) * 0x101
		}
		if c.R != c.G || c.G != c.B || c.R != 0xffff || c.A != wantA {
			t.Fatalf("depth %d: last pixel %v", depth, c)
		}
		back, err := Decode(&b, nil)
		if err != nil {
			t.Fatal(err)
		}
		q := &Image{Width: 4, Height: 3, Channels: 1, BitDepth: depth, Pix: make([]float32, 12), Alpha: make([]float32, 12)}
		for i := range 12 {
			if depth == 8 {
				q.Pix[i], q.Alpha[i] = float32(Quantize8(m.Pix[i]))/255, float32(Quantize8(m.Alpha[i]))/255
			} else {
				q.Pix[i], q.Alpha[i] = float32(Quantize16(m.Pix[i]))/65535, float32(Quantize16(m.Alpha[i]))/65535
			}
		}
		assertSame(t, q, back)
	}
}

func TestOtherFormats(t *testing.T) {
	cases := []struct {
		file  string
		ch    int
		alpha bool
		depth int
	}{
		{"gopher-doc.1bpp.lossless.webp", 3, false, 8},
		{"gopher-doc.with-alpha.lossless.webp", 3, true, 8},
		{"blue-purple-pink.lossy.webp", 3, false, 8},
		{"yellow_rose.lossy-with-alpha.webp", 3, true, 8},
		{"yellow_rose-small.bmp", 3, false, 8},
		{"video-001.cmyk.jpeg", 3, false, 8},
	}
	for _, c := range cases {
		m, err := ReadFile(filepath.Join("testdata", c.file), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Channels != c.ch || (m.Alpha != nil) != c.alpha || m.BitDepth != c.depth {
			t.Errorf("%s: ch=%d alpha=%v depth=%d, want %d %v %d", c.file, m.Channels, m.Alpha != nil, m.BitDepth, c.ch, c.alpha, c.depth)
		}
	}
	// The CMYK JPEG matches Go's reference decoding of it.
	cmyk, _ := ReadFile("testdata/video-001.cmyk.jpeg", nil)
	ref, err := ReadFile("testdata/video-001.cmyk.png", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := meanAbsDiff(cmyk.Pix, ref.Pix); d > 2.0/255 {
		t.Errorf("CMYK JPEG differs from reference by %.4f on average", d)
	}

	// BMP and TIFF written by x/image: 16-bit TIFF keeps its depth, BMP alpha.
	src := image.NewNRGBA64(image.Rect(0, 0, 3, 2))
	for i := range src.Pix {
		src.Pix[i] = byte(37 * i)
	}
	var tb bytes.Buffer
	if err := tiff.Encode(&tb, src, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Decode(&tb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.BitDepth != 16 || m.Alpha == nil || m.Channels != 3 {
		t.Errorf("16-bit TIFF: ch=%d alpha=%v depth=%d", m.Channels, m.Alpha != nil, m.BitDepth)
	}
	// A GIF whose only frame is smaller than its logical screen keeps the
	// screen's size: the frame sits at its offset, the rest is transparent.
	frame := image.NewPaletted(image.Rect(2, 1, 5, 3), color.Palette{color.Black, color.White})
	frame.Pix[1] = 1 // (3, 1) on the screen
	var gb bytes.Buffer
	if err := gif.EncodeAll(&gb, &gif.GIF{Image: []*image.Paletted{frame}, Delay: []int{0},
		Config: image.Config{ColorModel: frame.Palette, Width: 6, Height: 4}}); err != nil {
		t.Fatal(err)
	}
	if m, err := Decode(&gb, nil); err != nil || m.Width != 6 || m.Height != 4 || m.Channels != 1 || m.Alpha == nil {
		t.Errorf("GIF frame: %v, %+v", err, m)
	} else {
		for y := range 4 {
			for x := range 6 {
				in := x >= 2 && x < 5 && y >= 1 && y < 3
				v, a := m.Pix[y*6+x], m.Alpha[y*6+x]
				if want := map[bool]float32{true: 1, false: 0}[in]; a != want || (x == 3 && y == 1) != (v == 1) {
					t.Errorf("GIF (%d,%d): value %v alpha %v", x, y, v, a)
				}
			}
		}
	}

	g := image.NewGray(image.Rect(0, 0, 3, 2))
	var bb bytes.Buffer
	if err := bmp.Encode(&bb, g); err != nil {
		t.Fatal(err)
	}
	if m, err := Decode(&bb, nil); err != nil || m.Channels != 1 {
		t.Errorf("gray BMP: %v, %+v", err, m)
	}
}

// pngHeader returns a PNG signature and IHDR chunk declaring w x h RGB
// pixels, with valid CRCs, followed by a tiny IDAT and IEND.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write(pngSig)
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	writeChunk(&b, "IHDR", ihdr[:])
	writeChunk(&b, "IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	writeChunk(&b, "IEND", nil)
	return b.Bytes()
}

// jpegHeader returns SOI, a baseline SOF0 declaring w x h (3 components)
// and an SOS header, without entropy-coded data.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3,
		1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1}
	// SOS header: image/jpeg's config reader stops here (or at SOF after a
	// JFIF APP0).
	b = append(b, 0xff, 0xda, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0)
	return append(b, 0xff, 0xd9)
}

func TestDecompressionBomb(t *testing.T) {
	cases := map[string][]byte{
		"png 100000x100000": pngHeader(100000, 100000),
		"jpeg 65535x65535":  jpegHeader(65535, 65535),
	}
	for name, data := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err := Decode(bytes.NewReader(data), nil)
		el := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: err = %v, want ErrTooLarge", name, err)
		}
		if !strings.Contains(err.Error(), "limit") {
			t.Errorf("%s: unclear error %q", name, err)
		}
		if el > 50*time.Millisecond {
			t.Errorf("%s: took %v", name, el)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
			t.Errorf("%s: allocated %d bytes before refusing", name, a)
		}
	}
	// The limit is configurable, and the size check is strict.
	data := pngHeader(100, 100)
	if _, err := Decode(bytes.NewReader(data), &DecodeOptions{MaxPixels: 9999}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("100x100 with limit 9999: %v", err)
	}
	if _, err := Decode(bytes.NewReader(data), &DecodeOptions{MaxPixels: 10000}); errors.Is(err, ErrTooLarge) {
		t.Errorf("100x100 with limit 10000: %v", err)
	}
	// An endless stream stops at 16 bytes per allowed pixel plus 16 MiB,
	// and a file larger than that is refused from its size.
	endless := io.MultiReader(bytes.NewReader(data), zeros{})
	if _, err := Decode(endless, &DecodeOptions{MaxPixels: 10}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless input: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.png")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 32<<20); err != nil { // sparse
		t.Fatal(err)
	}
	if _, err := ReadFile(big, &DecodeOptions{MaxPixels: 10}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), big) {
		t.Errorf("32 MiB file with limit 10 pixels: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	full := encodeStd(t, img)
	var jb bytes.Buffer
	jpeg.Encode(&jb, img, nil)

	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated png", full[:len(full)/2], ErrCorrupt},
		{"png without IEND", full[:len(full)-12], ErrCorrupt},
		{"png bad crc", flip(full, 30), ErrCorrupt},
		{"truncated jpeg", jb.Bytes()[:jb.Len()/2], ErrCorrupt},
		{"jpeg header only", jpegHeader(8, 8), ErrCorrupt},
		{"empty", nil, ErrCorrupt},
		{"text", []byte("hello, world"), ErrUnsupported},
		{"zero size png", pngHeader(0, 5), ErrCorrupt},
	}
	dir := t.TempDir()
	for _, c := range cases {
		if _, err := Decode(bytes.NewReader(c.data), nil); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".img")
		os.WriteFile(path, c.data, 0o644)
		_, err := ReadFile(path, nil)
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, c.want) {
			t.Errorf("%s: ReadFile error %v should name %s and wrap %v", c.name, err, path, c.want)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.png"), nil); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("missing file: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x55
	return c
}

// TestPNGHeaderCRC guards the test helper: pngHeader must be accepted by
// image/png's config reader, so the bomb test measures our size check.
func TestPNGHeaderCRC(t *testing.T) {
	cfg, err := png.DecodeConfig(bytes.NewReader(pngHeader(100000, 100000)))
	if err != nil || cfg.Width != 100000 {
		t.Fatalf("%v %+v", err, cfg)
	}
}
