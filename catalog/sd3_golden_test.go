package catalog

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"tsdsr/imageio"
	"tsdsr/internal/golden"
	"tsdsr/resize"
	"tsdsr/sr"
	"tsdsr/tensor"
)

// goldenFiles returns the golden folder (internal/golden) as SD3Files,
// skipping when ../shared is absent.
func goldenFiles(t *testing.T) SD3Files {
	t.Helper()
	dir := golden.SD3(t)
	return SD3Files{SD3: dir, LoRA: filepath.Join(dir, "lora"), Embeds: filepath.Join(dir, "embeds")}
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
	f := golden.Load(t, "cases.safetensors")
	p := "transformer_lora.case1."
	got := up.Student.Forward(golden.Tensor(t, f, p+"latent"), golden.Tensor(t, f, p+"timestep").Data, golden.Tensor(t, f, p+"context"), golden.Tensor(t, f, p+"pooled"))
	golden.CheckRel(t, "transformer_lora.case1", got, golden.Tensor(t, f, p+"output"), 2e-5)
	// The script's embeddings are those of embeds/*.pt.
	if golden.RelErr(up.Prompt.Data, golden.Tensor(t, f, p+"context").Data) != 0 || golden.RelErr(up.Pooled.Data, golden.Tensor(t, f, p+"pooled").Data) != 0 {
		t.Error("LoadSD3's embeddings differ from the case's context and pooled")
	}
	vae := up.AE.(sr.SD3VAE).VAE
	mean, err := vae.Encode(context.Background(), golden.Tensor(t, f, "vae_lora.encode1.image"))
	if err != nil {
		t.Fatal(err)
	}
	golden.CheckRel(t, "vae_lora.encode1", mean, golden.Tensor(t, f, "vae_lora.encode1.mean"), 5e-6)
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
			f := golden.Load(t, filepath.Join("pipeline", c.name+".safetensors"))
			lr, err := imageio.ReadFile(filepath.Join(golden.SD3(t), "pipeline", c.name+".lr.png"), nil)
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
			golden.CheckRel(t, "lr_latent", tensor.Scale(zraw, up.LatentScale), golden.Tensor(t, f, "lr_latent"), 5e-6)

			zL := golden.Tensor(t, f, "lr_latent")
			v, err := up.Velocity(ctx, zL, nil)
			if err != nil {
				t.Fatal(err)
			}
			golden.CheckRel(t, "velocity", v, golden.Tensor(t, f, "velocity"), 2e-5)

			// Decode of the script's own z, as sr_float: clamp(decode) / 2 + 0.5.
			z := tensor.Scale(tensor.Sub(zL, golden.Tensor(t, f, "velocity")), 1/up.LatentScale)
			y, err := up.AE.Decode(ctx, z)
			if err != nil {
				t.Fatal(err)
			}
			want := golden.Tensor(t, f, "sr_float_s11") // [ceil(H/11), ceil(W/11), 3]
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
	f := golden.Load(t, filepath.Join("pipeline", "A.safetensors"))
	v, err := up.Velocity(context.Background(), golden.Tensor(t, f, "lr_latent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := golden.RelErr(v.Data, golden.Tensor(t, f, "velocity").Data)
	t.Logf("velocity with bfloat16 weights: relative error %.3g", e)
	if e == 0 || e > 1e-2 {
		t.Errorf("velocity with bfloat16 weights: relative error %.3g, want bfloat16-sized (0, 1e-2]", e)
	}
}
