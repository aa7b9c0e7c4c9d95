package distill

import (
	"math"
	"slices"
	"testing"

	"tsdsr/flow"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// gauss is data x0 ~ N(mu, s^2) (each element independently). Its flow
// marginal at noise sigma is N((1-sigma) mu, (1-sigma)^2 s^2 + sigma^2), and
// the exact velocity E[eps - x0 | x_t] = (x_t - E[x0 | x_t]) / sigma with
// E[x0 | x_t] = mu + (1-sigma) s^2 / var_t (x_t - (1-sigma) mu).
type gauss struct{ mu, s float64 }

func (g gauss) velocity(x, sigma float64) float64 {
	vt := (1-sigma)*(1-sigma)*g.s*g.s + sigma*sigma
	x0 := g.mu + (1-sigma)*g.s*g.s/vt*(x-(1-sigma)*g.mu)
	return (x - x0) / sigma
}

// score is d/dx log p_t(x) of the noisy marginal.
func (g gauss) score(x, sigma float64) float64 {
	vt := (1-sigma)*(1-sigma)*g.s*g.s + sigma*sigma
	return -(x - (1-sigma)*g.mu) / vt
}

// field is the exact velocity as a flow.Velocity; it also records the
// timesteps it was called with.
func (g gauss) field(calls *[][]float32) flow.Velocity {
	return func(x *tensor.Tensor, t []float32) *tensor.Tensor {
		if calls != nil {
			*calls = append(*calls, slices.Clone(t))
		}
		n := x.Shape[0]
		per := x.Numel() / n
		out := tensor.New(x.Shape...)
		for i := range n {
			sig := float64(t[i]) / flow.TimestepScale
			for j := i * per; j < (i+1)*per; j++ {
				out.Data[j] = float32(g.velocity(float64(x.Data[j]), sig))
			}
		}
		return out
	}
}

func randn(r *rng.Rand, mean, std float32, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	r.FillNormal(t.Data, mean, std)
	return t
}

func TestDASMIndices(t *testing.T) {
	for _, c := range []struct {
		i0, b int
		want  []int
	}{
		{100, 0, []int{100, 150, 200, 250}},  // right 300, step 50
		{100, 3, []int{100, 150, 201, 252}},  // right 303, step 50.75
		{50, -25, []int{50, 93, 137, 181}},   // right 225, step 43.75
		{900, 25, []int{900, 924, 949, 974}}, // right 1125 -> 999, step 24.75
		{949, -25, []int{949, 961, 974, 986}},
		{799, 0, []int{799, 849, 899, 949}}, // right exactly 999
		{820, 0, []int{820, 864, 909, 954}}, // right 1020 -> 999, step 44.75
	} {
		if got := DASMIndices(c.i0, c.b, 4); !slices.Equal(got, c.want) {
			t.Errorf("DASMIndices(%d, %d, 4) = %v, want %v", c.i0, c.b, got, c.want)
		}
	}
	if got := DASMIndices(300, 10, 2); !slices.Equal(got, []int{300, 405}) {
		t.Errorf("DASMIndices(300, 10, 2) = %v", got)
	}
	if got := DASMWeights(4); !slices.Equal(got, []float32{1, 0.3, 0.3, 0.3}) {
		t.Errorf("DASMWeights(4) = %v", got)
	}
	// Sampled trajectories stay in range, start in [50, 950) and ascend.
	r := rng.New(3)
	seenB := map[int]bool{}
	for range 2000 {
		tr := SampleTrajectories(r, 1, 4)[0]
		if tr[0] < IndexLo || tr[0] >= IndexHi || tr[3] > 999 {
			t.Fatalf("trajectory %v out of range", tr)
		}
		for k := 1; k < 4; k++ {
			if tr[k] < tr[k-1] {
				t.Fatalf("trajectory %v not ascending", tr)
			}
		}
		if right := tr[0] + DASMSpan + DASMJitter; right <= 999 {
			// unclipped: tr[1] - i0 = floor((200 + b)/4) identifies b up to 4.
			seenB[(tr[1]-tr[0])*4-DASMSpan] = true
		}
	}
	for _, b := range []int{-28, -24, 0, 24} {
		if !seenB[b] {
			t.Errorf("jitter bucket %d never drawn", b)
		}
	}
}

// TestGradMatchesScores checks grad_vsd and grad_tsm against closed forms
// written with the marginals' scores instead of velocities: from
// eps_hat = x + (1 - sigma) v and score = -eps_hat / sigma,
// v(x) = -(sigma score(x) + x) / (1 - sigma), so
//
//	grad_vsd = sigma^3 / (1 - sigma) (score_phi(zh) - score_psi(zh))
//	grad_tsm = sigma^2 / (1 - sigma) (sigma (score_psi(z) - score_psi(zh)) + z - zh)
//
// Every sample has its own index, so a batch-wide sigma would fail.
func TestGradMatchesScores(t *testing.T) {
	real, fake := gauss{mu: 1.5, s: 0.7}, gauss{mu: -0.4, s: 1.3}
	r := rng.New(7)
	const n, d = 3, 5
	zHat, zH, eps := randn(r, 0, 1, n, d), randn(r, 1.5, 0.7, n, d), randn(r, 0, 1, n, d)
	idx := [][]int{{60}, {500}, {940}}
	sched := flow.SD3()
	var calls [][]float32
	s := Scores{Real: real.field(&calls), Fake: fake.field(nil)}
	vsd := Grad(sched, s, zHat, nil, eps, idx, []float32{1}, 1)
	tsm := Grad(sched, s, zHat, zH, eps, idx, []float32{1}, 0)
	mix := Grad(sched, s, zHat, zH, eps, idx, []float32{1}, 0.7)
	for _, c := range calls {
		for i := range n {
			if want := 1000 * sched.Sigma(idx[i%n][0]); c[i] != want {
				t.Fatalf("teacher called with timesteps %v, want per-sample %v", c, want)
			}
		}
	}
	for i := range n {
		sig := float64(sched.Sigma(idx[i][0]))
		k := sig * sig * sig / (1 - sig)
		for j := range d {
			e := float64(eps.Data[i*d+j])
			xh := (1-sig)*float64(zHat.Data[i*d+j]) + sig*e
			xt := (1-sig)*float64(zH.Data[i*d+j]) + sig*e
			wantV := k * (fake.score(xh, sig) - real.score(xh, sig))
			wantT := sig * sig / (1 - sig) * (sig*(real.score(xt, sig)-real.score(xh, sig)) + xt - xh)
			wantM := 0.7*wantV + 0.3*wantT
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"vsd", float64(vsd.Data[i*d+j]), wantV}, {"tsm", float64(tsm.Data[i*d+j]), wantT}, {"tsd", float64(mix.Data[i*d+j]), wantM}} {
				if math.Abs(c.got-c.want) > 1e-4*(1+math.Abs(c.want)) {
					t.Errorf("sample %d (sigma %.3f) elem %d: %s = %g, want %g", i, sig, j, c.name, c.got, c.want)
				}
			}
		}
	}
}

