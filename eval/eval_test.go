package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
	"tsdsr/metrics"
)

const realsr = "../../shared/data/realsr"

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"Canon_001_LR4.png":     "Canon_001",
		"Canon_001_HR.png":      "Canon_001",
		"Canon_001_x4_SR.png":   "Canon_001",
		"Canon_001_out.jpg":     "Canon_001",
		"baby_x4.png":           "baby",
		"baby-4x.png":           "baby",
		"img_012_SRx4.png":      "img_012",
		"dir/0801_gt.webp":      "0801",
		"LR.png":                "LR", // nothing left to strip
		"x4.png":                "x4",
		"photo_output.png":      "photo",
		"zebra.png":             "zebra",
		"Nikon_050_LR4_out.png": "Nikon_050",
	} {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPairFiles(t *testing.T) {
	srs := []string{"out/Canon_001_LR4.png", "out/Canon_002_LR4_out.png", "out/x_SR.png"}
	gts := []string{"hr/Canon_001_LR4.png", "hr/Canon_002_HR.png", "hr/x_HR.png", "hr/extra.png"}
	pairs, unused, err := PairFiles(srs, gts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Canon_001_LR4.png": "hr/Canon_001_LR4.png",
		"Canon_002_LR4_out.png": "hr/Canon_002_HR.png", "x_SR.png": "hr/x_HR.png"}
	for _, p := range pairs {
		if want[p.Name] != p.GT {
			t.Errorf("%s paired with %s, want %s", p.Name, p.GT, want[p.Name])
		}
	}
	if len(pairs) != 3 || len(unused) != 1 || unused[0] != "hr/extra.png" {
		t.Errorf("pairs %v, unused %v", pairs, unused)
	}
	if _, _, err := PairFiles([]string{"a/y.png"}, gts); err == nil || !strings.Contains(err.Error(), "y.png") {
		t.Errorf("missing ground truth: err = %v", err)
	}
	if _, _, err := PairFiles([]string{"a/k_SR.png"}, []string{"b/k_HR.png", "b/k_GT.png"}); err == nil {
		t.Error("ambiguous ground truths accepted")
	}
	if _, _, err := PairFiles([]string{"a/k_SR.png", "a/k_out.png"}, []string{"b/k_HR.png"}); err == nil {
		t.Error("two results for one ground truth accepted")
	}
}

// TestRunRealSR runs the evaluation on a few RealSR pairs (OSEDiff's
// results) and checks the per-image values against pyiqa's log, the JSON
// shape and the CSV/table writers.
func TestRunRealSR(t *testing.T) {
	names := []string{"Canon_001_LR4.png", "Canon_002_LR4.png", "Nikon_050_LR4.png"}
	// pyiqa 0.1.10 (osediff-metrics.log): PSNR, SSIM, NIQE.
	logged := map[string][3]float64{
		"Canon_001_LR4.png": {25.793726, 0.851268, 5.673670},
		"Canon_002_LR4.png": {24.045864, 0.735231, 5.823664},
	}
	var srs, gts []string
	for _, n := range names {
		srs = append(srs, filepath.Join(realsr, "osediff", n))
		gts = append(gts, filepath.Join(realsr, "HR", n))
	}
	if _, err := os.Stat(srs[0]); err != nil {
		t.Skipf("no RealSR data: %v", err)
	}
	pairs, _, err := PairFiles(srs, gts)
	if err != nil {
		t.Fatal(err)
	}
	var ms []metrics.Metric
	var mnames []string
	for _, n := range []string{"psnr", "ssim", "niqe"} {
		m, err := metrics.New(n, metrics.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ms, mnames = append(ms, m), append(mnames, n)
	}
	calls := 0
	res, err := Run(context.Background(), pairs, ms, LoadFiles, 2, func() { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(pairs) || len(res) != len(pairs) {
		t.Fatalf("%d progress calls, %d results for %d pairs", calls, len(res), len(pairs))
	}
	for _, r := range res {
		if want, ok := logged[r.Name]; ok {
			for k, tol := range []float64{1e-4, 1e-5, 1e-4} {
				if math.Abs(r.Values[k]-want[k]) > tol {
					t.Errorf("%s %s = %.6f, pyiqa %.6f", r.Name, mnames[k], r.Values[k], want[k])
				}
			}
		}
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, mnames, res); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&js)
	var lines []map[string]any
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		lines = append(lines, obj)
	}
	if len(lines) != len(pairs)+1 {
		t.Fatalf("%d JSON lines", len(lines))
	}
	last := lines[len(lines)-1]
	if len(last) != 4 || last["n"] != float64(len(pairs)) {
		t.Errorf("summary %v, want {n, psnr, ssim, niqe}", last)
	}
	mean := Mean(res, 3)
	for k, n := range mnames {
		if v, ok := last[n].(float64); !ok || math.Abs(v-mean[k]) > 1e-6 {
			t.Errorf("summary %s = %v, mean %v", n, last[n], mean[k])
		}
	}
	if lines[0]["name"] != names[0] {
		t.Errorf("first JSON line %v", lines[0])
	}

	var csvb, tab bytes.Buffer
	WriteCSV(&csvb, mnames, res)
	WriteTable(&tab, mnames, res)
	if got := strings.Count(csvb.String(), "\n"); got != len(pairs)+2 || !strings.HasPrefix(csvb.String(), "name,psnr,ssim,niqe\n") {
		t.Errorf("CSV:\n%s", csvb.String())
	}
	if !strings.Contains(tab.String(), "mean (3)") || !strings.Contains(tab.String(), "Nikon_050_LR4.png") {
		t.Errorf("table:\n%s", tab.String())
	}
}

// TestRunErrors checks that a missing reference and an unreadable file are
// reported with the file's name.
func TestRunErrors(t *testing.T) {
	psnr, _ := metrics.New("psnr", metrics.Options{})
	if _, err := Run(context.Background(), []Pair{{Name: "a.png", SR: "a.png"}}, []metrics.Metric{psnr}, LoadFiles, 1, nil); err == nil {
		t.Error("full-reference metric without ground truth accepted")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.png")
	os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	_, err := Run(context.Background(), []Pair{{Name: "bad.png", SR: bad, GT: bad}}, []metrics.Metric{psnr}, LoadFiles, 2, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.png") {
		t.Errorf("corrupt file: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, []Pair{{Name: "x", SR: bad, GT: bad}}, nil, LoadFiles, 1, nil); err == nil {
		t.Error("cancelled run returned no error")
	}
}

// TestBicubicBaseline checks the baseline loader: output at the ground
// truth's size, 8-bit values, and identity when upscaling by 1.
func TestBicubicBaseline(t *testing.T) {
	dir := t.TempDir()
	lr := imageio.NewImage(8, 6, 3)
	for i := range lr.Pix {
		lr.Pix[i] = float32(i%256) / 255
	}
	gt := imageio.NewImage(32, 24, 3)
	pl, pg := filepath.Join(dir, "a_LR.png"), filepath.Join(dir, "a_HR.png")
	if err := imageio.WriteFile(pl, lr, nil); err != nil {
		t.Fatal(err)
	}
	imageio.WriteFile(pg, gt, nil)
	up, g, err := BicubicBaseline(4)(Pair{SR: pl, GT: pg})
	if err != nil {
		t.Fatal(err)
	}
	if up.Width != 32 || up.Height != 24 || g == nil {
		t.Fatalf("baseline %dx%d", up.Width, up.Height)
	}
	for _, v := range up.Pix {
		if k := v * 255; k != float32(math.Round(float64(k))) || v < 0 || v > 1 {
			t.Fatalf("baseline value %v is not an 8-bit level", v)
		}
	}
	same, _, err := BicubicBaseline(1)(Pair{SR: pl})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range same.Pix {
		if v != lr.Pix[i] {
			t.Fatalf("x1 baseline changed value %d: %v -> %v", i, lr.Pix[i], v)
		}
	}
}
