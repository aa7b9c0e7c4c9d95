package train_test

// Parity with the PyTorch trainer in scripts/torch, checked from goldens it
// wrote on the CPU (scripts/torch/golden.py; see scripts/torch/README.md), so
// CI needs neither torch nor a GPU: the same weights and inputs give the same
// velocity and loss, four training steps (AdamW, warm-up + cosine, clipping,
// EMA warm-up) end at the same weights, the script's shipped checkpoint loads
// with Go's loaders, and a Go-written checkpoint gave the script the
// velocity Go computes.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"tsdsr/flow"
	"tsdsr/latents"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
	"tsdsr/train"
)

var update = flag.Bool("update", false, "rewrite testdata/torch/go.safetensors (then rerun scripts/torch/golden.py)")

const torchDir = "testdata/torch"

// goConfig is the config of the checkpoint Go writes for the script to read.
var goConfig = mmdit.Config{SampleSize: 4, PatchSize: 2, InChannels: 16, NumLayers: 2, AttentionHeadDim: 8,
	NumAttentionHeads: 2, JointAttentionDim: 16, CaptionProjectionDim: 16, PooledProjectionDim: 8,
	OutChannels: 16, PosEmbedMaxSize: 4, ContextTokens: 2}

// goCheckpoint writes the Go-side checkpoint: every weight drawn from a
// fixed generator (none left at DiT's zeros), BF16, config in the metadata.
func goCheckpoint(t *testing.T, path string) {
	t.Helper()
	p := nn.NewParams(nil)
	m, err := mmdit.New(goConfig, p)
	if err != nil {
		t.Fatal(err)
	}
	r := rng.New(19)
	for _, q := range p.List() {
		r.FillNormal(q.T.Data, 0, 0.25)
	}
	if err := m.Save(path, safetensors.BF16, map[string]string{"writer": "train/torch_parity_test.go"}); err != nil {
		t.Fatal(err)
	}
}

func TestTorchParityGoCheckpointIsGoWritten(t *testing.T) {
	path := filepath.Join(torchDir, "go.safetensors")
	if *update {
		goCheckpoint(t, path)
		t.Logf("wrote %s; now run python3 scripts/torch/golden.py", path)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update)", err)
	}
	tmp := filepath.Join(t.TempDir(), "go.safetensors")
	goCheckpoint(t, tmp)
	got, _ := os.ReadFile(tmp)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what this test writes: run with -update, then python3 scripts/torch/golden.py", path)
	}
}

// golden is parity.safetensors: the script's inputs and outputs.
type golden struct {
	t *testing.T
	f *safetensors.File
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	f, err := safetensors.Load(filepath.Join(torchDir, "parity.safetensors"))
	if err != nil {
		t.Fatalf("%v (python3 scripts/torch/golden.py writes it)", err)
	}
	return golden{t, f}
}

func (g golden) tensor(name string) *tensor.Tensor {
	x, err := g.f.Tensor(name)
	if err != nil {
		g.t.Fatal(err)
	}
	return x
}

func (g golden) float(key string) float64 {
	v, err := strconv.ParseFloat(g.f.Metadata[key], 64)
	if err != nil {
		g.t.Fatalf("golden metadata %s = %q: %v", key, g.f.Metadata[key], err)
	}
	return v
}

func (g golden) floats(key string) []float64 {
	var v []float64
	if err := json.Unmarshal([]byte(g.f.Metadata[key]), &v); err != nil {
		g.t.Fatalf("golden metadata %s: %v", key, err)
	}
	return v
}

// slice returns the k-th [1:] sub-tensor of x (a batch of a stack of batches).
func slice(x *tensor.Tensor, k int) *tensor.Tensor {
	per := x.Numel() / x.Shape[0]
	return tensor.FromData(x.Data[k*per:(k+1)*per], x.Shape[1:]...)
}

// relErr is ||got - want|| / ||want||.
func relErr(t *testing.T, got, want *tensor.Tensor) float64 {
	t.Helper()
	if !tensor.SameShape(got.Shape, want.Shape) {
		t.Fatalf("shape %v, want %v", got.Shape, want.Shape)
	}
	var d, n float64
	for i, w := range want.Data {
		e := float64(got.Data[i]) - float64(w)
		d += e * e
		n += float64(w) * float64(w)
	}
	return math.Sqrt(d / n)
}

