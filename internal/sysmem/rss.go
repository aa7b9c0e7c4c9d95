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
	kb, ok := parseKB(s, "VmHWM:")
	if !ok {
		return 0, errors.New("sysmem: VmHWM not found")
	}
	return int64(kb), nil
}

// parseKB finds the line "key N kB" of a /proc file and returns N KiB in
// bytes.
func parseKB(s *bufio.Scanner, key string) (uint64, bool) {
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), key)
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux >= 4.0), so that a
// later PeakRSS measures from now; it reports whether that worked.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}
