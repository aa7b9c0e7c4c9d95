package mmdit

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"tsdsr/internal/golden"
)

// TestGoldenDiffusersFolder loads diffusers' own save_pretrained output,
// pos_embed.pos_embed buffer included, uses the stored table, and matches
// diffusers' SD3Transformer2DModel on every golden case.
func TestGoldenDiffusersFolder(t *testing.T) {
	f := golden.Load(t, "cases.safetensors")
	m, pos, err := LoadDir(filepath.Join(golden.SD3(t), "transformer"))
	if err != nil {
		t.Fatal(err)
	}
	// The stored table is diffusers' formula with float32 grid positions:
	// within float32 noise of tsdsr's, so no mismatch is reported.
	if !pos.Stored || pos.Mismatch() || pos.MaxDiff == 0 {
		t.Fatalf("position table check %+v: want stored, a float32-noise difference, no mismatch", pos)
	}
	stored := golden.Load(t, filepath.Join("transformer", "diffusion_pytorch_model.safetensors"))
	tab := golden.Tensor(t, stored, posBuffer)
	if golden.RelErr(m.posTable, tab.Data) != 0 {
		t.Fatal("model does not use the stored position table")
	}
	for _, c := range []string{"case1", "case2", "case3", "case4", "case5"} {
		p := "transformer." + c + "."
		ts := golden.Tensor(t, f, p+"timestep")
		got := m.Forward(golden.Tensor(t, f, p+"latent"), ts.Data, golden.Tensor(t, f, p+"context"), golden.Tensor(t, f, p+"pooled"))
		// README: 2e-5 relative allows float32 reordering and the last
		// ulp of torch's vectorised expf in the timestep features.
		golden.CheckRel(t, fmt.Sprintf("%s (t=%v)", c, ts.Data), got, golden.Tensor(t, f, p+"output"), 2e-5)
	}
}

// TestGoldenTimestepFeatures checks diffusers' Timesteps(256,
// flip_sin_to_cos=True, shift=0) features. tsdsr computes the exponent in
// float32 as torch does and then a correctly rounded exp; torch's
// vectorised expf is off by up to 1 ulp on some frequencies (it varies
// with the build and device), so each feature is allowed the effect of
// 1 ulp of its frequency, t * f_k * 2^-23, plus float32 rounding.
func TestGoldenTimestepFeatures(t *testing.T) {
	f := golden.Load(t, "cases.safetensors")
	ts := golden.Tensor(t, f, "transformer.time_proj.timestep")
	got := timestepEmbedding(ts.Data)
	want := golden.Tensor(t, f, "transformer.time_proj.output")
	const half = timeDim / 2
	worst := 0.0
	for i, tv := range ts.Data {
		for k := range timeDim {
			freq := math.Exp(-math.Log(10000) * float64(k%half) / half)
			tol := float64(tv)*freq*0x1p-23 + 1e-6
			d := math.Abs(float64(got.Data[i*timeDim+k]) - float64(want.Data[i*timeDim+k]))
			worst = max(worst, d/tol)
			if d > tol {
				t.Errorf("t=%v feature %d: |diff| %.3g > %.3g", tv, k, d, tol)
			}
		}
	}
	t.Logf("worst |diff| / tolerance %.3g; relative error %.3g", worst, golden.RelErr(got.Data, want.Data))
}
