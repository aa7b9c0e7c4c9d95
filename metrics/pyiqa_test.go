package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
)

const (
	realsrDir  = "../../shared/data/realsr"
	classicDir = "../../shared/data/classic"
)

// readPNG decodes an 8-bit RGB(A) PNG to an imageio.Image holding
// float32(v)/255, the values imageio's reader produces.
func readPNG(tb testing.TB, path string) *imageio.Image {
	tb.Helper()
	m, err := decodePNG(path)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func decodePNG(path string) (*imageio.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	b := img.Bounds()
	m := imageio.NewImage(b.Dx(), b.Dy(), 3)
	n := m.Width * m.Height
	var pix []uint8
	var stride int
	switch p := img.(type) {
	case *image.RGBA:
		pix, stride = p.Pix, p.Stride
	case *image.NRGBA:
		pix, stride = p.Pix, p.Stride
	default:
		return nil, fmt.Errorf("%s: unexpected PNG type %T", path, img)
	}
	for y := range m.Height {
		for x := range m.Width {
			o := y*stride + 4*x
			for c := range 3 {
				m.Pix[c*n+y*m.Width+x] = float32(pix[o+c]) / 255
			}
		}
	}
	return m, nil
}

// logEntry is one image's line of OSEDiff's pyiqa log.
type logEntry struct {
	name             string
	psnr, ssim, niqe float64
}

var (
	logLine = regexp.MustCompile(`/([^/ ]+\.png) \| PSNR: ([0-9.]+); SSIM: ([0-9.]+);.* NIQE: ([0-9.]+);`)
	logMean = regexp.MustCompile(`^PSNR: ([0-9.]+); SSIM: ([0-9.]+);.* NIQE: ([0-9.]+);`)
)

// readLog parses the per-image lines and the average line of
// osediff-metrics.log (pyiqa 0.1.10 on CUDA).
func readLog(t *testing.T) (entries []logEntry, mean [3]float64) {
	f, err := os.Open(filepath.Join(realsrDir, "osediff-metrics.log"))
	if err != nil {
		t.Skipf("no OSEDiff log: %v", err)
	}
	defer f.Close()
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sc := bufio.NewScanner(f)
	gotMean := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := logLine.FindStringSubmatch(line); m != nil {
			entries = append(entries, logEntry{m[1], num(m[2]), num(m[3]), num(m[4])})
		} else if m := logMean.FindStringSubmatch(line); m != nil {
			mean = [3]float64{num(m[1]), num(m[2]), num(m[3])}
			gotMean = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 100 || !gotMean {
		t.Fatalf("log: %d entries, average line found: %v", len(entries), gotMean)
	}
	return entries, mean
}

// TestPyIQAAgreement checks PSNR, SSIM and NIQE of OSEDiff's 100 RealSR
// results against the values pyiqa logged for them, image by image, and
// the means against the log's average line. In -short mode a quarter of
// the images are used.
func TestPyIQAAgreement(t *testing.T) {
	entries, mean := readLog(t)
	if testing.Short() {
		var sub []logEntry
		for i := 0; i < len(entries); i += 4 {
			sub = append(sub, entries[i])
		}
		entries = sub
	}
	ms := make([]Metric, 3)
	for i, name := range []string{"psnr", "ssim", "niqe"} {
		m, err := New(name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	got := make([][3]float64, len(entries))
	var mu sync.Mutex
	parallel.For(len(entries), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			e := entries[i]
			sr, err1 := decodePNG(filepath.Join(realsrDir, "osediff", e.name))
			gt, err2 := decodePNG(filepath.Join(realsrDir, "HR", e.name))
			if err := errors.Join(err1, err2); err != nil {
				mu.Lock()
				t.Error(err)
				mu.Unlock()
				continue
			}
			for k, m := range ms {
				v, err := m.Compute(sr, gt)
				if err != nil {
					mu.Lock()
					t.Errorf("%s %s: %v", e.name, m.Name(), err)
					mu.Unlock()
				}
				got[i][k] = v
			}
		}
	})
	tol := [3]float64{0.01, 0.001, 0.02}
	var worst [3]float64
	var sum [3]float64
	for i, e := range entries {
		want := [3]float64{e.psnr, e.ssim, e.niqe}
		for k := range 3 {
			d := math.Abs(got[i][k] - want[k])
			worst[k] = max(worst[k], d)
			sum[k] += got[i][k]
			if d > tol[k] {
				t.Errorf("%s %s = %.6f, pyiqa %.6f", e.name, ms[k].Name(), got[i][k], want[k])
			}
		}
	}
	t.Logf("%d images, worst |deviation| from pyiqa: PSNR %.2g dB, SSIM %.2g, NIQE %.2g",
		len(entries), worst[0], worst[1], worst[2])
	if testing.Short() {
		return
	}
	// The log prints means to four decimals.
	for k := range 3 {
		m := sum[k] / float64(len(entries))
		if math.Abs(m-mean[k]) > 0.5e-4+1e-6 {
			t.Errorf("mean %s = %.6f, log %.4f", ms[k].Name(), m, mean[k])
		}
	}
}
