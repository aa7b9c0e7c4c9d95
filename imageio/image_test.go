package imageio

import "testing"

func TestRGB(t *testing.T) {
	gray := &Image{Width: 2, Height: 1, Channels: 1, Pix: []float32{0.25, 0.75}}
	got := gray.RGB()
	want := []float32{0.25, 0.75, 0.25, 0.75, 0.25, 0.75}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("gray RGB = %v, want %v", got, want)
		}
	}
	rgb := NewImage(2, 1, 3)
	if p := rgb.RGB(); &p[0] != &rgb.Pix[0] || len(p) != 6 {
		t.Error("a colour image's RGB is not its own planes")
	}
}
