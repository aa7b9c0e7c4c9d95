package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/distill"
	"tsdsr/imageio"
	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/train"
)

// distillFixture writes a tiny random prior (config in the metadata) and
// two small synthetic photos, and returns their paths.
func distillFixture(t *testing.T) (prior, photos string) {
	t.Helper()
	dir := t.TempDir()
	cfg := mmdit.Config{SampleSize: 8, PatchSize: 2, InChannels: 16, NumLayers: 1, AttentionHeadDim: 8,
		NumAttentionHeads: 2, JointAttentionDim: 16, CaptionProjectionDim: 16, PooledProjectionDim: 16,
		OutChannels: 16, PosEmbedMaxSize: 8, ContextTokens: 2}
	m, err := mmdit.New(cfg, nn.NewParams(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := rng.New(4)
	for _, p := range m.Params.List() {
		r.FillNormal(p.T.Data, 0, 0.1)
	}
	prior = filepath.Join(dir, "prior.safetensors")
	if err := distill.SaveStudent(prior, m, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	photos = filepath.Join(dir, "photos")
	os.Mkdir(photos, 0o755)
	for k, name := range []string{"a.png", "b.png"} {
		im := imageio.NewImage(96, 80, 3)
		for i := range im.Pix {
			x, y := i%96, (i/96)%80
			v := 0.5 + 0.4*math.Sin(float64(x)/(4+float64(k)))*math.Cos(float64(y)/7+float64(i/(96*80)))
			im.Pix[i] = float32(math.Round(v*255) / 255)
		}
		if err := imageio.WriteFile(filepath.Join(photos, name), im, nil); err != nil {
			t.Fatal(err)
		}
	}
	return prior, photos
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTrainDistill runs 3 steps of TSD + DASM from a tiny prior on 64x64
// HR crops, checks the run's outputs, then replays a crash after the step-2
// checkpoint: resuming it must end with the same student, bit for bit
// (data stream, noise, both adapters and optimisers restored).
func TestTrainDistill(t *testing.T) {
	prior, photos := distillFixture(t)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"--prior", prior, "--data", photos, "--out", out, "--steps", "3", "--batch", "2", "--size", "64",
		"--lora-rank", "4", "--fake-rank", "2", "--warmup", "0", "--lr", "1e-3", "--lr-fake", "1e-3",
		"--save-every", "2", "--seed", "3", "--quiet", "--threads", "2", "--ema", "0.9", "--snapshot-every", "2"}
	if err := runTrainDistill(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"student.safetensors", "loss.png", "loss.csv", "metrics.jsonl", "state.json", "checkpoints/step-00000002/state.json",
		"students/step-00000002.safetensors", "students/step-00000003.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	fh, err := os.Open(filepath.Join(out, "loss.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil || len(recs) != 4 {
		t.Fatalf("loss.csv: %d records, %v", len(recs), err)
	}
	for _, rec := range recs[1:] {
		for i, col := range distill.LossColumns {
			if col != "pix" && rec[i] == "" {
				t.Errorf("loss.csv row %v lacks %s", rec, col)
			}
		}
	}
	want, err := mmdit.LoadFile(filepath.Join(out, "student.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := mmdit.LoadFile(prior)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i, p := range base.Params.List() {
		for j, v := range p.T.Data {
			if v != want.Params.List()[i].T.Data[j] {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("the student equals the prior after 3 steps")
	}
	// The last snapshot is the saved student (the EMA) in BF16.
	snap, err := mmdit.LoadFile(filepath.Join(out, "students/step-00000003.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range want.Params.List() {
		for j, v := range p.T.Data {
			if d := math.Abs(float64(v - snap.Params.List()[i].T.Data[j])); d > 1e-2*math.Abs(float64(v))+1e-30 {
				t.Fatalf("snapshot %s[%d] = %v, student %v: not its BF16 rounding", p.Name, j, snap.Params.List()[i].T.Data[j], v)
			}
		}
	}

	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, out, crashed)
	st, err := os.ReadFile(filepath.Join(crashed, "checkpoints/step-00000002/state.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(crashed, "state.json"), st, 0o644)
	os.RemoveAll(filepath.Join(crashed, "checkpoints/step-00000003"))
	args[5] = crashed
	if err := runTrainDistill(context.Background(), append(args, "--resume")); err != nil {
		t.Fatal(err)
	}
	if s, _ := train.ReadState(crashed); s.Step != 3 {
		t.Errorf("resumed run ended at step %d", s.Step)
	}
	got, err := mmdit.LoadFile(filepath.Join(crashed, "student.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := want.Params.List(), got.Params.List()
	for i := range a {
		for j, v := range a[i].T.Data {
			if v != b[i].T.Data[j] {
				t.Fatalf("%s[%d]: %v straight, %v after resume", a[i].Name, j, v, b[i].T.Data[j])
			}
		}
	}

	// A different recipe in the same directory is refused.
	args[5] = out
	if err := runTrainDistill(context.Background(), append(args, "--resume", "--lambda", "0.5")); err == nil {
		t.Error("resume with another lambda was accepted")
	}
}

// TestTrainDistillInit: --init starts the student from an earlier student
// (here the regression-only run's) and is part of the recipe; a missing
// file is a clear error.
func TestTrainDistillInit(t *testing.T) {
	prior, photos := distillFixture(t)
	dir := t.TempDir()
	base := []string{"--prior", prior, "--data", photos, "--steps", "1", "--batch", "1", "--size", "64",
		"--lora-rank", "4", "--fake-rank", "2", "--warmup", "0", "--lr", "1e-2", "--seed", "3", "--quiet", "--threads", "2"}
	first := filepath.Join(dir, "mse")
	if err := runTrainDistill(context.Background(), append(base, "--out", first, "--reg", "none")); err != nil {
		t.Fatal(err)
	}
	start := filepath.Join(first, "student.safetensors")
	second := filepath.Join(dir, "tsd")
	if err := runTrainDistill(context.Background(), append(base, "--out", second, "--init", start, "--dasm=false")); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(filepath.Join(second, "state.json"))
	if err != nil || !strings.Contains(string(st), start) {
		t.Errorf("state.json does not record --init %s: %v", start, err)
	}
	err = runTrainDistill(context.Background(), append(base, "--out", filepath.Join(dir, "x"), "--init", filepath.Join(dir, "nope.safetensors")))
	if err == nil || !strings.Contains(err.Error(), "--init") {
		t.Errorf("missing --init file: err = %v", err)
	}
}

// TestTrainDistillDegrade trains on a mixture of two degradations: the
// recipe records both, and a resume under another mixture is refused.
func TestTrainDistillDegrade(t *testing.T) {
	prior, photos := distillFixture(t)
	dir := t.TempDir()
	mild := filepath.Join(dir, "mild.json")
	if err := os.WriteFile(mild, []byte(`{"stage2": {"blur": {"prob": 0}}, "final": {"sinc_prob": 0, "jpeg": [80, 95]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	base := []string{"--prior", prior, "--data", photos, "--steps", "1", "--batch", "2", "--size", "64", "--reg", "none",
		"--lora-rank", "4", "--warmup", "0", "--seed", "3", "--quiet", "--threads", "2", "--out", out}
	if err := runTrainDistill(context.Background(), append(base, "--degrade", "realesrgan:3", "--degrade", mild)); err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(filepath.Join(out, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		Config distill.Recipe `json:"config"`
	}
	if err := json.Unmarshal(st, &state); err != nil {
		t.Fatal(err)
	}
	d := state.Config.Degrade
	if len(d) != 2 || d[0].Name != "realesrgan" || d[0].Weight != 3 || d[1].Name != mild || d[1].Weight != 1 ||
		d[1].Options.Final.JPEG != [2]float64{80, 95} || d[0].Options.Crop.Size != 64 || d[1].Options.Crop.Size != 64 {
		t.Fatalf("recipe's mixture: %+v", d)
	}
	err = runTrainDistill(context.Background(), append(base, "--resume", "--degrade", "realesrgan:1", "--degrade", mild))
	if err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("resume under another mixture: err = %v", err)
	}
	err = runTrainDistill(context.Background(), append(base, "--degrade", filepath.Join(dir, "nope.json")))
	if err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Errorf("missing --degrade file: err = %v", err)
	}
}
