package metrics

import (
	"math"
	"path/filepath"
	"testing"

	"tsdsr/imageio"
)

// TestGrid: a photograph scores near zero, the same photograph with a
// faint 16-pixel blockiness (what the first pixel-GAN students drew)
// scores well above it at any phase, and tiny images are refused.
func TestGrid(t *testing.T) {
	g, err := New("grid", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.NeedsReference() || g.HigherIsBetter() {
		t.Error("grid must be no-reference and lower-is-better")
	}
	photo, err := imageio.ReadFile(filepath.Join(realsrDir, "HR", "Nikon_010_LR4.png"), nil)
	if err != nil {
		t.Skip("RealSR not available:", err)
	}
	clean, err := g.Compute(photo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clean > 0.05 {
		t.Errorf("photograph: grid %.4f, want < 0.05", clean)
	}
	for _, phase := range []int{0, 5, 11} {
		// Each 16-pixel cell gets a constant offset of up to 4/255: steps
		// appear at the cell borders only.
		m := imageio.NewImage(photo.Width, photo.Height, 3)
		copy(m.Pix, photo.Pix)
		for c := range 3 {
			p := m.Plane(c)
			for y := range m.Height {
				for x := range m.Width {
					cell := ((y+phase)/GridPeriod)*7 + (x+phase)/GridPeriod
					p[y*m.Width+x] = min(1, max(0, p[y*m.Width+x]+float32(cell*37%9-4)/255))
				}
			}
		}
		v, err := g.Compute(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v < 2*clean {
			t.Errorf("phase %d: grid %.4f with blocks, %.4f without", phase, v, clean)
		}
		if testing.Verbose() {
			t.Logf("phase %d: grid %.4f with blocks, %.4f without", phase, v, clean)
		}
		// Crops move the phase, not the amplitude.
		c, _ := New("grid", Options{Crop: 3})
		vc, err := c.Compute(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(vc-v) > 0.2*v {
			t.Errorf("phase %d: grid %.4f, %.4f after a 3-pixel crop", phase, v, vc)
		}
	}
	if _, err := g.Compute(imageio.NewImage(20, 40, 3), nil); err == nil {
		t.Error("a 20x40 image accepted")
	}
	if v, err := g.Compute(imageio.NewImage(64, 64, 3), nil); err != nil || v != 0 {
		t.Errorf("flat image: %v, %v; want 0", v, err)
	}
}
