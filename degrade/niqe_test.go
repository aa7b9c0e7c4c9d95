package degrade

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"tsdsr/imageio"
	"tsdsr/metrics"
	"tsdsr/resize"
	"tsdsr/rng"
)

// TestNIQEDegradedWorse checks the pipeline degrades what NIQE sees: on
// photos of the training set, LR images from the default options score a
// clearly worse (higher) NIQE than the same HR crops downscaled by MATLAB
// bicubic. Crops are 768 so the 192 x 192 LR holds four NIQE blocks.
func TestNIQEDegradedWorse(t *testing.T) {
	if testing.Short() {
		t.Skip("reads training photos")
	}
	if !simdConv {
		t.Skip("about 10x slower without the AVX2 conv (build with GOEXPERIMENT=simd on amd64)")
	}
	dir := filepath.Join("..", "..", "shared", "data", "train")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("training photos not available: %v", err)
	}
	niqe, err := metrics.New("niqe", metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Crop.Size = 768
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var lrScores, bicScores []float64
	for i := 0; i < len(names) && len(lrScores) < 8; i += 7 {
		m, err := imageio.ReadFile(filepath.Join(dir, names[i]), nil)
		if err != nil || m.Width < 768 || m.Height < 768 {
			continue
		}
		p, err := SamplePair(ImagePhoto{m}, rng.New(uint64(i)), o)
		if err != nil {
			t.Fatal(err)
		}
		bic := resize.Image(p.HR, 192, 192, resize.MatlabBicubic)
		a, err := niqe.Compute(p.LR, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := niqe.Compute(bic, nil)
		if err != nil {
			t.Fatal(err)
		}
		lrScores, bicScores = append(lrScores, a), append(bicScores, b)
	}
	if len(lrScores) < 4 {
		t.Skipf("only %d photos of at least 768 x 768", len(lrScores))
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	worse := 0
	for i := range lrScores {
		if lrScores[i] > bicScores[i] {
			worse++
		}
	}
	ml, mb := mean(lrScores), mean(bicScores)
	t.Logf("NIQE over %d photos: degraded LR %.3f, MATLAB bicubic %.3f (LR worse on %d)", len(lrScores), ml, mb, worse)
	t.Logf("per photo LR %.2f", lrScores)
	t.Logf("per photo bicubic %.2f", bicScores)
	if math.IsNaN(ml) || ml < mb+1 || worse < len(lrScores)*3/4 {
		t.Errorf("degraded LR NIQE %.3f is not clearly worse than bicubic %.3f", ml, mb)
	}
}
