package train

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// standIn is a tiny velocity network with the shape of the real one:
// a 3x3 conv, a timestep embedding added per channel, SiLU, a 3x3 conv.
type standIn struct {
	in, out *nn.Conv2d
	temb    *nn.Linear
	hidden  int
}

func newStandIn(seed uint64, ch, hidden int) (*standIn, *nn.Params) {
	p := nn.NewParams(rng.New(seed))
	return &standIn{
		in:     nn.NewConv2d(p, "conv_in", nn.Conv2dConfig{In: ch, Out: hidden, Kernel: 3, Padding: 1}),
		temb:   nn.NewLinear(p, "time_embedding", 2, hidden, true),
		out:    nn.NewConv2d(p, "conv_out", nn.Conv2dConfig{In: hidden, Out: ch, Kernel: 3, Padding: 1}),
		hidden: hidden,
	}, p
}

func (m *standIn) velocity(x *tensor.Tensor, ts []float32) *tensor.Tensor {
	n := x.Shape[0]
	feat := make([]float32, 2*n)
	for i, t := range ts {
		feat[2*i], feat[2*i+1] = float32(math.Sin(float64(t)/318)), float32(math.Cos(float64(t)/318))
	}
	e := tensor.Reshape(m.temb.Forward(tensor.FromData(feat, n, 2)), n, m.hidden, 1, 1) // [N, hidden, 1, 1]
	h := tensor.SiLU(tensor.Add(m.in.Forward(x), e))                                    // [N, hidden, H, W]
	return m.out.Forward(h)                                                             // [N, C, H, W]
}

// fixedSet serves random batches of a fixed set of latents; onBatch, when
// set, is called before each batch (to interrupt a run mid-way).
type fixedSet struct {
	x       *tensor.Tensor
	onBatch func()
}

func (f *fixedSet) Batch(r *rng.Rand, n int) *tensor.Tensor {
	if f.onBatch != nil {
		f.onBatch()
	}
	per := f.x.Numel() / f.x.Shape[0]
	out := tensor.New(append([]int{n}, f.x.Shape[1:]...)...)
	for i := range n {
		j := r.IntN(f.x.Shape[0])
		copy(out.Data[i*per:(i+1)*per], f.x.Data[j*per:(j+1)*per])
	}
	return out
}

// smoothLatents returns n latents of c channels, s x s: smooth random
// patterns (a learnable distribution, unlike white noise).
func smoothLatents(n, c, s int, seed uint64) *tensor.Tensor {
	r := rng.New(seed)
	x := tensor.New(n, c, s, s)
	for i := range n * c {
		a, b, ph := r.Uniform(-1, 1), r.Uniform(0.2, 0.8), r.Uniform(0, 6)
		for y := range s {
			for xx := range s {
				x.Data[i*s*s+y*s+xx] = float32(a * math.Sin(b*float64(xx+y)+ph))
			}
		}
	}
	return x
}

func tinyOptions(steps int) PriorOptions {
	o := DefaultPriorOptions()
	o.Steps, o.Batch, o.LR, o.Warmup = steps, 4, 3e-3, 5
	o.EMADecay, o.SaveEvery, o.EvalEvery = 0.9, 0, 0
	return o
}

