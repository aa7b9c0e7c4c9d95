package mmdit

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config names every size of the transformer. JSON tags are those of
// diffusers' SD3Transformer2DModel config.json, so a real SD3 config loads
// as is; ContextTokens is tsdsr's own: the number of learned prompt tokens
// of a prior that has no text encoder (0 when the prompt is supplied).
type Config struct {
	SampleSize           int `json:"sample_size"`
	PatchSize            int `json:"patch_size"`
	InChannels           int `json:"in_channels"`
	NumLayers            int `json:"num_layers"`
	AttentionHeadDim     int `json:"attention_head_dim"`
	NumAttentionHeads    int `json:"num_attention_heads"`
	JointAttentionDim    int `json:"joint_attention_dim"`
	CaptionProjectionDim int `json:"caption_projection_dim"`
	PooledProjectionDim  int `json:"pooled_projection_dim"`
	OutChannels          int `json:"out_channels"`
	PosEmbedMaxSize      int `json:"pos_embed_max_size"`
	ContextTokens        int `json:"context_tokens,omitempty"`
}

// SD3Medium is the configuration of Stable Diffusion 3 medium's transformer
// (about 2 B parameters).
func SD3Medium() Config {
	return Config{SampleSize: 128, PatchSize: 2, InChannels: 16, NumLayers: 24, AttentionHeadDim: 64,
		NumAttentionHeads: 24, JointAttentionDim: 4096, CaptionProjectionDim: 1536,
		PooledProjectionDim: 2048, OutChannels: 16, PosEmbedMaxSize: 192}
}

// Small is tsdsr's prior: SD3's design at a width two CPU cores can train.
func Small() Config {
	return Config{SampleSize: 32, PatchSize: 2, InChannels: 16, NumLayers: 8, AttentionHeadDim: 64,
		NumAttentionHeads: 4, JointAttentionDim: 256, CaptionProjectionDim: 256,
		PooledProjectionDim: 256, OutChannels: 16, PosEmbedMaxSize: 96, ContextTokens: 8}
}

// Hidden is the transformer width (heads x head dim).
func (c Config) Hidden() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// Fits reports whether square latents of side s fit the model: a multiple
// of the patch size, within the position grid.
func (c Config) Fits(s int) bool { return s%c.PatchSize == 0 && s/c.PatchSize <= c.PosEmbedMaxSize }

// Validate checks that the sizes fit together.
func (c Config) Validate() error {
	pos := map[string]int{"sample_size": c.SampleSize, "patch_size": c.PatchSize, "in_channels": c.InChannels,
		"num_layers": c.NumLayers, "attention_head_dim": c.AttentionHeadDim, "num_attention_heads": c.NumAttentionHeads,
		"joint_attention_dim": c.JointAttentionDim, "pooled_projection_dim": c.PooledProjectionDim,
		"out_channels": c.OutChannels, "pos_embed_max_size": c.PosEmbedMaxSize}
	for k, v := range pos {
		if v <= 0 {
			return fmt.Errorf("mmdit: config %s = %d, must be positive", k, v)
		}
	}
	if c.CaptionProjectionDim != c.Hidden() {
		return fmt.Errorf("mmdit: caption_projection_dim %d must equal heads x head dim = %d", c.CaptionProjectionDim, c.Hidden())
	}
	if !c.Fits(c.SampleSize) {
		return fmt.Errorf("mmdit: sample_size %d does not fit patch %d and position grid %d", c.SampleSize, c.PatchSize, c.PosEmbedMaxSize)
	}
	if c.Hidden()%4 != 0 {
		return fmt.Errorf("mmdit: hidden size %d must be a multiple of 4 (2-D sin-cos positions)", c.Hidden())
	}
	if c.ContextTokens < 0 {
		return fmt.Errorf("mmdit: context_tokens %d < 0", c.ContextTokens)
	}
	return nil
}

// LoadConfig reads a JSON config (a diffusers config.json works; unknown
// keys such as "_class_name" are ignored).
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("mmdit: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ForwardFLOPs counts the multiply-adds (x2) of one transformer forward on
// n latents of h x w: every linear layer and the joint attention's two
// products, without LoRA adapters, norms and elementwise work. Benchmarks
// divide it by time to report achieved GFLOP/s.
func (c Config) ForwardFLOPs(n, h, w int) float64 {
	d := float64(c.Hidden())
	li := float64(h / c.PatchSize * (w / c.PatchSize))
	lc := float64(c.ContextTokens)
	nf := float64(n)
	f := 2 * nf * li * float64(c.InChannels*c.PatchSize*c.PatchSize) * d // patch embedding
	f += 2 * nf * (256*d + d*d + float64(c.PooledProjectionDim)*d + d*d) // timestep and pooled-text MLPs
	f += 2 * lc * float64(c.JointAttentionDim) * d                       // context embedder (shared prompt)
	for i := range c.NumLayers {
		last := i == c.NumLayers-1
		f += 2 * nf * d * 6 * d // norm1
		if last {
			f += 2 * nf * d * 2 * d
		} else {
			f += 2 * nf * d * 6 * d
		}
		f += 2 * nf * (li + lc) * 3 * d * d     // q, k, v of both streams
		f += 4 * nf * (li + lc) * (li + lc) * d // Q K^T and P V
		f += 2 * nf * li * (d*d + 8*d*d)        // to_out, MLP
		if !last {
			f += 2 * nf * lc * (d*d + 8*d*d) // to_add_out, context MLP
		}
	}
	f += 2 * nf * d * 2 * d                                               // norm_out
	f += 2 * nf * li * d * float64(c.PatchSize*c.PatchSize*c.OutChannels) // proj_out
	return f
}