// TestGradDASM follows the two Euler trajectories by hand in float64 with
// the exact velocities and compares the weighted sum.
func TestGradDASM(t *testing.T) {
	real, fake := gauss{mu: 0.8, s: 0.5}, gauss{mu: 0.1, s: 1.1}
	r := rng.New(11)
	const n, d = 2, 4
	zHat, zH, eps := randn(r, 0, 1, n, d), randn(r, 0.8, 0.5, n, d), randn(r, 0, 1, n, d)
	idx := [][]int{DASMIndices(120, -7, 4), DASMIndices(880, 20, 4)}
	w := DASMWeights(4)
	sched := flow.SD3()
	const lambda = 0.7
	got := Grad(sched, Scores{Real: real.field(nil), Fake: fake.field(nil)}, zHat, zH, eps, idx, w, lambda)
	for i := range n {
		for j := range d {
			e := float64(eps.Data[i*d+j])
			s0 := float64(sched.Sigma(idx[i][0]))
			xh := (1-s0)*float64(zHat.Data[i*d+j]) + s0*e
			xt := (1-s0)*float64(zH.Data[i*d+j]) + s0*e
			var want float64
			for k := range 4 {
				sig := float64(sched.Sigma(idx[i][k]))
				vr, vf, vrt := real.velocity(xh, sig), fake.velocity(xh, sig), real.velocity(xt, sig)
				want += float64(w[k]) * sig * sig * (lambda*(vr-vf) + (1-lambda)*(vr-vrt))
				if k < 3 {
					next := float64(sched.Sigma(idx[i][k+1]))
					xh += (next - sig) * vf
					xt += (next - sig) * vrt
				}
			}
			if g := float64(got.Data[i*d+j]); math.Abs(g-want) > 1e-4*(1+math.Abs(want)) {
				t.Errorf("sample %d elem %d: DASM grad %g, want %g", i, j, g, want)
			}
		}
	}
}