func TestPriorLossDecreases(t *testing.T) {
	x := smoothLatents(4, 4, 8, 1)
	m, p := newStandIn(7, 4, 32)
	before := ValidationLoss(m.velocity, x, []float32{0.2, 0.5, 0.8}, 4)
	run, err := Open(Options{Dir: t.TempDir(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	o := tinyOptions(60)
	o.EMADecay = 0
	if err := TrainPrior(context.Background(), run, m.velocity, p, &fixedSet{x: x}, x, o); err != nil {
		t.Fatal(err)
	}
	after := ValidationLoss(m.velocity, x, []float32{0.2, 0.5, 0.8}, 4)
	t.Logf("validation loss %.4f -> %.4f (per sigma before %v, after %v)", before["val"], after["val"], before, after)
	if after["val"] > 0.6*before["val"] {
		t.Errorf("validation loss %v -> %v: not decreasing by 40%%", before["val"], after["val"])
	}
	rows, err := ReadLog(filepath.Join(run.Dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// 60 step lines and the final evaluation, which is the validation
	// loss computed above.
	if len(rows) != 61 || rows[60]["val"] != after["val"] {
		t.Errorf("%d metric rows, last %v", len(rows), rows[len(rows)-1])
	}
	b, err := os.ReadFile(filepath.Join(run.Dir, "loss.png"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Errorf("loss.png: %v", err)
	}
}

// trainTo runs the stand-in prior in dir up to steps, cancelling the
// context once stopAt batches have been drawn (0: never), and returns
// Loop's error.
func trainTo(t *testing.T, dir string, resume bool, steps, stopAt int) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := smoothLatents(6, 4, 8, 2)
	m, p := newStandIn(11, 4, 16)
	run, err := Open(Options{Dir: dir, Seed: 5, Resume: resume, Config: map[string]any{"steps": steps}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	batches := 0
	data := &fixedSet{x: x, onBatch: func() {
		if batches++; batches == stopAt {
			cancel()
		}
	}}
	o := tinyOptions(steps)
	o.SaveEvery, o.EvalEvery = 7, 5
	return TrainPrior(ctx, run, m.velocity, p, data, x, o)
}

// sameLatestParts checks that the newest checkpoint files of the model,
// optimizer and ema parts of runs a and b are non-empty and byte-identical,
// reporting "part: differ" for each that is not.
func sameLatestParts(t *testing.T, a, b, differ string) {
	t.Helper()
	for _, part := range []string{"model", "optimizer", "ema"} {
		pa, _ := LatestPart(a, part)
		pb, _ := LatestPart(b, part)
		ba, _ := os.ReadFile(pa)
		bb, _ := os.ReadFile(pb)
		if len(ba) == 0 || !bytes.Equal(ba, bb) {
			t.Errorf("%s: %s", part, differ)
		}
	}
}

// straightAndSplit runs train in two new directories: straight, to the
// end, and split, interrupted once stopAt batches have been drawn (the
// run must return context.Canceled).
func straightAndSplit(t *testing.T, stopAt int, train func(dir string, resume bool, stopAt int) error) (straight, split string) {
	t.Helper()
	straight, split = t.TempDir(), t.TempDir()
	if err := train(straight, false, 0); err != nil {
		t.Fatal(err)
	}
	if err := train(split, false, stopAt); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run returned %v, want context.Canceled", err)
	}
	return straight, split
}

// trainTo20 is trainTo for runs of 20 steps.
func trainTo20(t *testing.T) func(dir string, resume bool, stopAt int) error {
	return func(dir string, resume bool, stopAt int) error { return trainTo(t, dir, resume, 20, stopAt) }
}

func TestPriorResumeIsExact(t *testing.T) {
	straight, split := straightAndSplit(t, 10, trainTo20(t))
	st, err := ReadState(split)
	if err != nil || st.Step != 10 {
		t.Fatalf("interrupted run's checkpoint: step %d, %v", st.Step, err)
	}
	if err := trainTo(t, split, true, 20, 0); err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"model", "optimizer", "ema"} {
		a, errA := LatestPart(straight, part)
		b, errB := LatestPart(split, part)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		ba, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if len(ba) == 0 || !bytes.Equal(ba, bb) {
			t.Errorf("%s: 20 steps and 10 + resume + 10 differ (%d vs %d bytes)", part, len(ba), len(bb))
		}
	}
	ra, _ := ReadLog(filepath.Join(straight, "metrics.jsonl"))
	rb, _ := ReadLog(filepath.Join(split, "metrics.jsonl"))
	if len(ra) != len(rb) {
		t.Fatalf("metric rows %d vs %d", len(ra), len(rb))
	}
	for i := range ra {
		for _, k := range []string{"step", "loss", "val"} {
			if ra[i][k] != rb[i][k] {
				t.Errorf("row %d %s: %v vs %v", i, k, ra[i][k], rb[i][k])
			}
		}
	}
	// Keep = 2: the checkpoints of steps 14 and 20 remain.
	ents, _ := os.ReadDir(filepath.Join(straight, "checkpoints"))
	if len(ents) != 2 || ents[0].Name() != "step-00000014" || ents[1].Name() != "step-00000020" {
		t.Errorf("checkpoints kept: %v", ents)
	}
}

func TestPruneKeepsCurrent(t *testing.T) {
	dir := t.TempDir()
	run, err := Open(Options{Dir: dir, Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	// A checkpoint left half-written by a dead session, ahead of the run.
	if err := os.MkdirAll(filepath.Join(dir, "checkpoints", "step-00000009"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{3, 5} {
		if err := run.Save(s); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if len(ents) != 1 || ents[0].Name() != "step-00000005" {
		t.Errorf("checkpoints after saving 3 and 5 with Keep 1: %v", ents)
	}
}

func TestOpenGuards(t *testing.T) {
	dir := t.TempDir()
	if err := trainTo(t, dir, false, 3, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Seed: 5}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("reopening a run without resume: %v", err)
	}
	run, err := Open(Options{Dir: dir, Seed: 5, Resume: true, Config: map[string]any{"steps": 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("resuming with other settings: %v", err)
	}
}

func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "checkpoints"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestResumeWithoutStateJSON: with the run's state.json gone, --resume
// used to start over and delete every checkpoint. It must resume from the
// newest checkpoint's own record (exactly, as from state.json), keep a
// checkpoint that is not this run's, and refuse when no checkpoint has a
// record.
func TestResumeWithoutStateJSON(t *testing.T) {
	straight, split := straightAndSplit(t, 15, trainTo20(t))
	// Checkpoints at 7 and 14 (SaveEvery 7) and 15 (the interruption).
	if err := os.Remove(filepath.Join(split, stateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: split, Seed: 5, Config: map[string]any{"steps": 20}}); err == nil {
		t.Error("a fresh start was allowed beside existing checkpoints")
	}
	// A checkpoint of another recipe, in the way of nothing.
	foreign := filepath.Join(split, "checkpoints", "step-00000003")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, stateFile), []byte(`{"step": 3, "seed": 1, "config": {"other": true}}`), 0o644)
	if err := trainTo(t, split, true, 20, 0); err != nil {
		t.Fatal(err)
	}
	sameLatestParts(t, straight, split, "resuming from the checkpoint's own record is not exact")
	if got := strings.Join(checkpointNames(t, split), " "); got != "step-00000003 step-00000015 step-00000020" {
		t.Errorf("checkpoints after the resume: %s", got)
	}

	// Checkpoint folders, none with a record: refuse, delete nothing.
	bare := t.TempDir()
	os.MkdirAll(filepath.Join(bare, "checkpoints", "step-00000007"), 0o755)
	os.WriteFile(filepath.Join(bare, "checkpoints", "step-00000007", "model.safetensors"), []byte("weights"), 0o644)
	run, err := Open(Options{Dir: bare, Seed: 5, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("checkpoints without records: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bare, "checkpoints", "step-00000007", "model.safetensors")); err != nil {
		t.Error(err)
	}
}

// TestResumeRefusesChangedFile: a part file that differs from the SHA-256
// its state recorded is refused.
func TestResumeRefusesChangedFile(t *testing.T) {
	dir := t.TempDir()
	if err := trainTo(t, dir, false, 7, 0); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(dir)
	if err != nil || len(st.SHA256) != 3 {
		t.Fatalf("state records %d checksums, %v", len(st.SHA256), err)
	}
	path, _ := LatestPart(dir, "ema")
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1 // one bit of one weight: still a valid file
	os.WriteFile(path, b, 0o644)
	_, p := newStandIn(11, 4, 16)
	run, err := Open(Options{Dir: dir, Seed: 5, Resume: true, Config: map[string]any{"steps": 7}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	run.Add("model", Weights(p))
	run.Add("optimizer", nn.NewAdamW(p.List(), nn.AdamWConfig{}))
	run.Add("ema", nn.NewEMA(p.List(), 0.9))
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("resume from a changed file: %v", err)
	}
}

// TestResumeRefusesNonFinite: a checkpoint whose weights hold NaN used to
// resume "successfully" into skipped steps; it is refused at load.
func TestResumeRefusesNonFinite(t *testing.T) {
	dir := t.TempDir()
	_, p := newStandIn(1, 4, 8)
	p.List()[0].T.Data[2] = float32(math.NaN())
	run, err := Open(Options{Dir: dir, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	run.Add("model", Weights(p))
	if err := run.Save(4); err != nil {
		t.Fatal(err)
	}
	run.Close()
	_, q := newStandIn(2, 4, 8)
	run, err = Open(Options{Dir: dir, Seed: 1, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	run.Add("model", Weights(q))
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("resume from NaN weights: %v", err)
	}
}

// TestLoopStopsOnNonFiniteSteps: five non-finite steps in a row stop the
// run with an error and no checkpoint; isolated ones do not.
func TestLoopStopsOnNonFiniteSteps(t *testing.T) {
	for _, c := range []struct {
		name    string
		metrics func(s int) Scalars
		stopAt  int // 0: runs to the end
	}{
		{"nan loss", func(int) Scalars { return Scalars{"loss": math.NaN()} }, 5},
		{"skipped", func(int) Scalars { return Scalars{"loss": 1, "skipped": 1} }, 5},
		{"inf gradient after 3 good", func(s int) Scalars {
			if s < 3 {
				return Scalars{"loss": 1, "grad_norm": 1}
			}
			return Scalars{"loss": 1, "grad_norm": math.Inf(1)}
		}, 8},
		{"every other step", func(s int) Scalars { return Scalars{"loss": []float64{1, math.NaN()}[s%2]} }, 0},
	} {
		dir := t.TempDir()
		run, err := Open(Options{Dir: dir, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Restore(); err != nil {
			t.Fatal(err)
		}
		steps := 0
		err = run.Loop(context.Background(), Loop{Steps: 12, Step: func(s int, _ *rng.Rand) (Scalars, int, error) {
			steps++
			return c.metrics(s), 1, nil
		}})
		run.Close()
		if c.stopAt == 0 {
			if err != nil || steps != 12 {
				t.Errorf("%s: %v after %d steps", c.name, err, steps)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "non-finite") || steps != c.stopAt {
			t.Errorf("%s: %v after %d steps, want an error after %d", c.name, err, steps, c.stopAt)
		}
		if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
			t.Errorf("%s: a checkpoint was saved", c.name)
		}
	}
}

func sameWeights(t *testing.T, what string, a, b []nn.Param) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d vs %d parameters", what, len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("%s: parameter %d is %s vs %s", what, i, a[i].Name, b[i].Name)
		}
		for j, v := range a[i].T.Data {
			if v != b[i].T.Data[j] {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, a[i].Name, j, v, b[i].T.Data[j])
			}
		}
	}
}

// TestLoadPrior loads a prior from each layout LoadPrior accepts: a training
// run directory (config.json + the latest checkpoint's part), one of its
// checkpoint files, a diffusers-style directory, a folder of published
// weights and a self-describing file.
func TestLoadPrior(t *testing.T) {
	prior, p := tinyMMDiT(t, 2)
	r := rng.New(3)
	for _, q := range p.List() {
		r.FillNormal(q.T.Data, 0, 0.1)
	}
	dir := t.TempDir()
	run, err := Open(Options{Dir: dir, Config: "prior"})
	if err != nil {
		t.Fatal(err)
	}
	run.Add("model", Weights(prior.Params))
	if _, err := run.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteJSON("config.json", prior.Config); err != nil {
		t.Fatal(err)
	}
	if err := run.Save(3); err != nil {
		t.Fatal(err)
	}
	run.Close()
	checkpoint, _ := LatestPart(dir, "model")

	diffusers := t.TempDir()
	if err := prior.Params.Save(filepath.Join(diffusers, "diffusion_pytorch_model.safetensors"), safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"_class_name": "SD3Transformer2DModel", "sample_size": 8, "patch_size": 2, "in_channels": 16, "num_layers": 1,
		"attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32, "caption_projection_dim": 32,
		"pooled_projection_dim": 32, "out_channels": 16, "pos_embed_max_size": 16, "context_tokens": 4}`
	if err := WriteFileAtomic(filepath.Join(diffusers, "config.json"), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	published := t.TempDir()
	if err := prior.Params.Save(filepath.Join(published, "ema.safetensors"), safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(published, "config.json"), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(t.TempDir(), "student.safetensors")
	if err := prior.Save(self, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ path, weights string }{
		{dir, checkpoint}, // no "ema" part: the model weights
		{checkpoint, checkpoint},
		{diffusers, diffusers},
		{published, filepath.Join(published, "ema.safetensors")},
		{self, self},
	} {
		got, weights, err := LoadPrior(c.path, "ema")
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if weights != c.weights || got.Config != prior.Config {
			t.Errorf("%s: read %s (want %s), config %+v", c.path, weights, c.weights, got.Config)
		}
		sameWeights(t, c.path, prior.Params.List(), got.Params.List())
		if len(got.Params.Trainable()) != 0 {
			t.Errorf("%s: the prior is not frozen", c.path)
		}
	}
	if _, _, err := LoadPrior(t.TempDir(), "ema"); err == nil || !strings.Contains(err.Error(), "no weights") {
		t.Errorf("empty directory: %v", err)
	}
	bare := filepath.Join(t.TempDir(), "a", "b", "w.safetensors")
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prior.Params.Save(bare, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadPrior(bare, "ema"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("weights without any config: %v", err)
	}
}
