package metrics

import (
	"bytes"
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
)

func TestRegistry(t *testing.T) {
	for _, name := range []string{"psnr", "ssim", "niqe", "PSNR"} {
		m, err := New(name, Options{})
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if m.Name() != strings.ToLower(name) {
			t.Errorf("New(%q).Name() = %q", name, m.Name())
		}
	}
	if m, _ := New("niqe", Options{}); m.NeedsReference() || m.HigherIsBetter() {
		t.Error("niqe must be no-reference and lower-is-better")
	}
	if m, _ := New("ssim", Options{}); !m.NeedsReference() || !m.HigherIsBetter() {
		t.Error("ssim must be full-reference and higher-is-better")
	}
	_, err := New("lpips", Options{})
	if err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("lpips: got %v, want an 'unavailable' error", err)
	}
	if _, err := New("nosuch", Options{}); err == nil || !strings.Contains(err.Error(), "psnr") {
		t.Errorf("unknown metric: got %v, want the list of available ones", err)
	}
	if _, err := New("psnr", Options{Crop: -1}); err == nil {
		t.Error("negative crop accepted")
	}
	found := false
	for _, m := range Unavailable() {
		found = found || m.Name == "clipiqa" && m.Reason != ""
	}
	if !found {
		t.Error("clipiqa not listed as unavailable")
	}
}

// constMetric stands for a network metric registered once its weights are
// supplied.
type constMetric struct{}

func (constMetric) Name() string                                   { return "fakenet" }
func (constMetric) NeedsReference() bool                           { return false }
func (constMetric) HigherIsBetter() bool                           { return true }
func (constMetric) Compute(sr, gt *imageio.Image) (float64, error) { return 0.5, nil }

