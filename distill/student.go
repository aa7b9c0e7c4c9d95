package distill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/safetensors"
	"tsdsr/train"
)

// ConfigKey is the safetensors metadata key under which a saved model
// carries its mmdit config as JSON.
const ConfigKey = "config"

// SaveStudent writes a one-step student as a single safetensors file:
// every transformer weight under its diffusers key with any LoRA adapter
// merged in (W + scale B A), in dtype, and the mmdit config JSON in the
// metadata under ConfigKey, so mmdit.New plus Params.Load rebuilds it
// (LoadStudent). The model itself is left exactly as it was: its base
// weights are restored bit for bit after the merge, so saving in the
// middle of a run does not perturb training.
func SaveStudent(path string, m *mmdit.Model, dtype safetensors.DType) error {
	cfg, err := json.Marshal(m.Config)
	if err != nil {
		return err
	}
	base := m.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) })
	backup := make([][]float32, len(base))
	for i, p := range base {
		backup[i] = append([]float32(nil), p.T.Data...)
	}
	nn.MergeLoRA(m.Params)
	err = nn.Save(path, base, dtype, map[string]string{ConfigKey: string(cfg), "format": "pt", "model": "tsdsr-student"})
	nn.UnmergeLoRA(m.Params)
	for i, p := range base {
		copy(p.T.Data, backup[i])
	}
	return err
}

// LoadStudent reads a file written by SaveStudent (or any transformer
// checkpoint with its config in the metadata) into a new model, strictly:
// every key must be present and nothing else.
func LoadStudent(path string) (*mmdit.Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, ok := f.Metadata[ConfigKey]
	if !ok {
		return nil, fmt.Errorf("distill: %s has no %q metadata", path, ConfigKey)
	}
	return loadModel(f, []byte(raw), path)
}

func loadModel(f *safetensors.File, cfgJSON []byte, name string) (*mmdit.Model, error) {
	var cfg mmdit.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("distill: %s: config: %w", name, err)
	}
	m, err := mmdit.New(cfg, nn.NewParams(nil))
	if err != nil {
		return nil, fmt.Errorf("distill: %s: %w", name, err)
	}
	if _, err := m.Params.Load(f, true); err != nil {
		return nil, fmt.Errorf("distill: %s: %w", name, err)
	}
	return m, nil
}

// LoadPrior loads the prior transformer from path, which is one of
//
//   - a safetensors file with its config in the metadata (SaveStudent's
//     format) or a config.json beside it;
//   - a directory holding config.json and diffusion_pytorch_model.safetensors
//     (diffusers' layout);
//   - a prior training run directory (tsdsr train prior) holding config.json:
//     the latest checkpoint's "model" part, overlaid with its "ema" part (the
//     averaged weights) when there is one.
func LoadPrior(path string) (*mmdit.Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return loadFile(path, filepath.Join(filepath.Dir(path), "config.json"))
	}
	cfgPath := filepath.Join(path, "config.json")
	if _, err := train.ReadState(path); err != nil {
		return loadFile(filepath.Join(path, "diffusion_pytorch_model.safetensors"), cfgPath)
	}
	model, err := train.LatestPart(path, "model")
	if err != nil {
		return nil, err
	}
	m, err := loadFile(model, cfgPath)
	if err != nil {
		return nil, err
	}
	ema, _ := train.LatestPart(path, "ema")
	if _, err := os.Stat(ema); err != nil {
		return m, nil
	}
	f, err := safetensors.Open(ema)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := m.Params.Load(f, false); err != nil {
		return nil, fmt.Errorf("distill: %s: %w", ema, err)
	}
	return m, nil
}

// loadFile loads a transformer checkpoint whose config is in its metadata
// or else in the JSON file cfgPath.
func loadFile(file, cfgPath string) (*mmdit.Model, error) {
	f, err := safetensors.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if raw, ok := f.Metadata[ConfigKey]; ok {
		return loadModel(f, []byte(raw), file)
	}
	raw, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("distill: %s has no config metadata and there is no %s", file, cfgPath)
	} else if err != nil {
		return nil, err
	}
	return loadModel(f, raw, file)
}

// Interpolate returns the student (1 - alpha) a + alpha b, weight by weight:
// ESRGAN's network interpolation (Wang et al. 2018, section 3.4), which
// trades a fidelity-oriented model (a, e.g. regression-trained) against a
// perceptual one (b, e.g. score-distilled) without retraining. It is only
// meaningful between fine-tunes of one initialisation (here: of one
// prior), whose weights stay close. a and b must share a config; the
// prompt embeddings are interpolated like every other tensor.
func Interpolate(a, b *mmdit.Model, alpha float64) (*mmdit.Model, error) {
	if a.Config != b.Config {
		return nil, fmt.Errorf("distill: interpolate: the models differ in shape (%+v vs %+v)", a.Config, b.Config)
	}
	if !(alpha >= 0 && alpha <= 1) {
		return nil, fmt.Errorf("distill: interpolate: alpha %v not in [0, 1]", alpha)
	}
	out, err := Clone(a)
	if err != nil {
		return nil, err
	}
	bw := nn.Map(b.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) }))
	wa, wb := float32(1-alpha), float32(alpha)
	for _, p := range out.Params.List() {
		q, ok := bw[p.Name]
		if !ok {
			return nil, fmt.Errorf("distill: interpolate: %s missing from the second model", p.Name)
		}
		for i, v := range q.Data {
			p.T.Data[i] = wa*p.T.Data[i] + wb*v
		}
	}
	return out, nil
}
