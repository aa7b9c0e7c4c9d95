package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
	"tsdsr/model/mmdit"
	"tsdsr/model/sd3vae"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/sr"
	"tsdsr/tensor"
)

// writeDiffusers saves params and a config.json (with diffusers' class
// name) into dir, as a diffusers model folder.
func writeDiffusers(t *testing.T, dir, class string, cfg any, p *nn.Params) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	b, _ := json.Marshal(cfg)
	json.Unmarshal(b, &m)
	m["_class_name"] = class
	b, _ = json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Save(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), safetensors.F16, nil); err != nil {
		t.Fatal(err)
	}
}

func saveTensors(t *testing.T, path string, ts map[string]*tensor.Tensor) {
	t.Helper()
	if err := safetensors.Save(path, ts, nil, safetensors.F32); err != nil {
		t.Fatal(err)
	}
}

func randn(r *rng.Rand, std float32, shape ...int) *tensor.Tensor {
	x := tensor.New(shape...)
	r.FillNormal(x.Data, 0, std)
	return x
}

// syntheticTSDSR writes the official model's file layout at tiny widths:
// an SD3 folder (transformer with SD3-medium's key pattern at 2 blocks of
// 2 heads x 16, the SD3 VAE layout at widths 8/16), TSD-SR's PEFT LoRA
// files and the prompt embeddings. It returns the three folders.
func syntheticTSDSR(t *testing.T) SD3Files {
	root := t.TempDir()
	r := rng.New(11)
	tcfg := mmdit.Config{SampleSize: 16, PatchSize: 2, InChannels: 16, NumLayers: 2, AttentionHeadDim: 16,
		NumAttentionHeads: 2, JointAttentionDim: 24, CaptionProjectionDim: 32, PooledProjectionDim: 12,
		OutChannels: 16, PosEmbedMaxSize: 32}
	tr, err := mmdit.New(tcfg, nn.NewParams(rng.New(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tr.Params.List() {
		r.FillNormal(p.T.Data, 0, 0.05)
	}
	writeDiffusers(t, filepath.Join(root, "sd3", "transformer"), "SD3Transformer2DModel", tcfg, tr.Params)
	vcfg := sd3vae.Tiny()
	vae, err := sd3vae.New(vcfg, nn.NewParams(rng.New(2)))
	if err != nil {
		t.Fatal(err)
	}
	writeDiffusers(t, filepath.Join(root, "sd3", "vae"), "AutoencoderKL", vcfg, vae.Params)

	lora := filepath.Join(root, "lora")
	os.MkdirAll(lora, 0o755)
	const rank = 4
	saveTensors(t, filepath.Join(lora, "transformer.safetensors"), map[string]*tensor.Tensor{
		"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": randn(r, 0.1, rank, 32),
		"transformer.transformer_blocks.0.attn.to_q.lora_B.weight": randn(r, 0.1, 32, rank),
		"transformer.pos_embed.proj.lora_A.weight":                 randn(r, 0.1, rank, 16, 2, 2),
		"transformer.pos_embed.proj.lora_B.weight":                 randn(r, 0.1, 32, rank, 1, 1),
	})
	saveTensors(t, filepath.Join(lora, "vae.safetensors"), map[string]*tensor.Tensor{
		"transformer.encoder.conv_in.lora_A.weight": randn(r, 0.1, rank, 3, 3, 3),
		"transformer.encoder.conv_in.lora_B.weight": randn(r, 0.1, 8, rank, 1, 1),
	})
	embeds := filepath.Join(root, "embeds")
	os.MkdirAll(embeds, 0o755)
	saveTensors(t, filepath.Join(embeds, "prompt_embeds.safetensors"), map[string]*tensor.Tensor{"prompt_embeds": randn(r, 1, 1, 5, 24)})
	saveTensors(t, filepath.Join(embeds, "pool_embeds.safetensors"), map[string]*tensor.Tensor{"pool_embeds": randn(r, 1, 1, 12)})
	return SD3Files{SD3: filepath.Join(root, "sd3"), LoRA: lora, Embeds: embeds, Tile: 4, Overlap: 2}
}

// TestSD3EndToEnd: the official model's layout loads, its LoRAs merge into
// the transformer and the VAE encoder, and a photo goes through the whole
// TSD-SR path (latent tiles included) deterministically.
func TestSD3EndToEnd(t *testing.T) {
	files := syntheticTSDSR(t)
	up, err := LoadSD3(files)
	if err != nil {
		t.Fatal(err)
	}
	base, _, err := mmdit.LoadDir(filepath.Join(files.SD3, "transformer"))
	if err != nil {
		t.Fatal(err)
	}
	lf, _ := safetensors.Load(filepath.Join(files.LoRA, "transformer.safetensors"))
	a, _ := lf.Tensor("transformer.transformer_blocks.0.attn.to_q.lora_A.weight")
	b, _ := lf.Tensor("transformer.transformer_blocks.0.attn.to_q.lora_B.weight")
	want := tensor.Add(base.Params.Get("transformer_blocks.0.attn.to_q.weight"), tensor.MatMul(b, a))
	got := up.Student.Params.Get("transformer_blocks.0.attn.to_q.weight")
	for i := range want.Data {
		if d := got.Data[i] - want.Data[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("merged to_q[%d] = %v, want base + B A = %v", i, got.Data[i], want.Data[i])
		}
	}
	if up.LatentScale != 1.5305 || up.Prompt.Shape[1] != 5 || up.Pooled.Shape[1] != 12 {
		t.Fatalf("latent scale %v, prompt %v, pooled %v", up.LatentScale, up.Prompt.Shape, up.Pooled.Shape)
	}
	in := imageio.NewImage(13, 10, 3) // padded to 16x12, then cropped back
	rng.New(3).FillUniform(in.Pix, 0, 1)
	pipe := sr.New(up, nil)
	var outs [2][]byte
	for i := range outs {
		out, err := pipe.UpscaleImage(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if out.Width != 52 || out.Height != 40 || out.Channels != 3 {
			t.Fatalf("output %dx%dx%d, want 52x40x3", out.Width, out.Height, out.Channels)
		}
		var buf bytes.Buffer
		if err := imageio.Encode(&buf, out, &imageio.EncodeOptions{Format: "png"}); err != nil {
			t.Fatal(err)
		}
		outs[i] = buf.Bytes()
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two runs gave different bytes")
	}
}

func TestSD3Errors(t *testing.T) {
	files := syntheticTSDSR(t)
	// An adapter for a module the model does not have is named.
	saveTensors(t, filepath.Join(files.LoRA, "vae.safetensors"), map[string]*tensor.Tensor{
		"transformer.encoder.conv_xx.lora_A.weight": tensor.New(4, 3, 3, 3),
		"transformer.encoder.conv_xx.lora_B.weight": tensor.New(8, 4, 1, 1),
	})
	if _, err := LoadSD3(files); err == nil || !strings.Contains(err.Error(), "encoder.conv_xx: no linear or conv module") {
		t.Errorf("unknown LoRA module: %v", err)
	}
	os.Remove(filepath.Join(files.LoRA, "vae.safetensors")) // optional
	os.Remove(filepath.Join(files.LoRA, "transformer.safetensors"))
	if _, err := LoadSD3(files); err == nil || !strings.Contains(err.Error(), "transformer.safetensors") {
		t.Errorf("missing transformer LoRA: %v", err)
	}
	files = syntheticTSDSR(t)
	saveTensors(t, filepath.Join(files.Embeds, "pool_embeds.safetensors"), map[string]*tensor.Tensor{"p": tensor.New(1, 7)})
	if _, err := LoadSD3(files); err == nil || !strings.Contains(err.Error(), "pooled embeddings [1 7], want [1, 12]") {
		t.Errorf("mis-shaped pooled embeddings: %v", err)
	}
	os.Remove(filepath.Join(files.Embeds, "pool_embeds.safetensors"))
	if _, err := LoadSD3(files); err == nil || !strings.Contains(err.Error(), "neither pool_embeds.pt nor pool_embeds.safetensors") {
		t.Errorf("missing embeddings: %v", err)
	}
	if _, err := LoadSD3(SD3Files{SD3: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "diffusers SD3 folder") {
		t.Errorf("empty SD3 folder: %v", err)
	}
}