func TestGradNonFiniteIsZero(t *testing.T) {
	nan := func(x *tensor.Tensor, _ []float32) *tensor.Tensor {
		out := tensor.New(x.Shape...)
		out.Data[1] = float32(math.NaN())
		out.Data[2] = float32(math.Inf(1))
		return out
	}
	zero := func(x *tensor.Tensor, _ []float32) *tensor.Tensor { return tensor.New(x.Shape...) }
	z := tensor.Full(1, 1, 4)
	g := Grad(flow.SD3(), Scores{Real: nan, Fake: zero}, z, nil, tensor.New(1, 4), [][]int{{100}}, []float32{1}, 1)
	for i, v := range g.Data {
		if v != 0 {
			t.Errorf("grad[%d] = %v, want 0", i, v)
		}
	}
}

func TestTSDLossGradient(t *testing.T) {
	r := rng.New(5)
	z := randn(r, 0, 1, 2, 3, 4).SetRequiresGrad(true)
	g := randn(r, 0, 1, 2, 3, 4)
	l := TSDLoss(z, g)
	var half float64
	for _, v := range g.Data {
		half += 0.5 * float64(v) * float64(v)
	}
	if want := half / 24; math.Abs(float64(l.Item())-want) > 1e-6 {
		t.Errorf("loss %g, want 0.5 mean(grad^2) = %g", l.Item(), want)
	}
	l.Backward()
	for i, v := range z.Grad.Data {
		if want := g.Data[i] / 24; math.Abs(float64(v-want)) > 1e-7 {
			t.Fatalf("dL/dz[%d] = %g, want grad/numel = %g", i, v, want)
		}
	}
}

// TestFakeLossIsWeightedFlowMatching checks the x0-space identity
// mean((x_t - sigma v - x0)^2) = mean(sigma^2 (v - (eps - x0))^2) with
// per-sample sigmas.
func TestFakeLossIsWeightedFlowMatching(t *testing.T) {
	r := rng.New(9)
	x0, eps := randn(r, 0.3, 1, 2, 6), randn(r, 0, 1, 2, 6)
	sig := []float32{0.2, 0.9}
	g := gauss{mu: 0, s: 1}
	got := FakeLoss(g.field(nil), x0, eps, sig).Item()
	xt := flow.Noise(x0, eps, sig)
	v := g.field(nil)(xt, flow.Timesteps(sig))
	var want float64
	for i, vi := range v.Data {
		s := float64(sig[i/6])
		d := float64(vi) - float64(eps.Data[i]-x0.Data[i])
		want += s * s * d * d / 12
	}
	if math.Abs(float64(got)-want) > 1e-5*(1+want) {
		t.Errorf("fake loss %g, want %g", got, want)
	}
}

