package main

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"tsdsr/internal/golden"
)

// TestUpscaleSD3Golden runs `tsdsr upscale --sd3` on the three golden
// inputs (a 4x case, a small input the script enlarges to a 512 short
// side and resizes back, and one whose 4x width is not a multiple of 8)
// with each colour fix, and requires the PNG to be within 45 dB PSNR of
// the script's PNG. The remaining difference is on purpose: tsdsr rounds
// to 8 bits once, at the end, where the script truncates after decoding
// and again after the colour fix.
func TestUpscaleSD3Golden(t *testing.T) {
	sd3Golden := golden.SD3(t) // TSD-SR's own test/test_tsdsr.py on a tiny SD3-layout model
	dir := t.TempDir()
	for _, c := range []string{"A", "B", "C"} {
		for _, fix := range []string{"nofix", "wavelet", "adain"} {
			in := filepath.Join(sd3Golden, "pipeline", c+".lr.png")
			out := filepath.Join(dir, c+"."+fix+".png")
			cf := map[string]string{"nofix": "none"}[fix]
			if cf == "" {
				cf = fix
			}
			err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet", "--sd3", sd3Golden,
				"--lora", filepath.Join(sd3Golden, "lora"), "--embeds", filepath.Join(sd3Golden, "embeds"), "--color-fix", cf})
			if err != nil {
				t.Fatalf("%s %s: %v", c, fix, err)
			}
			got, want := read(t, out), read(t, filepath.Join(sd3Golden, "pipeline", c+"."+fix+".png"))
			if got.Width != want.Width || got.Height != want.Height || got.Channels != want.Channels {
				t.Fatalf("%s %s: %dx%dx%d, script's %dx%dx%d", c, fix, got.Width, got.Height, got.Channels, want.Width, want.Height, want.Channels)
			}
			var se, worst float64
			for i, v := range want.Pix {
				d := 255 * float64(got.Pix[i]-v)
				se += d * d
				worst = max(worst, math.Abs(d))
			}
			psnr := 10 * math.Log10(255*255/(se/float64(len(want.Pix))))
			t.Logf("%s %-7s %dx%d: PSNR %.1f dB, max |diff| %.0f", c, fix, got.Width, got.Height, psnr, worst)
			if psnr < 45 {
				t.Errorf("%s %s: PSNR %.1f dB < 45 against the script's PNG", c, fix, psnr)
			}
		}
	}
}
