// Package sysmem reports how much memory the machine can give a process,
// so commands that need gigabytes (SD3-medium in float32) refuse up front
// with a clear message instead of being killed halfway.
package sysmem

import (
	"bufio"
	"fmt"
	"os"
)

// Available returns the kernel's estimate of memory available to new
// allocations without swapping (Linux MemAvailable), and false where it
// cannot be read (other systems): callers then skip their check.
func Available() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return parseMemAvailable(bufio.NewScanner(f))
}

func parseMemAvailable(s *bufio.Scanner) (uint64, bool) { return parseKB(s, "MemAvailable:") }

// Check returns an error describing the shortfall when need bytes exceed
// the available memory; what names the job, detail explains the need.
func Check(need uint64, what, detail string) error {
	avail, ok := Available()
	if !ok || need <= avail {
		return nil
	}
	return fmt.Errorf("%s needs about %s of memory (%s); this machine has %s available", what, GB(need), detail, GB(avail))
}

// GB formats a byte count in gigabytes (or megabytes below one).
func GB(b uint64) string {
	if b < 1<<30 {
		return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
}
