package distill

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/metrics"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
	"tsdsr/train"
)

func tinyConfig() mmdit.Config {
	return mmdit.Config{SampleSize: 8, PatchSize: 2, InChannels: 16, NumLayers: 2, AttentionHeadDim: 8,
		NumAttentionHeads: 2, JointAttentionDim: 16, CaptionProjectionDim: 16, PooledProjectionDim: 16,
		OutChannels: 16, PosEmbedMaxSize: 8, ContextTokens: 2}
}

// tinyPrior is a tiny transformer with every weight random (DiT's zero
// initialisation would make it predict zero velocity everywhere).
func tinyPrior(t testing.TB) *mmdit.Model {
	m, err := mmdit.New(tinyConfig(), nn.NewParams(nil))
	if err != nil {
		t.Fatal(err)
	}
	fillWeights(m, 99)
	return m
}

// fillWeights draws all of m's weights from N(0, 0.15^2), seeded by seed.
func fillWeights(m *mmdit.Model, seed uint64) {
	r := rng.New(seed)
	for _, p := range m.Params.List() {
		r.FillNormal(p.T.Data, 0, 0.15)
	}
}

// tinyBatch is batch s of a deterministic latent stream.
func tinyBatch(s int) Batch {
	r := rng.New(1234).Child(uint64(s))
	zh := randn(r, 0, 1, 2, 16, 8, 8)
	zl := tensor.New(zh.Shape...)
	for i, v := range zh.Data {
		zl.Data[i] = 0.7*v + 0.3*float32(r.Normal())
	}
	return Batch{ZL: zl, ZH: zh}
}

// tinyPixelBatch is tinyBatch with HR crops, for the pixel loss and the
// pixel discriminator.
func tinyPixelBatch(s int) Batch {
	b := tinyBatch(s)
	b.HR = randn(rng.New(8).Child(uint64(s)), 0.5, 0.2, 2, 3, 64, 64)
	return b
}

func tinyRecipe() Config {
	c := DefaultConfig()
	c.LoRARank, c.FakeRank, c.Steps, c.Warmup, c.LR, c.LRFake, c.Seed = 4, 2, 4, 1, 1e-3, 1e-3, 5
	return c
}

