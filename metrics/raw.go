package metrics

import "math"

// RawPSNR is the PSNR in dB (peak 1) of a against b over every float value
// as it is, without 8-bit rounding or a colour conversion: the measure of
// model outputs that are not images yet (decoded latents, for example).
func RawPSNR(a, b []float32) float64 {
	var se float64
	for j, v := range a {
		d := float64(v - b[j])
		se += d * d
	}
	return 10 * math.Log10(float64(len(a))/max(se, 1e-20))
}