// loadTiny builds the golden's tiny model from init.safetensors (the
// script's fixed weights), trainable.
func loadTiny(t *testing.T) (*mmdit.Model, *nn.Params) {
	t.Helper()
	f, err := safetensors.Load(filepath.Join(torchDir, "init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg mmdit.Config
	if err := json.Unmarshal([]byte(f.Metadata[mmdit.ConfigKey]), &cfg); err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams(nil)
	m, err := mmdit.New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, true); err != nil {
		t.Fatal(err)
	}
	return m, p
}

func TestTorchParityVelocityAndLoss(t *testing.T) {
	g := loadGolden(t)
	m, _ := loadTiny(t)
	defer tensor.NoGrad()()
	x, ts := g.tensor("x"), g.tensor("t").Data
	if e := relErr(t, m.Velocity(x, ts), g.tensor("v")); e > 1e-5 {
		t.Errorf("velocity (learned prompt): relative error %.3g > 1e-5", e)
	} else {
		t.Logf("velocity (learned prompt): relative error %.3g", e)
	}
	if e := relErr(t, m.Forward(x, ts, g.tensor("ctx"), g.tensor("pooled")), g.tensor("v_ctx")); e > 1e-5 {
		t.Errorf("velocity (explicit prompt): relative error %.3g > 1e-5", e)
	}
	x0, eps, sigma := g.tensor("x0"), g.tensor("eps"), g.tensor("sigma").Data
	loss := float64(tensor.MSE(m.Velocity(flow.Noise(x0, eps, sigma), flow.Timesteps(sigma)), flow.Target(x0, eps)).Item())
	if want := g.float("loss"); math.Abs(loss-want) > 1e-5*want {
		t.Errorf("loss on the fixed batch: Go %.8g, script %.8g", loss, want)
	}
}

func TestTorchParityNoiseLevels(t *testing.T) {
	// The script maps its normals z through LogitNormalIndex's formula and
	// flow's schedule; Go's Sigma of the same index must give the same sigma.
	g := loadGolden(t)
	mean, std := g.float("logit_mean"), g.float("logit_std")
	sch := flow.SD3()
	z, want := g.tensor("z").Data, g.tensor("z_sigma").Data
	for i, zi := range z {
		u := 1 / (1 + math.Exp(-(mean + std*float64(zi))))
		got := sch.Sigma(min(int(u*float64(sch.TrainSteps)), sch.TrainSteps-1))
		if got != want[i] {
			t.Errorf("z %v: Go sigma %v, script %v", zi, got, want[i])
		}
	}
}

// trainFour repeats the script's four steps with Go's optimiser, clipping,
// schedule and EMA (train.TrainPrior's step, on the golden's fixed batches),
// and returns the per-step losses and norms, the weights and the EMA.
func trainFour(t *testing.T, g golden) ([]float64, []float64, *nn.Params, *nn.EMA) {
	t.Helper()
	var rec struct {
		Steps, Warmup              int
		LR, WeightDecay, Clip, EMA float64
	}
	raw := g.f.Metadata["recipe"]
	var m map[string]float64
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	rec.Steps, rec.Warmup = int(m["steps"]), int(m["warmup"])
	rec.LR, rec.WeightDecay, rec.Clip, rec.EMA = m["lr"], m["weight_decay"], m["clip"], m["ema"]
	model, p := loadTiny(t)
	cfg := nn.DefaultAdamW()
	cfg.LR, cfg.WeightDecay = rec.LR, rec.WeightDecay
	opt := nn.NewAdamW(p.Trainable(), cfg)
	ema := nn.NewEMA(p.Trainable(), rec.EMA)
	sched := nn.CosineWarmup(rec.LR, rec.Warmup, rec.Steps)
	bx0, beps, bsig := g.tensor("train_x0"), g.tensor("train_eps"), g.tensor("train_sigma")
	var losses, norms []float64
	for s := range rec.Steps {
		x0, eps, sigma := slice(bx0, s), slice(beps, s), slice(bsig, s).Data
		loss := tensor.MSE(model.Velocity(flow.Noise(x0, eps, sigma), flow.Timesteps(sigma)), flow.Target(x0, eps))
		opt.ZeroGrad()
		loss.Backward()
		norms = append(norms, nn.ClipGradNorm(opt.Params(), rec.Clip))
		losses = append(losses, float64(loss.Item()))
		opt.LR = sched(s)
		opt.Step()
		ema.Decay = min(rec.EMA, float64(1+ema.Updates())/float64(10+ema.Updates()))
		ema.Update()
	}
	return losses, norms, p, ema
}

func TestTorchParityTrainingSteps(t *testing.T) {
	g := loadGolden(t)
	losses, norms, p, _ := trainFour(t, g)
	wantLoss, wantNorm := g.floats("train_loss"), g.floats("train_grad_norm")
	for s := range losses {
		if math.Abs(losses[s]-wantLoss[s]) > 1e-5*wantLoss[s] {
			t.Errorf("step %d: loss Go %.8g, script %.8g", s, losses[s], wantLoss[s])
		}
		if math.Abs(norms[s]-wantNorm[s]) > 1e-5*wantNorm[s] {
			t.Errorf("step %d: gradient norm Go %.8g, script %.8g", s, norms[s], wantNorm[s])
		}
		if s > 0 && norms[s] < 0.5 {
			t.Errorf("step %d: norm %.3g below the clip 0.5: clipping is not exercised", s, norms[s])
		}
	}
	trained, err := safetensors.Load(filepath.Join(torchDir, "trained.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	init, err := safetensors.Load(filepath.Join(torchDir, "init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	// Compare the weights relative to how far training moved them: Adam's
	// update is about lr per step whatever the gradient, so a wrong moment,
	// bias correction, decay or learning rate shows at that scale.
	var moved, diff float64
	for _, q := range p.List() {
		w, _ := trained.Tensor(q.Name)
		w0, _ := init.Tensor(q.Name)
		for i, v := range q.T.Data {
			moved = max(moved, math.Abs(float64(w.Data[i]-w0.Data[i])))
			diff = max(diff, math.Abs(float64(v-w.Data[i])))
		}
	}
	t.Logf("after 4 steps: largest weight change %.3g, largest Go-script difference %.3g", moved, diff)
	if moved < 1e-3 || diff > 1e-3*moved {
		t.Errorf("weights after 4 steps: Go-script difference %.3g vs change %.3g (want < 1e-3 of it)", diff, moved)
	}
}

func TestTorchParityScriptCheckpointLoads(t *testing.T) {
	g := loadGolden(t)
	_, _, pe, ema := trainFour(t, g)
	dir := filepath.Join(torchDir, "prior")
	file := filepath.Join(dir, "ema.safetensors")
	// As `tsdsr sample prior --model DIR` reads it: config.json + the weights, strictly.
	cfg, err := mmdit.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams(nil)
	if _, err := mmdit.New(cfg, p); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(f, true); err != nil {
		t.Fatalf("config.json + ema.safetensors: %v", err)
	}
	// As `tsdsr train distill --prior FILE` and mmdit.Load read it (config in the metadata).
	dm, _, err := train.LoadPrior(file, "ema")
	if err != nil {
		t.Fatal(err)
	}
	mm, err := mmdit.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if dm.Config != cfg || mm.Config != cfg {
		t.Fatalf("configs differ: config.json %+v, distill %+v, metadata %+v", cfg, dm.Config, mm.Config)
	}
	// The weights are Go's EMA of the same four steps, in BF16: equal after
	// rounding, except where the float32 values straddle a rounding boundary
	// (then within BF16's 2^-8, plus 1e-5 for values near zero).
	info, _ := f.Info("proj_out.weight")
	if info.DType != safetensors.BF16 {
		t.Errorf("shipped dtype %s, want BF16", info.DType)
	}
	ema.CopyTo() // pe now holds Go's EMA
	var n, off int
	for _, q := range pe.List() {
		got := p.Get(q.Name)
		for i, w := range q.T.Data {
			n++
			if tensor.F32ToBF16(w) == tensor.F32ToBF16(got.Data[i]) {
				continue
			}
			off++
			if d := math.Abs(float64(got.Data[i] - w)); d > math.Abs(float64(w))/256+1e-5 {
				t.Fatalf("%s[%d]: script %v, Go EMA %v: beyond BF16 rounding", q.Name, i, got.Data[i], w)
			}
		}
	}
	t.Logf("EMA: %d of %d BF16 values rounded apart, the rest equal", off, n)
	if off > n/100 {
		t.Errorf("%d of %d EMA values rounded apart (want under 1%%)", off, n)
	}
}

// scriptVelocity checks m's velocity at the golden's prefix_x and prefix_t
// against the velocity prefix_v the script computed, to 1e-5 relative error.
func scriptVelocity(t *testing.T, g golden, m *mmdit.Model, prefix, what string) {
	t.Helper()
	defer tensor.NoGrad()()
	if e := relErr(t, m.Velocity(g.tensor(prefix+"_x"), g.tensor(prefix+"_t").Data), g.tensor(prefix+"_v")); e > 1e-5 {
		t.Errorf("%s: the script's velocity differs from Go's by %.3g > 1e-5", what, e)
	} else {
		t.Logf("%s: relative error %.3g", what, e)
	}
}

func TestTorchParityGoCheckpointInScript(t *testing.T) {
	g := loadGolden(t)
	path := filepath.Join(torchDir, "go.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != g.f.Metadata["go_sha256"] {
		t.Fatalf("%s changed since the script read it: rerun python3 scripts/torch/golden.py", path)
	}
	f, err := safetensors.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mmdit.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	scriptVelocity(t, g, m, "go", "Go-written checkpoint")
}

func TestTorchParityShippedStudent(t *testing.T) {
	// The shipped student is a Go-written file of real size (BF16, 192 x 6):
	// the script read it and computed a velocity, which Go must reproduce.
	g := loadGolden(t)
	path := filepath.Join("..", "models", "weights", "tsdsr-small-v2.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%v", err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != g.f.Metadata["ship_sha256"] {
		t.Skipf("%s is not the file the golden was made from (rerun scripts/torch/golden.py)", path)
	}
	m, err := mmdit.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	scriptVelocity(t, g, m, "ship", "shipped student")
}

func TestTorchParityTAESDEncoder(t *testing.T) {
	g := loadGolden(t)
	enc, _, err := taesd.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	defer tensor.NoGrad()()
	if e := relErr(t, enc.Forward(g.tensor("img")), g.tensor("img_latent")); e > 1e-5 {
		t.Errorf("TAESD3 encoder: relative error %.3g > 1e-5", e)
	} else {
		t.Logf("TAESD3 encoder: relative error %.3g", e)
	}
}

func TestTorchParityCacheSplitAndValidation(t *testing.T) {
	// The script reads tsdsr's latent cache, holds out the same photos and
	// measures the validation loss with the same fixed noise (its port of
	// package rng), so both trainers' "val" figures are one measurement.
	g := loadGolden(t)
	c, err := latents.Load(filepath.Join(torchDir, "cache.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	_, val := c.Split(g.float("cache_val_fraction"))
	var crops []int
	if err := json.Unmarshal([]byte(g.f.Metadata["cache_val_crops"]), &crops); err != nil {
		t.Fatal(err)
	}
	if len(crops) != val.Len() {
		t.Fatalf("held out %d crops, the script %d", val.Len(), len(crops))
	}
	for i, k := range crops {
		if val.Photo[i] != c.Photo[k] {
			t.Fatalf("held-out crop %d is of photo %d, the script's of photo %d", i, val.Photo[i], c.Photo[k])
		}
	}
	var want map[string]float64
	if err := json.Unmarshal([]byte(g.f.Metadata["cache_val_loss"]), &want); err != nil {
		t.Fatal(err)
	}
	m, _ := loadTiny(t)
	got := train.ValidationLoss(m.Velocity, val.X, []float32{0.2, 0.5, 0.8}, 8)
	for _, k := range []string{"val_0.2", "val_0.5", "val_0.8", "val"} {
		if math.Abs(got[k]-want[k]) > 1e-5*want[k] {
			t.Errorf("%s: Go %.8g, script %.8g", k, got[k], want[k])
		}
	}
}
