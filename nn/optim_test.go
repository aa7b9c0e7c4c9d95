package nn

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"tsdsr/internal/parallel"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// TestAdamWMatchesFloat64Reference runs AdamW on fixed gradients and
// compares with torch.optim.AdamW's update written out in float64.
func TestAdamWMatchesFloat64Reference(t *testing.T) {
	cfg := AdamWConfig{LR: 0.05, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0.1}
	w := tensor.FromData([]float32{0.5, -1, 2, 0, 1e-3}, 5).SetRequiresGrad(true)
	o := NewAdamW([]Param{{"w", w}}, cfg)
	ref := make([]float64, 5)
	m, v := make([]float64, 5), make([]float64, 5)
	for i, x := range w.Data {
		ref[i] = float64(x)
	}
	r := rng.New(1)
	for step := 1; step <= 20; step++ {
		g := make([]float32, 5)
		r.FillNormal(g, 0, 1)
		w.Grad = tensor.FromData(g, 5)
		o.Step()
		for i := range ref {
			gi := float64(g[i])
			ref[i] *= 1 - cfg.LR*cfg.WeightDecay
			m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*gi
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*gi*gi
			bc1 := 1 - math.Pow(cfg.Beta1, float64(step))
			bc2 := 1 - math.Pow(cfg.Beta2, float64(step))
			ref[i] -= cfg.LR / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + cfg.Eps)
		}
	}
	for i := range ref {
		if d := math.Abs(float64(w.Data[i]) - ref[i]); d > 1e-5 {
			t.Errorf("w[%d] = %v, reference %v", i, w.Data[i], ref[i])
		}
	}
	if o.Steps() != 20 {
		t.Errorf("Steps %d", o.Steps())
	}
}

// TestAdamWFirstStepIsSignStep checks a property independent of the
// formula's transcription: bias correction makes the first update lr*sign(g).
func TestAdamWFirstStepIsSignStep(t *testing.T) {
	w := tensor.FromData([]float32{1, 1, 1}, 3).SetRequiresGrad(true)
	w.Grad = tensor.FromData([]float32{100, -1e-3, 0.5}, 3)
	untouched := tensor.FromData([]float32{7}, 1).SetRequiresGrad(true) // no gradient
	o := NewAdamW([]Param{{"w", w}, {"u", untouched}}, AdamWConfig{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Eps: 1e-12})
	o.Step()
	for i, want := range []float32{0.9, 1.1, 0.9} {
		if math.Abs(float64(w.Data[i]-want)) > 1e-6 {
			t.Errorf("w[%d] = %v, want %v", i, w.Data[i], want)
		}
	}
	if untouched.Data[0] != 7 {
		t.Error("a parameter without gradient moved")
	}
}

// trainLinear runs steps of AdamW on a least-squares problem, with an EMA.
func trainLinear(l *Linear, o *AdamW, e *EMA, sched Schedule, steps int) {
	x := tensor.New(8, 6)
	y := tensor.New(8, 3)
	r := rng.New(11)
	r.FillNormal(x.Data, 0, 1)
	r.FillNormal(y.Data, 0, 1)
	for range steps {
		o.ZeroGrad()
		tensor.MSE(l.Forward(x), y).Backward()
		ClipGradNorm(o.Params(), 0.5)
		o.LR = sched(o.Steps())
		o.Step()
		e.Update()
	}
}

func TestResumeIsExact(t *testing.T) {
	dir := t.TempDir()
	sched := CosineWarmup(0.05, 3, 20)
	cfg := DefaultAdamW()
	newRun := func() (*Params, *Linear, *AdamW, *EMA) {
		p := NewParams(rng.New(2))
		l := NewLinear(p, "proj", 6, 3, true)
		return p, l, NewAdamW(p.Trainable(), cfg), NewEMA(p.Trainable(), 0.9)
	}
	// Uninterrupted: 20 steps.
	p1, l1, o1, e1 := newRun()
	trainLinear(l1, o1, e1, sched, 20)

	// Interrupted after 8 steps, checkpointed, restored into a fresh run.
	p2, l2, o2, e2 := newRun()
	trainLinear(l2, o2, e2, sched, 8)
	mustSave(t, p2.Save(filepath.Join(dir, "model.safetensors"), safetensors.F32, nil))
	mustSave(t, o2.Save(filepath.Join(dir, "optim.safetensors")))
	mustSave(t, e2.Save(filepath.Join(dir, "ema.safetensors")))
	p3, l3, o3, e3 := newRun()
	if _, err := p3.Load(mustLoad(t, filepath.Join(dir, "model.safetensors")), true); err != nil {
		t.Fatal(err)
	}
	if err := o3.Load(mustLoad(t, filepath.Join(dir, "optim.safetensors"))); err != nil {
		t.Fatal(err)
	}
	if err := e3.Load(mustLoad(t, filepath.Join(dir, "ema.safetensors"))); err != nil {
		t.Fatal(err)
	}
	if o3.Steps() != 8 || e3.Updates() != 8 {
		t.Fatalf("restored step %d, EMA updates %d", o3.Steps(), e3.Updates())
	}
	trainLinear(l3, o3, e3, sched, 12)
	for _, q := range p1.List() {
		if !slices.Equal(q.T.Data, p3.Get(q.Name).Data) {
			t.Errorf("%s: resumed run differs from the uninterrupted one", q.Name)
		}
	}
	e1.Swap()
	e3.Swap()
	for _, q := range p1.List() {
		if !slices.Equal(q.T.Data, p3.Get(q.Name).Data) {
			t.Errorf("%s: resumed EMA differs", q.Name)
		}
	}

	// The EMA file is a model checkpoint.
	q := NewParams(nil)
	NewLinear(q, "proj", 6, 3, true)
	if _, err := q.Load(mustLoad(t, filepath.Join(dir, "ema.safetensors")), true); err != nil {
		t.Errorf("EMA file as a checkpoint: %v", err)
	}
	// A state for other parameters is refused.
	other := NewParams(rng.New(1))
	NewLinear(other, "proj", 6, 4, true)
	if err := NewAdamW(other.Trainable(), cfg).Load(mustLoad(t, filepath.Join(dir, "optim.safetensors"))); err == nil {
		t.Error("AdamW state of another shape loaded")
	}
	if err := NewAdamW(other.Trainable(), cfg).Load(mustLoad(t, filepath.Join(dir, "ema.safetensors"))); err == nil {
		t.Error("EMA file loaded as AdamW state")
	}
	if err := NewEMA(other.Trainable(), 0.9).Load(mustLoad(t, filepath.Join(dir, "ema.safetensors"))); err == nil {
		t.Error("EMA of another shape loaded")
	}
}