func TestRegisterPlugsIn(t *testing.T) {
	Register("FakeNet", func(Options) (Metric, error) { return constMetric{}, nil })
	m, err := New("fakenet", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Compute(nil, nil); v != 0.5 {
		t.Errorf("registered metric returned %v", v)
	}
	found := false
	for _, n := range Names() {
		found = found || n == "fakenet"
	}
	if !found {
		t.Error("registered metric missing from Names")
	}
}

func gradient(w, h, channels int) *imageio.Image {
	m := imageio.NewImage(w, h, channels)
	n := w * h
	for c := range channels {
		for i := range n {
			m.Pix[c*n+i] = float32((i*7+c*50)%256) / 255
		}
	}
	return m
}

func TestPSNRIdenticalAndErrors(t *testing.T) {
	img := gradient(32, 24, 3)
	p, _ := New("psnr", Options{})
	v, err := p.Compute(img, img)
	if err != nil {
		t.Fatal(err)
	}
	// pyiqa: 10 log10(1/(0+1e-8)) = 80 dB.
	if math.Abs(v-80) > 1e-9 {
		t.Errorf("pyiqa PSNR of identical images = %v, want 80", v)
	}
	pb, _ := New("psnr", Options{Convention: BasicSR})
	if v, _ := pb.Compute(img, img); !math.IsInf(v, 1) {
		t.Errorf("BasicSR PSNR of identical images = %v, want +Inf", v)
	}
	s, _ := New("ssim", Options{})
	if v, _ := s.Compute(img, img); math.Abs(v-1) > 1e-12 {
		t.Errorf("SSIM of identical images = %v, want 1", v)
	}
	if _, err := p.Compute(img, gradient(32, 25, 3)); err == nil {
		t.Error("size mismatch accepted")
	}
	if _, err := s.Compute(gradient(8, 8, 3), gradient(8, 8, 3)); err == nil {
		t.Error("SSIM of an image smaller than its window accepted")
	}
	if _, err := (psnrMetric{Options{Crop: 16}}).Compute(img, img); err == nil {
		t.Error("crop larger than the image accepted")
	}
	n, _ := New("niqe", Options{})
	if _, err := n.Compute(gradient(95, 200, 3), nil); err == nil {
		t.Error("NIQE of an image narrower than a block accepted")
	}
}

// TestGrayReplicated checks that a gray image is measured as cv2 reads it:
// as RGB with three equal channels.
func TestGrayReplicated(t *testing.T) {
	g, g2 := gradient(40, 30, 1), gradient(40, 30, 1)
	for i := range g2.Pix {
		g2.Pix[i] = float32(255-int(math.Round(float64(g.Pix[i])*255))%13) / 255
	}
	rgb := func(m *imageio.Image) *imageio.Image {
		out := imageio.NewImage(m.Width, m.Height, 3)
		for c := range 3 {
			copy(out.Plane(c), m.Pix)
		}
		return out
	}
	for _, name := range []string{"psnr", "ssim"} {
		m, _ := New(name, Options{Crop: 2})
		a, err := m.Compute(g, g2)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := m.Compute(rgb(g), rgb(g2))
		if a != b {
			t.Errorf("%s: gray %v, replicated RGB %v", name, a, b)
		}
	}
}

// TestNIQECropInvariant checks that NIQE only looks at whole 96x96 blocks
// from the top-left corner: extra columns and rows are ignored.
func TestNIQECropInvariant(t *testing.T) {
	img := readPNG(t, filepath.Join(realsrDir, "HR", "Canon_001_LR4.png"))
	n, _ := New("niqe", Options{})
	full, err := n.Compute(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	cut := imageio.NewImage(480, 480, 3)
	for c := range 3 {
		for y := range 480 {
			copy(cut.Plane(c)[y*480:(y+1)*480], img.Plane(c)[y*img.Width:])
		}
	}
	v, err := n.Compute(cut, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v != full {
		t.Errorf("NIQE of the 480x480 crop %v differs from the full image's %v", v, full)
	}
}

func TestReadNPY(t *testing.T) {
	// A 2x3 Fortran-ordered array [[1 2 3] [4 5 6]] stored column by column.
	header := "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }"
	header += strings.Repeat(" ", 128-10-len(header)-1) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	b.WriteString(header)
	for _, v := range []float64{1, 4, 2, 5, 3, 6} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	a, err := readNPY(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range a.data {
		if v != float64(i+1) {
			t.Fatalf("C-order data %v, want 1..6", a.data)
		}
	}
	if _, err := readNPY(b.Bytes()[:b.Len()-8]); err == nil {
		t.Error("truncated .npy accepted")
	}
	m, err := loadNIQE()
	if err != nil {
		t.Fatal(err)
	}
	// The MSCN window is symmetric in both axes and about its diagonal
	// (mscn relies on it) and, stored in float32, does not sum exactly to 1
	// (what decides the sign of MSCN values in flat areas).
	var sum float64
	for i := range 7 {
		for j := range 7 {
			v := m.window[i*7+j]
			sum += v
			if v != m.window[(6-i)*7+j] || v != m.window[i*7+6-j] || v != m.window[j*7+i] {
				t.Fatalf("MSCN window not symmetric at %d,%d", i, j)
			}
		}
	}
	if sum == 1 || math.Abs(sum-1) > 1e-6 {
		t.Errorf("MSCN window sums to %v", sum)
	}
	// The pristine covariance is symmetric positive definite.
	for i := range 36 {
		if m.cov[i*36+i] <= 0 {
			t.Fatalf("cov[%d][%d] = %v", i, i, m.cov[i*36+i])
		}
		for j := range i {
			if m.cov[i*36+j] != m.cov[j*36+i] {
				t.Fatalf("pristine covariance not symmetric at %d,%d", i, j)
			}
		}
	}
	if len(m.gam) != 9801 || m.gam[0] != float64(float32(0.2)) || m.gam[9800] != 10 {
		t.Errorf("AGGD grid: %d values from %v to %v", len(m.gam), m.gam[0], m.gam[len(m.gam)-1])
	}
}

// TestNearestMatchesScan checks the searched AGGD argmin against a plain
// scan of the whole grid, including grid values themselves (ties), points
// between them, out-of-range and non-finite inputs.
func TestNearestMatchesScan(t *testing.T) {
	m, err := loadNIQE()
	if err != nil {
		t.Fatal(err)
	}
	if !m.monotone {
		t.Fatal("AGGD ratio grid is not strictly increasing")
	}
	xs := []float64{-1, 0, 2, math.NaN(), math.Inf(1), math.Inf(-1)}
	for i := 0; i < len(m.rgam); i += 97 {
		xs = append(xs, m.rgam[i])
		if i+1 < len(m.rgam) {
			mid := (m.rgam[i] + m.rgam[i+1]) / 2
			xs = append(xs, mid, math.Nextafter(mid, 0), math.Nextafter(mid, 1))
		}
	}
	scan := func(x float64) int {
		pos, best := 0, math.Abs(m.rgam[0]-x)
		if math.IsNaN(best) {
			return 0
		}
		for i, r := range m.rgam {
			d := math.Abs(r - x)
			if math.IsNaN(d) {
				return i
			}
			if d < best {
				best, pos = d, i
			}
		}
		return pos
	}
	for _, x := range xs {
		if got, want := m.nearest(x), scan(x); got != want {
			t.Errorf("nearest(%v) = %d, scan gives %d", x, got, want)
		}
	}
}

// TestComputeAllMatchesCompute checks that measuring with ComputeAll (one
// 8-bit reduction per image and crop) gives each metric's own Compute
// value, with mixed crops and a non-builtin metric in the list.
func TestComputeAllMatchesCompute(t *testing.T) {
	sr := readPNG(t, filepath.Join(realsrDir, "osediff", "Nikon_010_LR4.png"))
	gt := readPNG(t, filepath.Join(realsrDir, "HR", "Nikon_010_LR4.png"))
	var ms []Metric
	for _, c := range []struct {
		name string
		o    Options
	}{{"psnr", Options{}}, {"ssim", Options{Crop: 4}}, {"niqe", Options{}}, {"psnr", Options{Crop: 4, Convention: BasicSR}}} {
		m, err := New(c.name, c.o)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	ms = append(ms, constMetric{})
	all, err := ComputeAll(ms, sr, gt)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		v, err := m.Compute(sr, gt)
		if err != nil || v != all[i] {
			t.Errorf("%s: Compute %v (%v), ComputeAll %v", m.Name(), v, err, all[i])
		}
	}
}