// TestVSDToyGenerator trains a one-step generator x = a + c z, z ~ N(0, 1),
// with the VSD gradient against the exact teacher of N(2, 0.5^2) and an
// exact fake score of the generator's own N(a, c^2): its output mean and
// standard deviation must reach the data's. The same with DASM.
func TestVSDToyGenerator(t *testing.T) {
	data := gauss{mu: 2, s: 0.5}
	for _, steps := range []int{1, 4} {
		a := tensor.FromData([]float32{-1}, 1).SetRequiresGrad(true)
		c := tensor.FromData([]float32{1.5}, 1).SetRequiresGrad(true)
		opt := nn.NewAdamW([]nn.Param{{Name: "a", T: a}, {Name: "c", T: c}}, nn.AdamWConfig{LR: 0.02, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
		r := rng.New(21)
		const n = 256
		for it := range 800 {
			z := randn(r, 0, 1, n, 1)
			x := tensor.Add(tensor.Mul(z, c), a) // [n, 1]
			fake := gauss{mu: float64(a.Data[0]), s: math.Abs(float64(c.Data[0]))}
			idx := SampleTrajectories(r, n, steps)
			eps := randn(r, 0, 1, n, 1)
			g := Grad(flow.SD3(), Scores{Real: data.field(nil), Fake: fake.field(nil)}, x, nil, eps, idx, DASMWeights(steps), 1)
			opt.ZeroGrad()
			TSDLoss(x, g).Backward()
			if it == 600 {
				opt.LR = 0.005
			}
			opt.Step()
		}
		mean, std := float64(a.Data[0]), math.Abs(float64(c.Data[0]))
		t.Logf("DASM steps %d: generator N(%.3f, %.3f^2), data N(2, 0.5^2)", steps, mean, std)
		if math.Abs(mean-2) > 0.1 || math.Abs(std-0.5) > 0.1 {
			t.Errorf("DASM steps %d: generator ended at N(%.3f, %.3f^2), want N(2, 0.5^2)", steps, mean, std)
		}
	}
}

// learnedGauss is a fake score with the exact Gaussian velocity form and
// learned mean and log standard deviation, differentiable through tensor
// ops (per-sample sigma broadcast over [n, 1]).
type learnedGauss struct{ mu, logS *tensor.Tensor }

func (g learnedGauss) velocity(x *tensor.Tensor, t []float32) *tensor.Tensor {
	n := x.Shape[0]
	sig, om := tensor.New(n, 1), tensor.New(n, 1)
	for i := range n {
		sig.Data[i] = t[i] / flow.TimestepScale
		om.Data[i] = 1 - sig.Data[i]
	}
	s2 := tensor.Exp(tensor.Scale(g.logS, 2))                                  // [1]
	vt := tensor.Add(tensor.Mul(tensor.Mul(om, om), s2), tensor.Mul(sig, sig)) // [n, 1]
	k := tensor.Div(tensor.Mul(om, s2), vt)
	x0 := tensor.Add(g.mu, tensor.Mul(k, tensor.Sub(x, tensor.Mul(om, g.mu))))
	return tensor.Div(tensor.Sub(x, x0), sig)
}

// TestVSDToyGeneratorLearnedFake is the full online loop of the method on
// the toy: the fake score starts equal to the teacher (N(2, 0.5^2)) and is
// trained after every generator step with FakeLoss on the detached
// outputs; the generator must still reach the data's mean and spread, and
// the fake score must follow the generator.
func TestVSDToyGeneratorLearnedFake(t *testing.T) {
	data := gauss{mu: 2, s: 0.5}
	a := tensor.FromData([]float32{-1}, 1).SetRequiresGrad(true)
	c := tensor.FromData([]float32{1.5}, 1).SetRequiresGrad(true)
	fake := learnedGauss{mu: tensor.FromData([]float32{2}, 1).SetRequiresGrad(true),
		logS: tensor.FromData([]float32{float32(math.Log(0.5))}, 1).SetRequiresGrad(true)}
	adam := nn.AdamWConfig{LR: 0.02, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	optG := nn.NewAdamW([]nn.Param{{Name: "a", T: a}, {Name: "c", T: c}}, adam)
	adam.LR = 0.05
	optF := nn.NewAdamW([]nn.Param{{Name: "mu", T: fake.mu}, {Name: "log_s", T: fake.logS}}, adam)
	r := rng.New(31)
	const n = 256
	for it := range 1500 {
		z := randn(r, 0, 1, n, 1)
		x := tensor.Add(tensor.Mul(z, c), a)
		idx := SampleTrajectories(r, n, 1)
		eps := randn(r, 0, 1, n, 1)
		g := Grad(flow.SD3(), Scores{Real: data.field(nil), Fake: fake.velocity}, x, nil, eps, idx, []float32{1}, 1)
		optG.ZeroGrad()
		TSDLoss(x, g).Backward()
		if it == 1000 {
			optG.LR, optF.LR = 0.005, 0.02
		}
		optG.Step()

		sig := make([]float32, n)
		for i := range sig {
			sig[i] = flow.SD3().Sigma(flow.UniformIndex(r, IndexLo, IndexHi))
		}
		optF.ZeroGrad()
		FakeLoss(fake.velocity, x, randn(r, 0, 1, n, 1), sig).Backward()
		optF.Step()
	}
	mean, std := float64(a.Data[0]), math.Abs(float64(c.Data[0]))
	fm, fs := float64(fake.mu.Data[0]), math.Exp(float64(fake.logS.Data[0]))
	t.Logf("generator N(%.3f, %.3f^2), fake score N(%.3f, %.3f^2), data N(2, 0.5^2)", mean, std, fm, fs)
	if math.Abs(mean-2) > 0.15 || math.Abs(std-0.5) > 0.15 {
		t.Errorf("generator ended at N(%.3f, %.3f^2), want N(2, 0.5^2)", mean, std)
	}
	if math.Abs(fm-mean) > 0.15 || math.Abs(fs-std) > 0.15 {
		t.Errorf("fake score N(%.3f, %.3f^2) does not follow the generator N(%.3f, %.3f^2)", fm, fs, mean, std)
	}
}
