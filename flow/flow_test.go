package flow

import (
	"math"
	"sort"
	"testing"

	"tsdsr/rng"
	"tsdsr/tensor"
)

func TestSigmaAtKnownIndices(t *testing.T) {
	s := SD3()
	for _, c := range []struct {
		i    int
		want float64
	}{
		{0, 1},
		{500, 0.75}, // s = 0.5: 1.5/2
		{750, 0.5},  // s = 0.25: 0.75/1.5
		{999, 3 * 0.001 / (1 + 2*0.001)},
	} {
		if got := s.Sigma(c.i); got != float32(c.want) {
			t.Errorf("Sigma(%d) = %v, want %v", c.i, got, float32(c.want))
		}
	}
	// Sigmas decrease strictly with the index.
	for i := 1; i < s.TrainSteps; i++ {
		if s.Sigma(i) >= s.Sigma(i-1) {
			t.Fatalf("Sigma(%d) = %v not below Sigma(%d) = %v", i, s.Sigma(i), i-1, s.Sigma(i-1))
		}
	}
	if ts := Timesteps([]float32{1, 0.75}); ts[0] != 1000 || ts[1] != 750 {
		t.Errorf("Timesteps = %v", ts)
	}
}

func TestInferenceSigmas(t *testing.T) {
	s := SD3()
	shift := func(x float64) float64 { return 3 * x / (1 + 2*x) }
	lo := 0.003 / 1.002 // the smallest training sigma, diffusers' sigma_min
	for _, n := range []int{1, 2, 4, 28} {
		got := s.InferenceSigmas(n)
		if len(got) != n+1 || got[n] != 0 || got[0] != 1 {
			t.Fatalf("n=%d: %v", n, got)
		}
		for k := range n {
			x := 1.0
			if n > 1 {
				x = 1 + (lo-1)*float64(k)/float64(n-1)
			}
			if want := float32(shift(x)); got[k] != want {
				t.Errorf("n=%d k=%d: %v, want %v", n, k, got[k], want)
			}
		}
	}
	// Hand-computed: 2 steps end at the doubly shifted sigma_min,
	// 3*lo/(1+2*lo) = 0.0089286; 3 steps pass shift((1+lo)/2) = 0.7511211.
	if got := s.InferenceSigmas(2)[1]; math.Abs(float64(got)-0.0089286) > 1e-6 {
		t.Errorf("2-step last sigma %v", got)
	}
	if got := s.InferenceSigmas(3)[1]; math.Abs(float64(got)-0.7511211) > 1e-6 {
		t.Errorf("3-step middle sigma %v", got)
	}
}

func TestNoiseTargetX0(t *testing.T) {
	r := rng.New(1)
	x0, eps := tensor.New(2, 3, 4, 4), tensor.New(2, 3, 4, 4)
	r.FillNormal(x0.Data, 0, 1)
	r.FillNormal(eps.Data, 0, 1)
	sigma := []float32{0.25, 0.9}
	xt := Noise(x0, eps, sigma)
	per := x0.Numel() / 2
	for i, v := range xt.Data {
		s := sigma[i/per]
		if want := (1-s)*x0.Data[i] + s*eps.Data[i]; math.Abs(float64(v-want)) > 1e-6 {
			t.Fatalf("x_t[%d] = %v, want %v", i, v, want)
		}
	}
	back := X0(xt, Target(x0, eps), sigma)
	for i := range back.Data {
		if math.Abs(float64(back.Data[i]-x0.Data[i])) > 1e-5 {
			t.Fatalf("X0 did not recover x0 at %d: %v vs %v", i, back.Data[i], x0.Data[i])
		}
	}
}

// gaussianVelocity is the exact velocity E[eps - x0 | x_t] when every
// coordinate of x0 is N(mu, s0^2): (x_t, eps - x0) are jointly Gaussian, so
// v = -mu + (sigma - (1-sigma) s0^2) / Var(x_t) * (x - (1-sigma) mu).
func gaussianVelocity(mu, s0 float64) Velocity {
	return func(x *tensor.Tensor, ts []float32) *tensor.Tensor {
		out := tensor.New(x.Shape...)
		per := x.Numel() / x.Shape[0]
		for i, v := range x.Data {
			sg := float64(ts[i/per]) / TimestepScale
			vt := (1-sg)*(1-sg)*s0*s0 + sg*sg
			out.Data[i] = float32(-mu + (sg-(1-sg)*s0*s0)/vt*(float64(v)-(1-sg)*mu))
		}
		return out
	}
}

