package sr

import (
	"math"
	"testing"
)

func TestOfficialWorkingSize(t *testing.T) {
	for _, c := range []struct{ w, h, ww, wh int }{
		{200, 136, 800, 544}, // 4x, multiples of 8
		{56, 40, 712, 512},   // short side 40 -> 128: 179x128, x4 = 716x512, down to 712
		{129, 136, 512, 544}, // 516 rounded down to 512
		{128, 128, 512, 512},
		{127, 300, 512, 1208}, // 302.36 truncated to 302
		{1, 1, 512, 512},
		{1000, 130, 4000, 520},
	} {
		if ww, wh := OfficialWorkingSize(c.w, c.h); ww != c.ww || wh != c.wh {
			t.Errorf("%dx%d: working size %dx%d, want %dx%d", c.w, c.h, ww, wh, c.ww, c.wh)
		}
	}
}

// TestPILBicubic checks Pillow's resampling rules: constants and linear
// ramps are kept (the normalised cubic reproduces both away from the
// border), a 2x downscale averages with the stretched kernel, and the
// hand-computed weights of one output sample.
func TestPILBicubic(t *testing.T) {
	const w, h = 24, 10
	ramp := make([]float32, w*h)
	for y := range h {
		for x := range w {
			ramp[y*w+x] = float32(x) + 0.5*float32(y)
		}
	}
	for _, sz := range [][2]int{{w, h}, {7, 3}, {53, 29}, {24, 5}} {
		out := PILBicubic(ramp, w, h, sz[0], sz[1])
		sx, sy := float64(w)/float64(sz[0]), float64(h)/float64(sz[1])
		for y := range sz[1] {
			for x := range sz[0] {
				// Interior samples (taps inside the plane) reproduce the ramp
				// at the sample centre.
				cx, cy := (float64(x)+0.5)*sx-0.5, (float64(y)+0.5)*sy-0.5
				if cx < 2*max(sx, 1)+1 || cx > float64(w)-2*max(sx, 1)-2 || cy < 2*max(sy, 1)+1 || cy > float64(h)-2*max(sy, 1)-2 {
					continue
				}
				if d := math.Abs(float64(out[y*sz[0]+x]) - (cx + 0.5*cy)); d > 1e-4 {
					t.Fatalf("%v (%d, %d): %v, want %v", sz, x, y, out[y*sz[0]+x], cx+0.5*cy)
				}
			}
		}
	}
	// Upscaling 4 -> 8 in one dimension: output 3 is centred at 1.75, taps
	// at -0.25+... : weights cubic(x + 0.5 - 1.75) for x = 0..3, a = -0.5.
	src := []float32{1, 2, 4, 8}
	got := PILBicubic(src, 4, 1, 8, 1)[3]
	var want, sum float64
	for x := range 4 {
		c := pilCubic(float64(x) + 0.5 - 1.75)
		want += c * float64(src[x])
		sum += c
	}
	if want /= sum; math.Abs(float64(got)-want) > 1e-6 {
		t.Errorf("4 -> 8 sample 3: %v, want %v", got, want)
	}
	if pilCubic(0) != 1 || pilCubic(1) != 0 || pilCubic(2) != 0 || pilCubic(0.5) != 0.5625 {
		t.Errorf("cubic a=-0.5: %v %v %v %v", pilCubic(0), pilCubic(1), pilCubic(2), pilCubic(0.5))
	}
}

// TestOfficialGaussian: the script's weights peak at row n/2 but column
// (n-1)/2, the built-in students' at (n-1)/2 in both.
func TestOfficialGaussian(t *testing.T) {
	n := 64
	rows, cols := gaussian(n, float64(n)/2), gaussian(n, float64(n-1)/2)
	if rows[32] <= rows[31] || cols[31] != cols[32] {
		t.Errorf("row peak %v %v, columns symmetric %v %v", rows[31], rows[32], cols[31], cols[32])
	}
}
