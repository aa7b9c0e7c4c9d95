package benchutil

import "tsdsr/internal/sysmem"

// PeakRSS returns the process's peak resident set size in bytes (Linux), or -1.
func PeakRSS() float64 {
	rss, err := sysmem.PeakRSS()
	if err != nil {
		return -1
	}
	return float64(rss)
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux >= 4.0), so each
// benchmark reports its own peak; it reports whether that worked.
func ResetPeakRSS() bool { return sysmem.ResetPeakRSS() }
