package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tsdsr/imageio"
	"tsdsr/sample"
	"tsdsr/train"
)

// tinyPrior is an MMDiT small enough to train in a test: hidden 32,
// one block, 8x8 latents.
const tinyPrior = `{"sample_size": 8, "patch_size": 2, "in_channels": 16, "num_layers": 1,
 "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32,
 "caption_projection_dim": 32, "pooled_projection_dim": 32, "out_channels": 16,
 "pos_embed_max_size": 16, "context_tokens": 4}`

// trainPhotos writes three small synthetic photos.
func trainPhotos(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for k, name := range []string{"a.png", "b.png", "c.png"} {
		m := imageio.NewImage(80, 72, 3)
		for i := range m.Pix {
			x, y := i%80, (i/80)%72
			v := 0.5 + 0.4*math.Sin(float64(x)/(5+float64(k))+float64(i/(80*72)))*math.Cos(float64(y)/6)
			m.Pix[i] = float32(math.Round(v*255) / 255)
		}
		if err := imageio.WriteFile(filepath.Join(dir, name), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTrainAndSamplePrior(t *testing.T) {
	photos, tmp := trainPhotos(t), t.TempDir()
	cfg := filepath.Join(tmp, "tiny.json")
	if err := os.WriteFile(cfg, []byte(tinyPrior), 0o644); err != nil {
		t.Fatal(err)
	}
	out, cache := filepath.Join(tmp, "run"), filepath.Join(tmp, "cache.safetensors")
	args := []string{"--config", cfg, "--data", photos, "--cache", cache, "--crop", "64", "--crops-per-photo", "2",
		"--steps", "3", "--batch", "2", "--lr", "1e-3", "--warmup", "1", "--out", out, "--val-every", "2",
		"--val-fraction", "0.34", "--seed", "3", "--quiet"}
	if code := run(append([]string{"train", "prior"}, args...)); code != 0 {
		t.Fatalf("train prior exited %d", code)
	}
	st, err := train.ReadState(out)
	if err != nil || st.Step != 3 {
		t.Fatalf("state step %d, %v", st.Step, err)
	}
	for _, f := range []string{"config.json", "metrics.jsonl", "loss.png", "train.log",
		filepath.Join(st.Checkpoint, "model.safetensors"), filepath.Join(st.Checkpoint, "ema.safetensors"),
		filepath.Join(st.Checkpoint, "optimizer.safetensors")} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(cache); err != nil {
		t.Error(err)
	}
	var recipe train.PriorRecipe
	if err := json.Unmarshal(st.Config, &recipe); err != nil || recipe.Model.NumLayers != 1 || recipe.Cache.Count != 6 {
		t.Errorf("recipe %+v, %v", recipe, err)
	}
	rows, _ := train.ReadLog(filepath.Join(out, "metrics.jsonl"))
	var vals int
	for _, r := range rows {
		if _, ok := r["val_0.5"]; ok {
			vals++
		}
	}
	if len(rows) != 5 || vals != 2 { // 3 steps, validation after steps 2 and 3
		t.Errorf("%d metric rows, %d validations", len(rows), vals)
	}

	// A run reading the cache file trains on the same bits as the run that
	// built it (which trains on the file's half-precision values too).
	out2 := filepath.Join(tmp, "run2")
	args2 := append([]string(nil), args...)
	args2[slices.Index(args2, "--out")+1] = out2
	if err := runTrainPrior(context.Background(), args2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(out, st.Checkpoint, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(out2, st.Checkpoint, "model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("training from the cache file differs from the run that built it")
	}

	// A finished run is not overwritten; resuming it has nothing to do.
	if err := runTrainPrior(context.Background(), args); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("second run without --resume: %v", err)
	}
	if err := runTrainPrior(context.Background(), append(args, "--resume")); err != nil {
		t.Errorf("resume of a finished run: %v", err)
	}
	// Other settings are refused on resume.
	if err := runTrainPrior(context.Background(), append(args, "--resume", "--lr", "2e-3")); err == nil {
		t.Error("resume with another learning rate accepted")
	}

	png := filepath.Join(tmp, "grid.png")
	if err := runSamplePrior(context.Background(), []string{"--model", out, "--steps", "2", "--n", "3", "--size", "64",
		"--batch", "2", "-o", png, "--quiet"}); err != nil {
		t.Fatal(err)
	}
	m, err := imageio.ReadFile(png, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*64 + 3*sample.GridPad; m.Width != want || m.Height != want {
		t.Errorf("grid %dx%d, want %dx%d", m.Width, m.Height, want, want)
	}
	// The top-left cell differs from the white background, the unused
	// fourth cell does not.
	cell := func(cx, cy int) (white int) {
		for y := range 64 {
			for x := range 64 {
				if m.Pix[(sample.GridPad+cy*(64+sample.GridPad)+y)*m.Width+sample.GridPad+cx*(64+sample.GridPad)+x] == 1 {
					white++
				}
			}
		}
		return white
	}
	if cell(0, 0) == 64*64 || cell(1, 1) != 64*64 {
		t.Errorf("white pixels in cells: first %d, last %d", cell(0, 0), cell(1, 1))
	}
	// The same seed gives the same image whatever the batch.
	png2 := filepath.Join(tmp, "grid2.png")
	if err := runSamplePrior(context.Background(), []string{"--model", out, "--steps", "2", "--n", "3", "--size", "64",
		"--batch", "3", "-o", png2, "--quiet"}); err != nil {
		t.Fatal(err)
	}
	m2, _ := imageio.ReadFile(png2, nil)
	for i := range m.Pix {
		if math.Abs(float64(m.Pix[i]-m2.Pix[i])) > 1.5/255 {
			t.Fatalf("batch 2 and batch 3 samples differ at %d: %v vs %v", i, m.Pix[i], m2.Pix[i])
		}
	}

	// A checkpoint's weights file finds the run's config.json; --weights
	// model picks the raw weights.
	for _, model := range []string{filepath.Join(out, st.Checkpoint, "model.safetensors"), out} {
		if err := runSamplePrior(context.Background(), []string{"--model", model, "--weights", "model", "--steps", "1",
			"--n", "1", "--size", "32", "-o", png, "--quiet"}); err != nil {
			t.Errorf("sample from %s: %v", model, err)
		}
	}
	// The denoising table's grid: clean, then noisy and predicted at two
	// levels, for the 2 held-out crops (one photo of three).
	dn := filepath.Join(tmp, "denoise.png")
	if err := runSampleDenoise(context.Background(), []string{"--model", out, "--cache", cache, "--sigmas", "0.3,0.7",
		"-o", dn}); err != nil {
		t.Fatal(err)
	}
	if g, err := imageio.ReadFile(dn, nil); err != nil || g.Width != 5*64+6*sample.GridPad || g.Height != 2*64+3*sample.GridPad {
		t.Errorf("denoise grid: %v", err)
	}
	if err := runSamplePrior(context.Background(), []string{"--model", out, "--size", "60", "-o", png}); err != errUsage {
		t.Errorf("size not a multiple of 8: %v", err)
	}
	if err := runTrain(context.Background(), []string{"nope"}); err != errUsage {
		t.Errorf("unknown trainer: %v", err)
	}
}

// TestTrainPriorInit continues from saved weights with a fresh optimiser
// (how a prior trained elsewhere, whose optimiser state stayed behind, is
// continued), and names the tensor when the weights do not fit.
func TestTrainPriorInit(t *testing.T) {
	photos, tmp := trainPhotos(t), t.TempDir()
	cfg := filepath.Join(tmp, "tiny.json")
	if err := os.WriteFile(cfg, []byte(tinyPrior), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--config", cfg, "--data", photos, "--cache", filepath.Join(tmp, "cache.safetensors"), "--crop", "64",
		"--crops-per-photo", "2", "--steps", "2", "--batch", "2", "--warmup", "1", "--seed", "3", "--quiet"}
	first := filepath.Join(tmp, "first")
	if err := runTrainPrior(context.Background(), append(common, "--out", first)); err != nil {
		t.Fatal(err)
	}
	st, err := train.ReadState(first)
	if err != nil {
		t.Fatal(err)
	}
	weights := filepath.Join(first, st.Checkpoint, "ema.safetensors")
	if err := runTrainPrior(context.Background(), append(common, "--out", filepath.Join(tmp, "second"), "--init", weights)); err != nil {
		t.Fatal(err)
	}
	// A checkpoint of another size is refused with the tensor's name.
	other := strings.Replace(tinyPrior, `"num_layers": 1`, `"num_layers": 2`, 1)
	cfg2 := filepath.Join(tmp, "tiny2.json")
	if err := os.WriteFile(cfg2, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := append(append([]string(nil), common...), "--out", filepath.Join(tmp, "third"), "--init", weights)
	bad[1] = cfg2
	err = runTrainPrior(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "transformer_blocks.1") {
		t.Fatalf("mismatched --init: %v", err)
	}
}
