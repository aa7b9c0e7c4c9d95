package mmdit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"tsdsr/nn"
	"tsdsr/safetensors"
)

// ConfigKey is the safetensors metadata key holding a model's Config as
// JSON, so a checkpoint is self-describing.
const ConfigKey = "config"

// Load builds a model from a checkpoint whose metadata carries its config
// (see Save) and reads every weight strictly. The model is frozen.
func Load(f *safetensors.File) (*Model, error) {
	cfg, err := metadataConfig(f)
	if err != nil {
		return nil, err
	}
	return loadWith(f, cfg)
}

// Save writes the model's base weights with its config in the metadata,
// atomically, in dtype: what Load and LoadFile read back. LoRA adapters are
// not written (they would not load into a plain model); merge them first
// (nn.MergeLoRA) to keep their effect.
func (m *Model) Save(path string, dtype safetensors.DType, metadata map[string]string) error {
	meta := map[string]string{}
	for k, v := range metadata {
		meta[k] = v
	}
	b, err := json.Marshal(m.Config)
	if err != nil {
		return err
	}
	meta[ConfigKey] = string(b)
	return nn.Save(path, m.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) }), dtype, meta)
}

// LoadDir loads a diffusers transformer folder, such as SD3-medium's
// transformer/: config.json and diffusion_pytorch_model.safetensors, or
// its shards listed by diffusion_pytorch_model.safetensors.index.json.
// F16/BF16 weights become float32. Loading is strict over the union of the
// shards: a missing, unexpected or mis-shaped tensor is an error naming it.
// Configs of later SD3 variants this model does not implement (SD3.5's
// qk_norm and dual-attention layers) are refused rather than misread.
func LoadDir(dir string) (*Model, error) {
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("mmdit: %w", err)
	}
	var variant struct {
		QKNorm     *string `json:"qk_norm"`
		DualLayers []int   `json:"dual_attention_layers"`
	}
	if err := json.Unmarshal(raw, &variant); err != nil {
		return nil, fmt.Errorf("mmdit: %s: %w", cfgPath, err)
	}
	if variant.QKNorm != nil || len(variant.DualLayers) > 0 {
		return nil, fmt.Errorf("mmdit: %s: qk_norm/dual_attention_layers (SD3.5) are not supported; SD3-medium's transformer is", cfgPath)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	files, err := weightFiles(dir)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, nn.NewParams(nil))
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	var unexpected []string
	for _, file := range files {
		f, err := safetensors.Open(file)
		if err != nil {
			return nil, err
		}
		rep, err := m.Params.Load(f, false)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("mmdit: %s: %w", file, err)
		}
		missing := map[string]bool{}
		for _, n := range rep.Missing {
			missing[n] = true
		}
		for _, n := range m.Params.Names() {
			if !missing[n] {
				found[n] = true
			}
		}
		unexpected = append(unexpected, rep.Unexpected...)
	}
	var missing []string
	for _, n := range m.Params.Names() {
		if !found[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		return nil, fmt.Errorf("mmdit: %s does not match the config's model: missing %d %v, unexpected %d %v",
			dir, len(missing), firstN(missing, 8), len(unexpected), firstN(unexpected, 8))
	}
	m.Params.Freeze()
	return m, nil
}

// weightFiles lists a diffusers folder's safetensors: the single file, or
// the shards of its index.
func weightFiles(dir string) ([]string, error) {
	single := filepath.Join(dir, "diffusion_pytorch_model.safetensors")
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil
	}
	index := single + ".index.json"
	raw, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("mmdit: %s has neither %s nor its index", dir, filepath.Base(single))
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("mmdit: %s: %w", index, err)
	}
	seen := map[string]bool{}
	var files []string
	for _, shard := range idx.WeightMap {
		if !seen[shard] && shard == filepath.Base(shard) {
			seen[shard] = true
			files = append(files, filepath.Join(dir, shard))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("mmdit: %s lists no shard files", index)
	}
	sort.Strings(files)
	return files, nil
}

// firstN shortens a name list for an error message.
func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}