// runTiny trains steps [restored, upto) in dir and returns the trainer.
func runTiny(t *testing.T, dir string, cfg Config, upto int, resume bool) *Trainer {
	tr, err := NewTrainer(cfg, tinyPrior(t))
	if err != nil {
		t.Fatal(err)
	}
	batch := tinyBatch
	if cfg.NeedsPixels() {
		if _, tr.Decoder, err = taesd.Embedded(); err != nil {
			t.Fatal(err)
		}
		batch = tinyPixelBatch
	}
	run, err := train.Open(train.Options{Dir: dir, Seed: 77, Resume: resume, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	tr.Register(run)
	if _, err := run.Restore(); err != nil {
		t.Fatal(err)
	}
	err = run.Loop(context.Background(), train.Loop{Steps: upto, Step: func(s int, r *rng.Rand) (train.Scalars, int, error) {
		m, err := tr.Step(batch(s), r)
		return m, 2, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func sameParams(t *testing.T, what string, a, b []nn.Param) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d vs %d parameters", what, len(a), len(b))
	}
	for i := range a {
		for j, v := range a[i].T.Data {
			if v != b[i].T.Data[j] {
				t.Fatalf("%s: %s[%d] = %v straight, %v resumed", what, a[i].Name, j, v, b[i].T.Data[j])
			}
		}
	}
}

// straightAndResumed trains cfg 4 steps straight and 2 + resume + 2, and
// checks that the students end bit for bit equal.
func straightAndResumed(t *testing.T, cfg Config) (straight, resumed *Trainer) {
	straight = runTiny(t, t.TempDir(), cfg, 4, false)
	dir := t.TempDir()
	runTiny(t, dir, cfg, 2, false)
	resumed = runTiny(t, dir, cfg, 4, true)
	sameParams(t, "student", straight.OptStudent.Params(), resumed.OptStudent.Params())
	return straight, resumed
}

// TestResumeIsExact trains 4 steps straight and 2 + resume + 2 with TSD,
// DASM and the fake score: student adapters, fake adapters and both
// optimisers must end bit for bit equal.
func TestResumeIsExact(t *testing.T) {
	straight, resumed := straightAndResumed(t, tinyRecipe())
	sameParams(t, "fake", straight.OptFake.Params(), resumed.OptFake.Params())
	if straight.OptStudent.Steps() != 4 || resumed.OptStudent.Steps() != 4 || resumed.OptFake.Steps() != 4 {
		t.Errorf("optimiser steps %d, %d, %d; want 4", straight.OptStudent.Steps(), resumed.OptStudent.Steps(), resumed.OptFake.Steps())
	}
	moved := false
	for _, p := range straight.OptStudent.Params() {
		for _, v := range p.T.Data {
			moved = moved || (strings.HasSuffix(p.Name, ".lora_B.weight") && v != 0)
		}
	}
	if !moved {
		t.Error("the student's LoRA B matrices never left zero")
	}
}

// TestStepModes runs one step of each regulariser and of full fine-tuning
// and checks the losses reported and which weights moved.
func TestStepModes(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Config)
		keys []string
	}{
		{"none", func(c *Config) { c.Reg = RegNone }, []string{"loss", "mse", "grad_norm", "lr"}},
		{"vsd", func(c *Config) { c.Reg, c.DASM = RegVSD, false }, []string{"loss", "mse", "tsd", "fake", "lr_fake"}},
		{"tsd-dasm", func(c *Config) {}, []string{"loss", "mse", "tsd", "fake"}},
		{"full", func(c *Config) { c.FullFinetune, c.LoRARank = true, 0 }, []string{"loss", "tsd", "fake"}},
		{"pixel", func(c *Config) { c.Reg, c.WPix = RegNone, 0.5 }, []string{"loss", "mse", "pix"}},
		{"ssim", func(c *Config) { c.Reg, c.WPix, c.WSSIM = RegNone, 0.5, 2 }, []string{"loss", "mse", "pix", "ssim_loss"}},
	} {
		cfg := tinyRecipe()
		cfg.Warmup = 0 // warm-up would make step 0's rate zero
		c.edit(&cfg)
		prior := tinyPrior(t)
		before := prior.Params.Get("transformer_blocks.0.attn.to_q.weight").Clone()
		tr, err := NewTrainer(cfg, prior)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b := tinyBatch(0)
		if cfg.NeedsPixels() {
			if _, tr.Decoder, err = taesd.Embedded(); err != nil {
				t.Fatal(err)
			}
			b = tinyPixelBatch(0)
		}
		m, err := tr.Step(b, rng.New(3))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, k := range c.keys {
			if v, ok := m[k]; !ok || math.IsNaN(v) {
				t.Errorf("%s: metric %s = %v (present %v)", c.name, k, v, ok)
			}
		}
		if want := m["mse"] + m["tsd"] + cfg.WPix*m["pix"] + cfg.WSSIM*m["ssim_loss"]; math.Abs(m["loss"]-want) > 1e-6*(1+want) {
			t.Errorf("%s: loss %g, want w_mse mse + w_tsd tsd = %g", c.name, m["loss"], want)
		}
		if (cfg.Reg == RegNone) != (tr.Fake == nil) {
			t.Errorf("%s: fake score present = %v", c.name, tr.Fake != nil)
		}
		q := tr.Student.Params.Get("transformer_blocks.0.attn.to_q.weight")
		changed := false
		for i, v := range q.Data {
			changed = changed || v != before.Data[i]
		}
		if changed != cfg.FullFinetune {
			t.Errorf("%s: student base weight changed = %v", c.name, changed)
		}
		for i, v := range prior.Params.Get("transformer_blocks.0.attn.to_q.weight").Data {
			if v != before.Data[i] {
				t.Fatalf("%s: the teacher moved", c.name)
			}
		}
		for _, p := range tr.OptStudent.Params() {
			if p.Name == "prompt_embeds" || p.Name == "pooled_prompt_embeds" {
				t.Errorf("%s: the fixed prompt %s is trained", c.name, p.Name)
			}
		}
	}
}

// TestSaveLoadStudent trains a LoRA student a few steps, saves it merged
// and checks that the loaded model predicts what the adapted one does and
// that saving left the student's weights untouched.
func TestSaveLoadStudent(t *testing.T) {
	cfg := tinyRecipe()
	tr, err := NewTrainer(cfg, tinyPrior(t))
	if err != nil {
		t.Fatal(err)
	}
	for s := range 3 {
		if _, err := tr.Step(tinyBatch(s), rng.New(uint64(s))); err != nil {
			t.Fatal(err)
		}
	}
	snap := map[string][]float32{}
	for _, p := range tr.Student.Params.List() {
		snap[p.Name] = append([]float32(nil), p.T.Data...)
	}
	path := filepath.Join(t.TempDir(), "student.safetensors")
	if err := SaveStudent(path, tr.Student, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	for _, p := range tr.Student.Params.List() {
		for i, v := range p.T.Data {
			if v != snap[p.Name][i] {
				t.Fatalf("SaveStudent changed %s", p.Name)
			}
		}
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Names() {
		if nn.IsLoRA(n) {
			t.Errorf("merged checkpoint holds adapter %s", n)
		}
	}
	f.Close()
	got, err := mmdit.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != tr.Student.Config {
		t.Errorf("config %+v, want %+v", got.Config, tr.Student.Config)
	}
	defer tensor.NoGrad()()
	zl := tinyBatch(9).ZL
	a, b := flow.OneStep(tr.Student.Velocity, zl), flow.OneStep(got.Velocity, zl)
	var worst float64
	for i, v := range a.Data {
		worst = max(worst, math.Abs(float64(v-b.Data[i])))
	}
	if worst > 1e-4 {
		t.Errorf("loaded student differs from the adapted one by %g", worst)
	}
	prior, _, err := train.LoadPrior(path, "ema")
	if err != nil || prior.Config != got.Config {
		t.Errorf("LoadPrior on a student file: %v", err)
	}
}

// TestTrainerFrom: the student starts from the given model while the teacher
// and the fake score stay the prior; a start of another shape is refused.
func TestTrainerFrom(t *testing.T) {
	prior, start := tinyPrior(t), tinyPrior(t)
	fillWeights(start, 5)
	cfg := tinyRecipe()
	cfg.FullFinetune = true
	tr, err := NewTrainerFrom(cfg, prior, start)
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, "student vs start", start.Params.List(), tr.Student.Params.List())
	sameParams(t, "teacher vs prior", tinyPrior(t).Params.List(), tr.Teacher.Params.List())
	fake := tr.Fake.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) })
	sameParams(t, "fake base vs prior", tinyPrior(t).Params.List(), fake)

	other := tinyConfig()
	other.NumLayers = 1
	m, err := mmdit.New(other, nn.NewParams(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTrainerFrom(cfg, tinyPrior(t), m); err == nil || !strings.Contains(err.Error(), "not shaped like the prior") {
		t.Errorf("start of another shape: err = %v", err)
	}
}

// TestInterpolate: alpha 0 and 1 give the end points exactly, 0.5 the
// mean; other shapes and alphas outside [0, 1] are refused.
func TestInterpolate(t *testing.T) {
	a, b := tinyPrior(t), tinyPrior(t)
	fillWeights(b, 8)
	m0, err := Interpolate(a, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameParams(t, "alpha 0", a.Params.List(), m0.Params.List())
	m1, _ := Interpolate(a, b, 1)
	sameParams(t, "alpha 1", b.Params.List(), m1.Params.List())
	mh, _ := Interpolate(a, b, 0.5)
	pa, pb, ph := a.Params.List(), b.Params.List(), mh.Params.List()
	for i := range ph {
		for j, v := range ph[i].T.Data {
			if want := 0.5*pa[i].T.Data[j] + 0.5*pb[i].T.Data[j]; math.Abs(float64(v-want)) > 1e-6 {
				t.Fatalf("%s[%d] = %v, want %v", ph[i].Name, j, v, want)
			}
		}
	}
	for _, alpha := range []float64{-0.1, 1.5, math.NaN()} {
		if _, err := Interpolate(a, b, alpha); err == nil {
			t.Errorf("alpha %v accepted", alpha)
		}
	}
	other := tinyConfig()
	other.NumLayers = 1
	c, _ := mmdit.New(other, nn.NewParams(nil))
	if _, err := Interpolate(a, c, 0.5); err == nil || !strings.Contains(err.Error(), "differ in shape") {
		t.Errorf("other shape: err = %v", err)
	}
}

// TestStudentEMA checks the student's weight average: after each step it
// is the warm-up-weighted average of the weights (decay (1+n)/(10+n) capped
// at Config.EMA, tracked here by hand), and it resumes exactly from a
// checkpoint like the optimisers.
func TestStudentEMA(t *testing.T) {
	cfg := tinyRecipe()
	cfg.EMA = 0.5
	tr, err := NewTrainer(cfg, tinyPrior(t))
	if err != nil {
		t.Fatal(err)
	}
	params := tr.OptStudent.Params()
	want := make([][]float64, len(params))
	for i, p := range params {
		for _, v := range p.T.Data {
			want[i] = append(want[i], float64(v))
		}
	}
	for s := range 3 {
		if _, err := tr.Step(tinyBatch(s), rng.New(uint64(s))); err != nil {
			t.Fatal(err)
		}
		d := min(cfg.EMA, float64(1+s)/float64(10+s))
		for i, p := range params {
			for j, v := range p.T.Data {
				want[i][j] = d*want[i][j] + (1-d)*float64(v)
			}
		}
	}
	if tr.EMA.Updates() != 3 {
		t.Fatalf("%d EMA updates, want 3", tr.EMA.Updates())
	}
	tr.EMA.Swap()
	for i, p := range params {
		for j, v := range p.T.Data {
			if math.Abs(float64(v)-want[i][j]) > 1e-6*(1+math.Abs(want[i][j])) {
				t.Fatalf("%s[%d]: average %v, want %v", p.Name, j, v, want[i][j])
			}
		}
	}
	tr.EMA.Swap()

	straight := runTiny(t, t.TempDir(), cfg, 4, false)
	dir := t.TempDir()
	runTiny(t, dir, cfg, 2, false)
	resumed := runTiny(t, dir, cfg, 4, true)
	straight.EMA.Swap()
	resumed.EMA.Swap()
	sameParams(t, "student EMA", straight.OptStudent.Params(), resumed.OptStudent.Params())
}

// TestSSIMLoss: 1 - SSIMLoss is the evaluation's SSIM (metrics, pyiqa's
// conventions, which also round luma to 8 bits: hence the tolerance) on a
// 64 x 64 pair, 0 for identical images, and its gradient matches finite
// differences.
func TestSSIMLoss(t *testing.T) {
	r := rng.New(11)
	hr := randn(r.Child(0), 0.5, 0.15, 1, 3, 64, 64)
	sr := tensor.Add(hr, randn(r.Child(1), 0, 0.05, 1, 3, 64, 64))
	for _, x := range []*tensor.Tensor{hr, sr} {
		for i, v := range x.Data {
			x.Data[i] = float32(math.Round(float64(min(max(v, 0), 1))*255) / 255)
		}
	}
	toImage := func(x *tensor.Tensor) *imageio.Image {
		m := imageio.NewImage(64, 64, 3)
		copy(m.Pix, x.Data)
		return m
	}
	ssim, err := metrics.New("ssim", metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ssim.Compute(toImage(sr), toImage(hr))
	if err != nil {
		t.Fatal(err)
	}
	got := 1 - float64(SSIMLoss(sr, hr).Item())
	t.Logf("SSIM %.5f, metrics %.5f", got, want)
	if math.Abs(got-want) > 2e-3 || want > 0.99 || want < 0.3 {
		t.Errorf("1 - SSIMLoss %.5f, metrics' SSIM %.5f", got, want)
	}
	if l := SSIMLoss(hr, hr).Item(); math.Abs(float64(l)) > 1e-6 {
		t.Errorf("SSIMLoss of identical images %g", l)
	}
	x := sr.Clone()
	x.SetRequiresGrad(true)
	SSIMLoss(x, hr).Backward()
	for _, i := range []int{0, 777, 3*64*64 - 1, 64*64 + 2080} {
		const h = 1e-2
		p, m := sr.Clone(), sr.Clone()
		p.Data[i] += h
		m.Data[i] -= h
		fd := float64(SSIMLoss(p, hr).Item()-SSIMLoss(m, hr).Item()) / (2 * h)
		if g := float64(x.Grad.Data[i]); math.Abs(g-fd) > 0.05*math.Abs(fd)+1e-5 {
			t.Errorf("gradient at %d: %g, finite difference %g", i, g, fd)
		}
	}
}

// GridLoss is metrics' grid squared, on an image that has a 16-pixel grid
// and on one that has none, and its gradient matches finite differences.
func TestGridLoss(t *testing.T) {
	const side = 4*metrics.GridPeriod + 1 // whole periods of steps, as the metric counts them
	r := rng.New(12)
	noise := randn(r.Child(0), 0.5, 0.1, 1, 3, side, side)
	grid := noise.Clone()
	for c := range 3 {
		for y := range side {
			for x := range side {
				if x%metrics.GridPeriod == 0 || y%metrics.GridPeriod == 0 {
					grid.Data[(c*side+y)*side+x] += 0.15
				}
			}
		}
	}
	gm, err := metrics.New("grid", metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		x    *tensor.Tensor
	}{{"noise", noise}, {"grid", grid}} {
		x := tc.x
		for i, v := range x.Data {
			x.Data[i] = float32(math.Round(float64(min(max(v, 0), 1))*255) / 255)
		}
		m := imageio.NewImage(side, side, 3)
		copy(m.Pix, x.Data)
		want, err := gm.Compute(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := math.Sqrt(float64(GridLoss(x).Item()))
		t.Logf("%s: sqrt(GridLoss) %.4f, metrics' grid %.4f", tc.name, got, want)
		if math.Abs(got-want) > 0.02*want+2e-3 {
			t.Errorf("%s: sqrt(GridLoss) %.4f, metrics' grid %.4f", tc.name, got, want)
		}
	}
	if g := math.Sqrt(float64(GridLoss(grid).Item())); g < 0.2 {
		t.Errorf("a drawn 16-pixel grid scores %.3f", g)
	}
	x := grid.Clone()
	x.SetRequiresGrad(true)
	GridLoss(x).Backward()
	for _, i := range []int{0, 17, side*side + 5*side + 16, 3*side*side - 1} {
		const h = 1e-3
		p, m := grid.Clone(), grid.Clone()
		p.Data[i] += h
		m.Data[i] -= h
		fd := float64(GridLoss(p).Item()-GridLoss(m).Item()) / (2 * h)
		if g := float64(x.Grad.Data[i]); math.Abs(g-fd) > 0.05*math.Abs(fd)+1e-5 {
			t.Errorf("gradient at %d: %g, finite difference %g", i, g, fd)
		}
	}
}
