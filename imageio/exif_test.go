package imageio

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// exifSegment builds an APP1 Exif segment whose IFD0 holds an unrelated tag
// (ImageDescription offset) and then the orientation, in the given byte
// order.
func exifSegment(bo binary.ByteOrder, orientation uint16) []byte {
	var t bytes.Buffer
	if bo == binary.LittleEndian {
		t.WriteString("II")
	} else {
		t.WriteString("MM")
	}
	var b2 [2]byte
	var b4 [4]byte
	put16 := func(v uint16) { bo.PutUint16(b2[:], v); t.Write(b2[:]) }
	put32 := func(v uint32) { bo.PutUint32(b4[:], v); t.Write(b4[:]) }
	put16(42)
	put32(8) // IFD0 right after the header
	put16(2) // two entries
	put16(0x010e)
	put16(2) // ASCII
	put32(4)
	put32(0)
	put16(0x0112)
	put16(3) // SHORT
	put32(1)
	put16(orientation)
	put16(0)
	put32(0) // no next IFD
	payload := append([]byte("Exif\x00\x00"), t.Bytes()...)
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

var (
	red   = color.RGBA{255, 0, 0, 255}
	green = color.RGBA{0, 255, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	white = color.RGBA{255, 255, 255, 255}
)

// quadrantJPEG encodes a 32x16 image whose quadrants are red (top left),
// green (top right), blue (bottom left) and white, then inserts app after
// SOI.
func quadrantJPEG(t testing.TB, app []byte) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 32, 16))
	for y := range 16 {
		for x := range 32 {
			c := [2][2]color.RGBA{{red, green}, {blue, white}}[y/8][x/16]
			img.SetRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	return append(append(append([]byte(nil), data[:2]...), app...), data[2:]...)
}

// TestEXIFOrientation checks all eight orientations against the EXIF
// definitions ("the 0th row is the visual ...") written out as where each
// stored quadrant must appear: displayed top-left, top-right, bottom-left,
// bottom-right.
func TestEXIFOrientation(t *testing.T) {
	want := map[uint16]struct {
		w, h int
		q    [4]color.RGBA
	}{
		1: {32, 16, [4]color.RGBA{red, green, blue, white}},
		2: {32, 16, [4]color.RGBA{green, red, white, blue}}, // mirrored left-right
		3: {32, 16, [4]color.RGBA{white, blue, green, red}}, // rotated 180
		4: {32, 16, [4]color.RGBA{blue, white, red, green}}, // mirrored top-bottom
		5: {16, 32, [4]color.RGBA{red, blue, green, white}}, // transposed
		6: {16, 32, [4]color.RGBA{blue, red, white, green}}, // rotated 90 clockwise
		7: {16, 32, [4]color.RGBA{white, green, blue, red}}, // transverse
		8: {16, 32, [4]color.RGBA{green, white, red, blue}}, // rotated 90 counter-clockwise
	}
	for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for o, w := range want {
			m, err := Decode(bytes.NewReader(quadrantJPEG(t, exifSegment(bo, o))), nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Width != w.w || m.Height != w.h {
				t.Fatalf("%v orientation %d: %dx%d, want %dx%d", bo, o, m.Width, m.Height, w.w, w.h)
			}
			// Sample each displayed quadrant's centre.
			pts := [4][2]int{{w.w / 4, w.h / 4}, {3 * w.w / 4, w.h / 4}, {w.w / 4, 3 * w.h / 4}, {3 * w.w / 4, 3 * w.h / 4}}
			for k, p := range pts {
				i := p[1]*m.Width + p[0]
				got := [3]float32{m.Plane(0)[i], m.Plane(1)[i], m.Plane(2)[i]}
				c := w.q[k]
				for ch, v := range [3]uint8{c.R, c.G, c.B} {
					if d := got[ch] - float32(v)/255; d > 0.1 || d < -0.1 {
						t.Fatalf("%v orientation %d quadrant %d: got %v, want %v", bo, o, k, got, c)
					}
				}
			}
		}
	}
}

func TestJPEGOrientationParsing(t *testing.T) {
	seg := exifSegment(binary.BigEndian, 6)
	cases := []struct {
		name string
		data []byte
		want int
	}{
		{"no exif", []byte{0xff, 0xd8, 0xff, 0xd9}, 1},
		{"exif", append([]byte{0xff, 0xd8}, seg...), 6},
		{"after APP0", append([]byte{0xff, 0xd8, 0xff, 0xe0, 0, 4, 'J', 'F'}, seg...), 6},
		{"truncated segment", append([]byte{0xff, 0xd8}, seg[:len(seg)-4]...), 1},
		{"bad orientation", append([]byte{0xff, 0xd8}, exifSegment(binary.LittleEndian, 9)...), 1},
		{"after SOS", append([]byte{0xff, 0xd8, 0xff, 0xda, 0, 2}, seg...), 1},
		{"garbage", []byte{0xff, 0xd8, 1, 2, 3, 4, 5}, 1},
	}
	for _, c := range cases {
		if got := jpegOrientation(c.data); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// TestOrientKeepsPlanes checks that alpha and gray planes follow the pixels.
func TestOrientKeepsPlanes(t *testing.T) {
	m := NewImage(3, 2, 1)
	m.Alpha = make([]float32, 6)
	for i := range 6 {
		m.Pix[i], m.Alpha[i] = float32(i), float32(10+i)
	}
	r := orient(m, 6) // rotate 90 clockwise: 2x3
	// Stored rows [0 1 2] [3 4 5] rotated clockwise read [3 0] [4 1] [5 2].
	want := []float32{3, 0, 4, 1, 5, 2}
	for i, v := range want {
		if r.Pix[i] != v || r.Alpha[i] != v+10 {
			t.Fatalf("rotated %v alpha %v, want %v", r.Pix, r.Alpha, want)
		}
	}
	if r.Width != 2 || r.Height != 3 || r.Channels != 1 {
		t.Fatalf("%dx%dx%d", r.Width, r.Height, r.Channels)
	}
}
