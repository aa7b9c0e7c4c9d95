package mmdit

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// goldenDir is the reference data computed by diffusers 0.29.1 on a tiny
// random SD3 transformer (see its README for how and the tolerances).
const goldenDir = "../../../shared/golden/sd3"

// goldenCases opens the golden unit cases, skipping when ../shared is
// absent (it is test data, not part of the product).
func goldenCases(t *testing.T) *safetensors.File {
	t.Helper()
	path := filepath.Join(goldenDir, "cases.safetensors")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("golden SD3 data not available (%v); it lives in ../shared/golden/sd3", err)
	}
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustTensor(t *testing.T, f *safetensors.File, name string) *tensor.Tensor {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// relErr is max|got - want| / max|want|, the golden README's measure.
func relErr(got, want []float32) float64 {
	var d, m float64
	for i, w := range want {
		d = max(d, abs64(float64(got[i])-float64(w)))
		m = max(m, abs64(float64(w)))
	}
	return d / m
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestGoldenDiffusersFolder loads diffusers' own save_pretrained output,
// pos_embed.pos_embed buffer included, uses the stored table, and matches
// diffusers' SD3Transformer2DModel on every golden case.
func TestGoldenDiffusersFolder(t *testing.T) {
	f := goldenCases(t)
	m, pos, err := LoadDir(filepath.Join(goldenDir, "transformer"))
	if err != nil {
		t.Fatal(err)
	}
	// The stored table is diffusers' formula with float32 grid positions:
	// within float32 noise of tsdsr's, so no mismatch is reported.
	if !pos.Stored || pos.Mismatch() || pos.MaxDiff == 0 {
		t.Fatalf("position table check %+v: want stored, a float32-noise difference, no mismatch", pos)
	}
	stored, err := safetensors.Load(filepath.Join(goldenDir, "transformer", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tab := mustTensor(t, stored, posBuffer)
	if relErr(m.posTable, tab.Data) != 0 {
		t.Fatal("model does not use the stored position table")
	}
	for _, c := range []string{"case1", "case2", "case3", "case4", "case5"} {
		p := "transformer." + c + "."
		ts := mustTensor(t, f, p+"timestep")
		got := m.Forward(mustTensor(t, f, p+"latent"), ts.Data, mustTensor(t, f, p+"context"), mustTensor(t, f, p+"pooled"))
		want := mustTensor(t, f, p+"output")
		if !tensor.SameShape(got.Shape, want.Shape) {
			t.Fatalf("%s: shape %v, want %v", c, got.Shape, want.Shape)
		}
		// README: 2e-5 relative allows float32 reordering and the last
		// ulp of torch's vectorised expf in the timestep features.
		if e := relErr(got.Data, want.Data); e > 2e-5 {
			t.Errorf("%s (t=%v): relative error %.3g > 2e-5", c, ts.Data, e)
		} else {
			t.Logf("%s (t=%v): relative error %.3g", c, ts.Data, e)
		}
	}
}

// TestGoldenTimestepFeatures checks diffusers' Timesteps(256,
// flip_sin_to_cos=True, shift=0) features. tsdsr computes the exponent in
// float32 as torch does and then a correctly rounded exp; torch's
// vectorised expf is off by up to 1 ulp on some frequencies (it varies
// with the build and device), so each feature is allowed the effect of
// 1 ulp of its frequency, t * f_k * 2^-23, plus float32 rounding.
func TestGoldenTimestepFeatures(t *testing.T) {
	f := goldenCases(t)
	ts := mustTensor(t, f, "transformer.time_proj.timestep")
	got := timestepEmbedding(ts.Data)
	want := mustTensor(t, f, "transformer.time_proj.output")
	const half = timeDim / 2
	worst := 0.0
	for i, tv := range ts.Data {
		for k := range timeDim {
			freq := math.Exp(-math.Log(10000) * float64(k%half) / half)
			tol := float64(tv)*freq*0x1p-23 + 1e-6
			d := abs64(float64(got.Data[i*timeDim+k]) - float64(want.Data[i*timeDim+k]))
			worst = max(worst, d/tol)
			if d > tol {
				t.Errorf("t=%v feature %d: |diff| %.3g > %.3g", tv, k, d, tol)
			}
		}
	}
	t.Logf("worst |diff| / tolerance %.3g; relative error %.3g", worst, relErr(got.Data, want.Data))
}
