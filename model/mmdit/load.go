package mmdit

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"tsdsr/nn"
	"tsdsr/safetensors"
	"tsdsr/tensor"
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

// posBuffer is diffusers' name for the stored position table.
const posBuffer = "pos_embed.pos_embed"

// posTol is the largest difference between a stored and the computed
// position table that is float32 noise: diffusers computes the grid in
// float32, tsdsr in float64 (1.3e-6 apart at SD3-medium's grid of 192).
const posTol = 1e-5

// PosCheck reports a diffusers folder's stored position table against the
// one computed from the config.
type PosCheck struct {
	Stored  bool    // the folder holds pos_embed.pos_embed (and it is used)
	MaxDiff float64 // max |stored - computed|
}

// Mismatch reports a stored table that is not diffusers' formula beyond
// float32 noise: the model then runs with the stored one.
func (c PosCheck) Mismatch() bool { return c.Stored && c.MaxDiff > posTol }

// String describes the check for a log line.
func (c PosCheck) String() string {
	if !c.Stored {
		return "no stored position table: computed from the config"
	}
	return fmt.Sprintf("stored position table used; max |stored - computed| = %.3g", c.MaxDiff)
}

// LoadDir loads a diffusers transformer folder, such as SD3-medium's
// transformer/: config.json and diffusion_pytorch_model.safetensors, or
// its shards listed by diffusion_pytorch_model.safetensors.index.json.
// F16/BF16 weights become float32. Loading is strict over the union of the
// shards: a missing, unexpected or mis-shaped tensor is an error naming it.
// Configs of later SD3 variants this model does not implement (SD3.5's
// qk_norm and dual-attention layers) are refused rather than misread.
//
// diffusers saves the position table as the persistent buffer
// pos_embed.pos_embed [1, grid², hidden], and uses it after loading, so a
// stored table replaces the computed one here too. The returned check says
// how far the two differ; callers should warn on PosCheck.Mismatch (a
// checkpoint whose table is not diffusers' formula), which is not an error.
func LoadDir(dir string) (*Model, PosCheck, error) {
	var pc PosCheck
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, pc, fmt.Errorf("mmdit: %w", err)
	}
	var variant struct {
		QKNorm     *string `json:"qk_norm"`
		DualLayers []int   `json:"dual_attention_layers"`
	}
	if err := json.Unmarshal(raw, &variant); err != nil {
		return nil, pc, fmt.Errorf("mmdit: %s: %w", cfgPath, err)
	}
	if variant.QKNorm != nil || len(variant.DualLayers) > 0 {
		return nil, pc, fmt.Errorf("mmdit: %s: qk_norm/dual_attention_layers (SD3.5) are not supported; SD3-medium's transformer is", cfgPath)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return nil, pc, err
	}
	files, err := weightFiles(dir)
	if err != nil {
		return nil, pc, err
	}
	m, err := New(cfg, nn.NewParams(nil))
	if err != nil {
		return nil, pc, err
	}
	found := map[string]bool{}
	var unexpected []string
	for _, file := range files {
		f, err := safetensors.Open(file)
		if err != nil {
			return nil, pc, err
		}
		rep, err := m.Params.Load(f, false)
		if err != nil {
			f.Close()
			return nil, pc, fmt.Errorf("mmdit: %s: %w", file, err)
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
		for _, n := range rep.Unexpected {
			if n != posBuffer {
				unexpected = append(unexpected, n)
				continue
			}
			if err := m.loadPosTable(f, &pc); err != nil {
				f.Close()
				return nil, pc, fmt.Errorf("mmdit: %s: %w", file, err)
			}
		}
		f.Close()
	}
	var missing []string
	for _, n := range m.Params.Names() {
		if !found[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		return nil, pc, fmt.Errorf("mmdit: %s does not match the config's model: missing %d %v, unexpected %d %v",
			dir, len(missing), firstN(missing, 8), len(unexpected), firstN(unexpected, 8))
	}
	m.Params.Freeze()
	return m, pc, nil
}

// loadPosTable reads the stored position table, records how it differs
// from the computed one and makes the model use it.
func (m *Model) loadPosTable(f *safetensors.File, pc *PosCheck) error {
	g, d := m.Config.PosEmbedMaxSize, m.Config.Hidden()
	in, _ := f.Info(posBuffer)
	if n := tensor.Numel(in.Shape); n != g*g*d || in.Shape[len(in.Shape)-1] != d {
		return fmt.Errorf("%s %v, want [1, %d, %d] for pos_embed_max_size %d", posBuffer, in.Shape, g*g, d, g)
	}
	tab := make([]float32, g*g*d)
	if err := f.ReadInto(posBuffer, tab); err != nil {
		return err
	}
	var diff float64
	for i, v := range tab {
		diff = max(diff, math.Abs(float64(v)-float64(m.posTable[i])))
	}
	if math.IsNaN(diff) || slices.ContainsFunc(tab, func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }) {
		return fmt.Errorf("%s holds NaN or Inf", posBuffer)
	}
	m.posTable = tab
	*pc = PosCheck{Stored: true, MaxDiff: diff}
	return nil
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

// CompactBF16 keeps every linear layer's weight as bfloat16 (see
// tensor.CompactBF16), halving the model's memory (SD3-medium: 8.1 GB of
// float32 weights, 4.1 GB after) while it still computes in float32. The
// weights are rounded, so outputs move by about 1e-3 relative; merge LoRA
// adapters first; the model is frozen (no training, and no saving: the
// compacted weights have no float32 data). It returns the bytes freed.
// Convolution, biases and the learned prompt stay float32.
func (m *Model) CompactBF16() int64 {
	m.Params.Freeze()
	ls := []*nn.Linear{m.timeL1, m.timeL2, m.textL1, m.textL2, m.txtEmbed, m.normOut, m.projOut}
	for _, b := range m.blocks {
		ls = append(ls, b.norm1, b.norm1Txt, b.toQ, b.toK, b.toV, b.toOut, b.addQ, b.addK, b.addV, b.ff0, b.ff2)
		if !b.preOnly {
			ls = append(ls, b.toAddOut, b.ffTxt0, b.ffTxt2)
		}
	}
	var freed int64
	for _, l := range ls {
		if l.LoRA != nil && !l.LoRA.Merged() {
			panic("mmdit.CompactBF16: merge the LoRA adapters first")
		}
		if !l.Weight.IsBF16() {
			freed += 2 * int64(len(l.Weight.Data))
			l.Weight.CompactBF16()
		}
	}
	return freed
}
