package sysmem

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseMemAvailable(t *testing.T) {
	in := "MemTotal:       24597684 kB\nMemFree:        22000000 kB\nMemAvailable:   23500000 kB\n"
	got, ok := parseMemAvailable(bufio.NewScanner(strings.NewReader(in)))
	if !ok || got != 23500000<<10 {
		t.Fatalf("got %d, %v", got, ok)
	}
	if _, ok := parseMemAvailable(bufio.NewScanner(strings.NewReader("MemTotal: 1 kB\n"))); ok {
		t.Fatal("no MemAvailable line must report unknown")
	}
}

func TestCheck(t *testing.T) {
	if err := Check(1<<20, "a tiny job", "1 MB"); err != nil {
		t.Fatal(err)
	}
	if _, ok := Available(); !ok {
		t.Skip("no /proc/meminfo")
	}
	err := Check(1<<60, "SD3-medium", "weights")
	if err == nil || !strings.Contains(err.Error(), "SD3-medium needs about 1073741824.0 GB of memory (weights); this machine has") {
		t.Fatalf("err = %v", err)
	}
}

func TestParsePeakRSS(t *testing.T) {
	got, err := parsePeakRSS(bufio.NewScanner(strings.NewReader("VmPeak:  900 kB\nVmHWM:\t  1234 kB\nVmRSS: 1000 kB\n")))
	if err != nil || got != 1234<<10 {
		t.Fatalf("got %d, %v", got, err)
	}
	if _, err := parsePeakRSS(bufio.NewScanner(strings.NewReader("VmRSS: 1 kB\n"))); err == nil {
		t.Fatal("no VmHWM line must be an error")
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"1500000": 1500000, "512MB": 512e6, "2GiB": 2 << 30, "1.5G": 3 << 29, "64k": 64 << 10} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1", "lots", "1TB"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
	}
}
