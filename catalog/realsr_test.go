package catalog

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
	"tsdsr/sr"
)

const realsrDir = "../../shared/data/realsr"

// realsrChecked are the RealSR photos each built-in student is re-measured
// on: a few seconds each at 128 -> 512.
var realsrChecked = []string{"Canon_001", "Nikon_010", "Canon_040"}

// maxGrid bounds metrics' grid on each checked photo: tsdsr-small-v2 gives
// 0.030-0.046 on them, session 5's pixel-GAN candidate, whose outputs show
// the grid by eye, 0.090-0.111.
const maxGrid = 0.07

// TestBuiltInModelsOnRealSR: every built-in student upscales RealSR photos
// to 4x their size, the same bytes twice, and scores PSNR/NIQE within a
// small tolerance of the per-image figures of the evaluation recorded in
// MODELS.md (testdata/<model>.realsr.jsonl, the `tsdsr eval --json` output
// of that run), so a change of numerics that moves the shipped results is
// caught, and draws no 16-pixel grid (metrics' grid below maxGrid).
func TestBuiltInModelsOnRealSR(t *testing.T) {
	if testing.Short() {
		t.Skip("upscales RealSR photos with the built-in models")
	}
	list, err := List()
	if err != nil {
		t.Fatal(err)
	}
	psnr, _ := metrics.New("psnr", metrics.Options{})
	niqe, _ := metrics.New("niqe", metrics.Options{})
	grid, _ := metrics.New("grid", metrics.Options{})
	for _, m := range list {
		if m.Name == Bicubic {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			recorded := readScores(t, filepath.Join("testdata", m.Name+".realsr.jsonl"))
			up, err := Load(m.Name)
			if err != nil {
				t.Fatal(err)
			}
			pipe := sr.New(up, nil)
			for i, name := range realsrChecked {
				lr, err := imageio.ReadFile(filepath.Join(realsrDir, "LR", name+"_LR4.png"), nil)
				if err != nil {
					t.Fatal(err)
				}
				gt, err := imageio.ReadFile(filepath.Join(realsrDir, "HR", name+"_LR4.png"), nil) // HR files keep the LR names
				if err != nil {
					t.Fatal(err)
				}
				out, err := pipe.UpscaleImage(context.Background(), lr)
				if err != nil {
					t.Fatal(err)
				}
				if out.Width != 4*lr.Width || out.Height != 4*lr.Height {
					t.Fatalf("%s: %dx%d from %dx%d", name, out.Width, out.Height, lr.Width, lr.Height)
				}
				if i == 0 {
					again, _ := pipe.UpscaleImage(context.Background(), lr)
					if !bytes.Equal(pngBytes(t, out), pngBytes(t, again)) {
						t.Fatalf("%s: two runs gave different bytes", name)
					}
				}
				// Measure what eval measured: the 8-bit PNG the CLI writes.
				saved, err := imageio.Decode(bytes.NewReader(pngBytes(t, out)), nil)
				if err != nil {
					t.Fatal(err)
				}
				want, ok := recorded[name+"_LR4.png"]
				if !ok {
					t.Fatalf("%s: no recorded scores", name)
				}
				p, _ := psnr.Compute(saved, gt)
				n, _ := niqe.Compute(saved, nil)
				t.Logf("%s: PSNR %.4f (recorded %.4f), NIQE %.4f (recorded %.4f)", name, p, want["psnr"], n, want["niqe"])
				if math.Abs(p-want["psnr"]) > 0.05 || math.Abs(n-want["niqe"]) > 0.1 {
					t.Errorf("%s: PSNR %.4f / NIQE %.4f, recorded %.4f / %.4f", name, p, n, want["psnr"], want["niqe"])
				}
				if g, err := grid.Compute(saved, nil); err != nil || g > maxGrid {
					t.Errorf("%s: grid %.4f (%v), want at most %g", name, g, err, maxGrid)
				}
			}
		})
	}
}

func pngBytes(t *testing.T, m *imageio.Image) []byte {
	var buf bytes.Buffer
	if err := imageio.Encode(&buf, m, &imageio.EncodeOptions{Format: "png"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readScores reads `tsdsr eval --json` output: per-image objects by name.
func readScores(t *testing.T, path string) map[string]map[string]float64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scores := map[string]map[string]float64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		var row map[string]any
		if err := json.Unmarshal(s.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		name, ok := row["name"].(string)
		if !ok || strings.TrimSpace(name) == "" {
			continue // the summary line
		}
		vals := map[string]float64{}
		for k, v := range row {
			if f, ok := v.(float64); ok {
				vals[k] = f
			}
		}
		scores[name] = vals
	}
	return scores
}
