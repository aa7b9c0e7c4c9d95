package models

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/imageio"
	"tsdsr/resize"
	"tsdsr/safetensors"
	"tsdsr/sr"
	"tsdsr/tensor"
)

// goldenDir is reference data from diffusers 0.29.1 and TSD-SR's own
// test/test_tsdsr.py on tiny random models of SD3's layout (see its
// README for the files, tolerances and the script's behaviours).
const goldenDir = "../../shared/golden/sd3"

// goldenFiles returns the golden folder as SD3Files, skipping when
// ../shared is absent.
func goldenFiles(t *testing.T) SD3Files {
	t.Helper()
	if _, err := os.Stat(filepath.Join(goldenDir, "cases.safetensors")); err != nil {
		t.Skipf("golden SD3 data not available (%v); it lives in ../shared/golden/sd3", err)
	}
	return SD3Files{SD3: goldenDir, LoRA: filepath.Join(goldenDir, "lora"), Embeds: filepath.Join(goldenDir, "embeds")}
}

func loadGolden(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Load(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func get(t *testing.T, f *safetensors.File, name string) *tensor.Tensor {
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
		d = max(d, math.Abs(float64(got[i])-float64(w)))
		m = max(m, math.Abs(float64(w)))
	}
	return d / m
}

func checkRel(t *testing.T, what string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !tensor.SameShape(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
	}
	e := relErr(got.Data, want.Data)
	t.Logf("%s: relative error %.3g", what, e)
	if e > tol {
		t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
	}
}

// TestGoldenLoRA: LoadSD3 on the golden folder as TSD-SR ships its parts
// (diffusers transformer with its position buffer, TSD-SR's VAE, PEFT
// LoRA files written by save_lora_weights, torch.save embeddings). The
// merged weights reproduce PEFT's unmerged adapters, base(x) + B(A(x)).
func TestGoldenLoRA(t *testing.T) {
	files := goldenFiles(t)
	up, err := LoadSD3(files)
	if err != nil {
		t.Fatal(err)
	}
	f := loadGolden(t, "cases.safetensors")
	p := "transformer_lora.case1."
	got := up.Student.Forward(get(t, f, p+"latent"), get(t, f, p+"timestep").Data, get(t, f, p+"context"), get(t, f, p+"pooled"))
	checkRel(t, "transformer_lora.case1", got, get(t, f, p+"output"), 2e-5)
	// The script's embeddings are those of embeds/*.pt.
	if relErr(up.Prompt.Data, get(t, f, p+"context").Data) != 0 || relErr(up.Pooled.Data, get(t, f, p+"pooled").Data) != 0 {
		t.Error("LoadSD3's embeddings differ from the case's context and pooled")
	}
	vae := up.AE.(sr.SD3VAE).VAE
	mean, err := vae.Encode(context.Background(), get(t, f, "vae_lora.encode1.image"))
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "vae_lora.encode1", mean, get(t, f, "vae_lora.encode1.mean"), 5e-6)
}

// goldenCase is one run of test_tsdsr.py.
type goldenCase struct{ name, lr, working string }

var goldenCasesList = []goldenCase{{"A", "200x136", "800x544"}, {"B", "56x40", "712x512"}, {"C", "129x136", "512x544"}}

// TestGoldenPipelineStages checks each stage of the official path against
// the script's tensors: the working size, the bicubic + encode latent, the
// tiled velocity (the script's square tiles and Gaussian) and the decode.
func TestGoldenPipelineStages(t *testing.T) {
	files := goldenFiles(t)
	up, err := LoadSD3(files)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range goldenCasesList {
		t.Run(c.name, func(t *testing.T) {
			f := loadGolden(t, filepath.Join("pipeline", c.name+".safetensors"))
			lr, err := imageio.ReadFile(filepath.Join(goldenDir, "pipeline", c.name+".lr.png"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%dx%d", lr.Width, lr.Height); got != c.lr || f.Metadata["lr_size"] != c.lr {
				t.Fatalf("LR %s, metadata %s, want %s", got, f.Metadata["lr_size"], c.lr)
			}
			ww, wh := sr.OfficialWorkingSize(lr.Width, lr.Height)
			if got := fmt.Sprintf("%dx%d", ww, wh); got != c.working || f.Metadata["working_size"] != c.working {
				t.Fatalf("working size %s, script's %s", got, f.Metadata["working_size"])
			}

			// Encode: PyTorch bicubic straight to the working size, clamped.
			x := tensor.New(1, 3, wh, ww)
			n := lr.Width * lr.Height
			for ch := range 3 {
				up := resize.Bicubic(lr.Pix[ch*n:(ch+1)*n], lr.Width, lr.Height, ww, wh)
				for i, v := range up {
					x.Data[ch*ww*wh+i] = min(max(v, 0), 1)
				}
			}
			zraw, err := up.AE.Encode(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			// The README's 5e-6 for latents; B's bicubic at a non-integer
			// scale makes its float32 reference itself 3.3e-6 off.
			checkRel(t, "lr_latent", tensor.Scale(zraw, up.LatentScale), get(t, f, "lr_latent"), 5e-6)

			zL := get(t, f, "lr_latent")
			v, err := up.Velocity(ctx, zL, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRel(t, "velocity", v, get(t, f, "velocity"), 2e-5)

			// Decode of the script's own z, as sr_float: clamp(decode) / 2 + 0.5.
			z := tensor.Scale(tensor.Sub(zL, get(t, f, "velocity")), 1/up.LatentScale)
			y, err := up.AE.Decode(ctx, z)
			if err != nil {
				t.Fatal(err)
			}
			want := get(t, f, "sr_float_s11") // [ceil(H/11), ceil(W/11), 3]
			worst := 0.0
			for i := 0; i < want.Shape[0]; i++ {
				for j := 0; j < want.Shape[1]; j++ {
					for ch := range 3 {
						g := min(max(y.Data[(ch*wh+11*i)*ww+11*j], 0), 1)
						worst = max(worst, math.Abs(float64(g)-float64(want.Data[(i*want.Shape[1]+j)*3+ch])))
					}
				}
			}
			t.Logf("sr_float: max |diff| %.3g", worst)
			if worst > 1e-5 {
				t.Errorf("sr_float: max |diff| %.3g > 1e-5", worst)
			}
		})
	}
}

// TestGoldenBF16 loads the golden model with bfloat16 transformer weights
// (after the LoRA merge): the velocity stays within bfloat16 precision of
// the script's float32 one.
func TestGoldenBF16(t *testing.T) {
	files := goldenFiles(t)
	files.BF16 = true
	up, err := LoadSD3(files)
	if err != nil {
		t.Fatal(err)
	}
	f := loadGolden(t, filepath.Join("pipeline", "A.safetensors"))
	v, err := up.Velocity(context.Background(), get(t, f, "lr_latent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := relErr(v.Data, get(t, f, "velocity").Data)
	t.Logf("velocity with bfloat16 weights: relative error %.3g", e)
	if e == 0 || e > 1e-2 {
		t.Errorf("velocity with bfloat16 weights: relative error %.3g, want bfloat16-sized (0, 1e-2]", e)
	}
}