func TestEulerPointMassIsExact(t *testing.T) {
	// For data at one point mu the velocity is (x - mu)/sigma, and an Euler
	// step scales x - mu by next/sigma exactly: any schedule ending at 0 lands
	// on mu.
	const mu = 0.7
	for _, n := range []int{1, 3, 28} {
		x := tensor.New(2, 16, 2, 2)
		rng.New(2).FillNormal(x.Data, 0, 1)
		out := Sample(gaussianVelocity(mu, 0), x, SD3().InferenceSigmas(n))
		for i, v := range out.Data {
			if math.Abs(float64(v)-mu) > 1e-5 {
				t.Fatalf("n=%d: x[%d] = %v, want %v", n, i, v, mu)
			}
		}
	}
}

func TestEulerGaussianRecoversData(t *testing.T) {
	// The exact flow maps noise z to mu + s0 z (the map is linear and
	// monotone); Euler approaches it at first order in the step count.
	const mu, s0 = -0.5, 0.3
	x := tensor.New(1, 4, 8, 8)
	rng.New(3).FillNormal(x.Data, 0, 1)
	z := x.Clone()
	errs := map[int]float64{}
	for _, steps := range []int{28, 280, 2800} {
		out := Sample(gaussianVelocity(mu, s0), x, SD3().InferenceSigmas(steps))
		for i, v := range out.Data {
			errs[steps] = max(errs[steps], math.Abs(float64(v)-(mu+s0*float64(z.Data[i]))))
		}
	}
	if errs[2800] > 2e-3 || errs[280] > 12*errs[2800] || errs[28] > 12*errs[280] {
		t.Errorf("max errors by steps %v: want about 10x smaller per 10x steps, below 2e-3 at 2800", errs)
	}
}

func TestLogitNormalIndex(t *testing.T) {
	s := SD3()
	r := rng.New(4)
	idx := make([]int, 20000)
	var mid int
	for k := range idx {
		idx[k] = s.LogitNormalIndex(r, 0, 1)
		if idx[k] < 0 || idx[k] >= s.TrainSteps {
			t.Fatalf("index %d out of range", idx[k])
		}
		if idx[k] >= 250 && idx[k] < 750 {
			mid++
		}
	}
	sort.Ints(idx)
	// u = sigmoid(N(0,1)) has median 1/2, and P(|N| < logit(0.75) = 1.0986) = 0.7279.
	if m := idx[len(idx)/2]; m < 490 || m > 510 {
		t.Errorf("median index %d, want about 500", m)
	}
	if f := float64(mid) / float64(len(idx)); math.Abs(f-0.7279) > 0.01 {
		t.Errorf("fraction in [250, 750) = %v, want 0.7279", f)
	}
}

func TestUniformIndex(t *testing.T) {
	r := rng.New(5)
	seen := map[int]bool{}
	for range 100000 {
		i := UniformIndex(r, 50, 950)
		if i < 50 || i >= 950 {
			t.Fatalf("index %d outside [50, 950)", i)
		}
		seen[i] = true
	}
	if len(seen) != 900 {
		t.Errorf("%d distinct indices, want 900", len(seen))
	}
}

// TestOneStep: z = z_L - v(z_L, 1000) for every sample.
func TestOneStep(t *testing.T) {
	zL := tensor.FromData([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	z := OneStep(func(x *tensor.Tensor, ts []float32) *tensor.Tensor {
		if len(ts) != 2 || ts[0] != 1000 || ts[1] != 1000 {
			t.Fatalf("timesteps %v, want 1000 per sample", ts)
		}
		return tensor.Scale(x, 0.25)
	}, zL)
	for i, v := range z.Data {
		if want := 0.75 * zL.Data[i]; v != want {
			t.Fatalf("z[%d] = %v, want %v", i, v, want)
		}
	}
}
