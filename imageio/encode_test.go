package imageio

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuantizeExact(t *testing.T) {
	for k := range 256 {
		if q := Quantize8(float32(k) / 255); int(q) != k {
			t.Fatalf("Quantize8(%d/255) = %d", k, q)
		}
		if k < 255 {
			if q := Quantize8((float32(k) + 0.49) / 255); int(q) != k {
				t.Fatalf("Quantize8(%d.49/255) = %d", k, q)
			}
			if q := Quantize8((float32(k) + 0.51) / 255); int(q) != k+1 {
				t.Fatalf("Quantize8(%d.51/255) = %d", k, q)
			}
		}
	}
	for k := range 65536 {
		if q := Quantize16(float32(k) / 65535); int(q) != k {
			t.Fatalf("Quantize16(%d/65535) = %d", k, q)
		}
	}
	nan := float32(math.NaN())
	for _, c := range []struct {
		v    float32
		want uint8
	}{{-0.5, 0}, {nan, 0}, {1.5, 255}, {float32(math.Inf(1)), 255}, {0.5, 128}} {
		if q := Quantize8(c.v); q != c.want {
			t.Errorf("Quantize8(%v) = %d, want %d", c.v, q, c.want)
		}
	}
	if Quantize16(-1) != 0 || Quantize16(nan) != 0 || Quantize16(2) != 65535 {
		t.Error("Quantize16 does not clamp")
	}
}

func TestEncodeOptions(t *testing.T) {
	m := NewImage(8, 8, 3)
	m.BitDepth = 16
	m.Alpha = make([]float32, 64)
	for i := range m.Pix {
		m.Pix[i] = float32(i%97) / 96
	}
	for i := range m.Alpha {
		m.Alpha[i] = float32(i) / 63
	}
	dec := func(b *bytes.Buffer) *Image {
		t.Helper()
		r, err := Decode(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var b bytes.Buffer
	if err := Encode(&b, m, &EncodeOptions{BitDepth: 8}); err != nil {
		t.Fatal(err)
	}
	if r := dec(&b); r.BitDepth != 8 || r.Alpha == nil {
		t.Errorf("BitDepth 8: got depth %d alpha %v", r.BitDepth, r.Alpha != nil)
	}
	b.Reset()
	if err := Encode(&b, m, &EncodeOptions{Format: "jpeg"}); err != nil {
		t.Fatal(err)
	}
	if r := dec(&b); r.BitDepth != 8 || r.Alpha != nil || r.Channels != 3 {
		t.Errorf("JPEG: depth %d alpha %v ch %d", r.BitDepth, r.Alpha != nil, r.Channels)
	}
	b.Reset()
	if err := Encode(&b, m, &EncodeOptions{PNGLevel: 9}); err != nil {
		t.Fatal(err)
	}
	if r := dec(&b); r.BitDepth != 16 || r.Alpha == nil || Quantize16(r.Alpha[50]) != Quantize16(m.Alpha[50]) {
		t.Errorf("PNGLevel 9: depth %d, alpha lost or changed", r.BitDepth)
	}
	for _, o := range []*EncodeOptions{{Format: "gif"}, {BitDepth: 12}, {Format: "jpeg", Quality: 101}, {PNGLevel: 10}} {
		if err := Encode(&b, m, o); err == nil {
			t.Errorf("%+v: no error", *o)
		}
	}
	if err := Encode(&b, &Image{Width: 2, Height: 2, Channels: 2, Pix: make([]float32, 8)}, nil); err == nil {
		t.Error("2-channel image encoded")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.png")
	m := NewImage(4, 4, 1)
	if err := WriteFile(path, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	// Failures must leave the existing file and no temporary file behind.
	bad := &Image{Width: 4, Height: 4, Channels: 3, Pix: make([]float32, 5), BitDepth: 8}
	if err := WriteFile(path, bad, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("invalid image: err = %v, want one naming %s", err, path)
	}
	if err := WriteFile(path, m, &EncodeOptions{BitDepth: 3}); err == nil {
		t.Fatal("bit depth 3 accepted")
	}
	if err := WriteFile(filepath.Join(dir, "out.gif"), m, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("gif: %v", err)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir.png"), m, nil); err == nil {
		t.Fatal("missing directory accepted")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("failed write changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only out.png", names)
	}

	// A successful overwrite replaces content and keeps the file's mode.
	m.Pix[0] = 1
	if err := WriteFile(path, m, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	r, err := ReadFile(path, nil)
	if err != nil || r.Pix[0] != 1 {
		t.Fatalf("overwrite: %v", err)
	}
	// Format comes from the extension, case-insensitively.
	jp := filepath.Join(dir, "x.JPEG")
	if err := WriteFile(jp, m, nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(jp); sniff(data) != "jpeg" {
		t.Errorf(".JPEG written as %q", sniff(data))
	}
}

// TestToStdImage checks the Go types chosen and that FromStdImage inverts
// ToStdImage exactly.
func TestToStdImage(t *testing.T) {
	for _, c := range []struct {
		ch, depth int
		alpha     bool
		typ       string
	}{
		{1, 8, false, "*image.Gray"},
		{1, 16, false, "*image.Gray16"},
		{3, 8, false, "*image.NRGBA"},
		{3, 16, true, "*image.NRGBA64"},
		{1, 8, true, "*image.NRGBA"},
	} {
		m := NewImage(3, 2, c.ch)
		m.BitDepth = c.depth
		for i := range m.Pix {
			m.Pix[i] = float32(i*40%256) / 255
		}
		if c.alpha {
			m.Alpha = []float32{0, 0.2, 0.4, 0.6, 0.8, 1}
		}
		s := m.ToStdImage()
		if got := typeName(s); got != c.typ {
			t.Errorf("%+v: %s, want %s", c, got, c.typ)
			continue
		}
		back := FromStdImage(s)
		if c.ch == 1 && c.alpha { // gray+alpha comes back as RGBA from a Go image
			if back.Channels != 3 || firstDiff(back.Plane(1), m.Pix) >= 0 {
				t.Errorf("gray+alpha: %+v", back)
			}
			continue
		}
		if c.ch == 3 && !c.alpha { // opaque NRGBA keeps an all-one alpha plane
			back.Alpha = nil
		}
		if back.BitDepth != c.depth {
			t.Errorf("%+v: depth %d", c, back.BitDepth)
		}
		if c.depth == 8 {
			assertSame(t, m, back)
		} else if d := meanAbsDiff(m.Pix, back.Pix); d > 1e-7 {
			t.Errorf("%+v: mean abs diff %g", c, d)
		}
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