func mustSave(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestClipGradNorm(t *testing.T) {
	a := tensor.New(2).SetRequiresGrad(true)
	b := tensor.New(1).SetRequiresGrad(true)
	c := tensor.New(3).SetRequiresGrad(true) // no gradient
	a.Grad = tensor.FromData([]float32{3, 0}, 2)
	b.Grad = tensor.FromData([]float32{4}, 1)
	ps := []Param{{"a", a}, {"b", b}, {"c", c}}
	if n := ClipGradNorm(ps, 10); n != 5 || a.Grad.Data[0] != 3 {
		t.Errorf("below the limit: norm %v, grad %v", n, a.Grad.Data)
	}
	if n := ClipGradNorm(ps, 1); n != 5 {
		t.Errorf("pre-clip norm %v, want 5", n)
	}
	if n := GradNorm(ps); math.Abs(n-1) > 1e-6 {
		t.Errorf("post-clip norm %v, want 1", n)
	}
	b.Grad.Data[0] = float32(math.NaN())
	if n := ClipGradNorm(ps, 1); !math.IsNaN(n) {
		t.Errorf("NaN gradient: norm %v", n)
	}
	ZeroGrad(ps)
	if a.Grad != nil || b.Grad != nil {
		t.Error("ZeroGrad kept gradients")
	}

	// The norm of a many-block gradient does not depend on the threads.
	big := tensor.New(300_000).SetRequiresGrad(true)
	big.Grad = tensor.New(300_000)
	rng.New(4).FillNormal(big.Grad.Data, 0, 1)
	defer parallel.SetThreads(parallel.SetThreads(1))
	one := GradNorm([]Param{{"big", big}})
	parallel.SetThreads(3)
	if three := GradNorm([]Param{{"big", big}}); three != one || math.Abs(one-math.Sqrt(300_000)) > 5 {
		t.Errorf("GradNorm %v with 1 thread, %v with 3 (expected about %v)", one, three, math.Sqrt(300_000))
	}
}

func TestSchedules(t *testing.T) {
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	c := Constant(2, 4)
	near("constant(0)", c(0), 0)
	near("constant(2)", c(2), 1)
	near("constant(4)", c(4), 2)
	near("constant(1000)", c(1000), 2)
	cw := CosineWarmup(1, 10, 110)
	near("cosine(5)", cw(5), 0.5)
	near("cosine(10)", cw(10), 1)
	near("cosine(60)", cw(60), 0.5)
	near("cosine(110)", cw(110), 0)
	near("cosine(200)", cw(200), 0)
	cr := CosineRestarts(1, 0, 100, 2)
	near("restarts(0)", cr(0), 1)
	near("restarts(25)", cr(25), 0.5)
	near("restarts(50)", cr(50), 1) // hard restart
	near("restarts(75)", cr(75), 0.5)
	near("restarts(100)", cr(100), 0)
	for s := 11; s < 110; s++ {
		if cw(s) > cw(s-1) {
			t.Fatalf("cosine rises at step %d", s)
		}
	}
}

func TestEMA(t *testing.T) {
	w := tensor.FromData([]float32{0, 10}, 2).SetRequiresGrad(true)
	e := NewEMA([]Param{{"w", w}}, 0.9)
	w.Data[0], w.Data[1] = 1, 10
	e.Update()
	e.Update()
	e.Swap()
	if math.Abs(float64(w.Data[0])-0.19) > 1e-6 || w.Data[1] != 10 {
		t.Errorf("EMA values %v, want [0.19 10]", w.Data)
	}
	e.Swap()
	if w.Data[0] != 1 {
		t.Errorf("second Swap did not restore the weights: %v", w.Data)
	}
	e.CopyTo()
	if math.Abs(float64(w.Data[0])-0.19) > 1e-6 {
		t.Errorf("CopyTo: %v", w.Data)
	}
}
