package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"tsdsr/internal/sysmem"
	"tsdsr/model/mmdit"
	"tsdsr/model/sd3vae"
	"tsdsr/nn"
	"tsdsr/safetensors"
	"tsdsr/sr"
	"tsdsr/tensor"
	"tsdsr/torchpt"
)

// SD3Files points at the official TSD-SR model's parts, as users download
// them from the model hubs under their licenses (nothing is fetched here).
type SD3Files struct {
	// SD3 is a diffusers Stable Diffusion 3 folder with transformer/ and
	// vae/ (config.json and safetensors each).
	SD3 string
	// LoRA holds TSD-SR's released PEFT adapters: transformer.safetensors
	// (required) and vae.safetensors (optional: the VAE-encoder LoRA).
	LoRA string
	// Embeds holds the precomputed default-prompt embeddings:
	// prompt_embeds.pt [1, 333, 4096] and pool_embeds.pt [1, 2048]
	// (torch.save files) or .safetensors conversions of them.
	Embeds string
	// LoRAAlpha is the adapters' alpha; 0 means alpha = rank (TSD-SR).
	LoRAAlpha float64
	// Tile and Overlap are the latent tiling (0: TSD-SR's 64 and 8).
	Tile, Overlap int
	// BF16 keeps the transformer's linear weights as bfloat16 after the
	// LoRA merge (see mmdit.Model.CompactBF16): 4.1 GB less memory while
	// upscaling, outputs within about 1e-3 of float32 weights (TSD-SR's
	// own default precision is fp16). Loading still reads float32.
	BF16 bool
}

// sd3Headroom is the activation memory reserved on top of the weights when
// checking that SD3 fits: the VAE decoding a 512x512 output and a 64x64
// latent tile through the transformer, plus the Go runtime's slack.
const sd3Headroom = 2 << 30

// LoadSD3 assembles the official TSD-SR upscaler: SD3's transformer with
// the TSD-SR LoRA merged, SD3's VAE (with its encoder LoRA when given) and
// the fixed prompt embeddings. Everything runs in float32, so it first
// checks that the machine has the memory for it (about 9 GB for
// SD3-medium) and refuses with a clear message when it has not.
func LoadSD3(files SD3Files) (*sr.OneStep, error) {
	tdir, vdir := filepath.Join(files.SD3, "transformer"), filepath.Join(files.SD3, "vae")
	need, err := float32Bytes(tdir, vdir)
	if err != nil {
		return nil, err
	}
	if err := sysmem.Check(need+sd3Headroom, "the SD3 model", fmt.Sprintf("%s of float32 weights and %s for activations",
		sysmem.GB(need), sysmem.GB(sd3Headroom))); err != nil {
		return nil, err
	}
	tr, pos, err := mmdit.LoadDir(tdir)
	if err != nil {
		return nil, err
	}
	if pos.Mismatch() {
		// diffusers runs with the stored table too, so this is the
		// checkpoint's choice, not an error; but it is not SD3's formula.
		slog.Warn("catalog: SD3 transformer's stored position table differs from the computed one; using the stored table",
			"dir", tdir, "max_diff", pos.MaxDiff)
	}
	vae, err := sd3vae.LoadDir(vdir)
	if err != nil {
		return nil, err
	}
	if err := mergeLoRA(tr.Params, filepath.Join(files.LoRA, "transformer.safetensors"), files.LoRAAlpha, true); err != nil {
		return nil, err
	}
	if err := mergeLoRA(vae.Params, filepath.Join(files.LoRA, "vae.safetensors"), files.LoRAAlpha, false); err != nil {
		return nil, err
	}
	if files.BF16 {
		tr.CompactBF16()
	}
	prompt, pooled, err := LoadEmbeds(files.Embeds)
	if err != nil {
		return nil, err
	}
	c := tr.Config
	if prompt.Dim() != 3 || prompt.Shape[0] != 1 || prompt.Shape[2] != c.JointAttentionDim {
		return nil, fmt.Errorf("catalog: prompt embeddings %v, want [1, L, %d] for this transformer", prompt.Shape, c.JointAttentionDim)
	}
	if pooled.Dim() != 2 || pooled.Shape[0] != 1 || pooled.Shape[1] != c.PooledProjectionDim {
		return nil, fmt.Errorf("catalog: pooled embeddings %v, want [1, %d] for this transformer", pooled.Shape, c.PooledProjectionDim)
	}
	tile, overlap := files.Tile, files.Overlap
	if tile == 0 {
		tile = 64
	}
	if overlap == 0 {
		overlap = 8
	}
	return &sr.OneStep{AE: sr.SD3VAE{VAE: vae}, Student: tr, Prompt: prompt, Pooled: pooled,
		LatentScale: float32(vae.Config.ScalingFactor), ModelName: "tsdsr-sd3", Tile: tile, Overlap: overlap,
		Official: true}, nil
}

// float32Bytes is the float32 size of every tensor of the diffusers
// folders' safetensors, read from their headers only.
func float32Bytes(dirs ...string) (uint64, error) {
	var n uint64
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		if err != nil || len(files) == 0 {
			return 0, fmt.Errorf("catalog: no safetensors weights in %s (want a diffusers SD3 folder with transformer/ and vae/)", dir)
		}
		for _, file := range files {
			f, err := safetensors.Open(file)
			if err != nil {
				return 0, err
			}
			for _, name := range f.Names() {
				in, _ := f.Info(name)
				n += 4 * uint64(tensor.Numel(in.Shape))
			}
			f.Close()
		}
	}
	return n, nil
}

// mergeLoRA merges a TSD-SR PEFT file (keys "transformer.<module>...",
// even in the VAE's file) into p. A missing optional file is skipped.
func mergeLoRA(p *nn.Params, file string, alpha float64, required bool) error {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) && !required {
		return nil
	}
	f, err := safetensors.Open(file)
	if err != nil {
		return fmt.Errorf("catalog: LoRA: %w", err)
	}
	defer f.Close()
	if _, err := nn.MergePEFT(p, f, "transformer.", alpha); err != nil {
		return fmt.Errorf("catalog: %s: %w", file, err)
	}
	return nil
}

// LoadEmbeds reads TSD-SR's prompt embeddings from dir: prompt_embeds and
// pool_embeds as .pt (torch.save) or .safetensors (one tensor each),
// returned as [1, L, D] and [1, P].
func LoadEmbeds(dir string) (prompt, pooled *tensor.Tensor, err error) {
	read := func(stem string) (*tensor.Tensor, error) {
		pt := filepath.Join(dir, stem+".pt")
		if _, err := os.Stat(pt); err == nil {
			return torchpt.LoadTensor(pt)
		}
		st := filepath.Join(dir, stem+".safetensors")
		f, err := safetensors.Open(st)
		if err != nil {
			return nil, fmt.Errorf("catalog: %s has neither %s.pt nor %s.safetensors", dir, stem, stem)
		}
		defer f.Close()
		if names := f.Names(); len(names) != 1 {
			return nil, fmt.Errorf("catalog: %s holds %d tensors, want one", st, len(names))
		}
		return f.Tensor(f.Names()[0])
	}
	if prompt, err = read("prompt_embeds"); err != nil {
		return nil, nil, err
	}
	if pooled, err = read("pool_embeds"); err != nil {
		return nil, nil, err
	}
	if prompt.Dim() == 2 {
		prompt = tensor.Reshape(prompt, 1, prompt.Shape[0], prompt.Shape[1])
	}
	if pooled.Dim() == 1 {
		pooled = tensor.Reshape(pooled, 1, pooled.Shape[0])
	}
	return prompt, pooled, nil
}
