package sysmem

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// PeakRSS returns the process's high-water resident set size in bytes
// (Linux VmHWM); elsewhere it returns an error. It is the one reader of
// peak RSS for the commands and the benchmarks.
func PeakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parsePeakRSS(bufio.NewScanner(f))
}

func parsePeakRSS(s *bufio.Scanner) (int64, error) {
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("sysmem: VmHWM not found")
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux >= 4.0), so that a
// later PeakRSS measures from now; it reports whether that worked.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}
