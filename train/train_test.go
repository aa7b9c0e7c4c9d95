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
	rows, err := ReadMetrics(filepath.Join(run.Dir, "metrics.jsonl"))
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

func TestPriorResumeIsExact(t *testing.T) {
	straight, split := t.TempDir(), t.TempDir()
	if err := trainTo(t, straight, false, 20, 0); err != nil {
		t.Fatal(err)
	}
	if err := trainTo(t, split, false, 20, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run returned %v, want context.Canceled", err)
	}
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
	ra, _ := ReadMetrics(filepath.Join(straight, "metrics.jsonl"))
	rb, _ := ReadMetrics(filepath.Join(split, "metrics.jsonl"))
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
