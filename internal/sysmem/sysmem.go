// Package sysmem reports how much memory the machine can give a process,
// so commands that need gigabytes (SD3-medium in float32) refuse up front
// with a clear message instead of being killed halfway.
package sysmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Available returns the memory this process may still take: the kernel's
// estimate of memory available without swapping (Linux MemAvailable),
// bounded by a cgroup v2 limit (a container's memory.max less its
// memory.current), and false where neither can be read (other systems):
// callers then skip their check.
func Available() (uint64, bool) {
	avail, ok := uint64(0), false
	if f, err := os.Open("/proc/meminfo"); err == nil {
		avail, ok = parseMemAvailable(bufio.NewScanner(f))
		f.Close()
	}
	if limit, err := readUint("/sys/fs/cgroup/memory.max"); err == nil { // "max": no limit
		used, _ := readUint("/sys/fs/cgroup/memory.current")
		free := uint64(1)
		if limit > used {
			free = limit - used
		}
		if !ok || free < avail {
			avail, ok = free, true
		}
	}
	return avail, ok
}

// AvailableBytes is Available as a signed count, 0 when unknown.
func AvailableBytes() int64 {
	v, ok := Available()
	if !ok {
		return 0
	}
	return int64(min(v, 1<<62))
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// ParseBytes reads a size such as 1500000, 512MB, 2GiB or 1.5G (decimal
// units for B/KB/MB/GB, binary for KiB/MiB/GiB and the bare K/M/G).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q (e.g. 1500000, 512MB, 2GiB)", s)
	}
	return int64(v * mult), nil
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
