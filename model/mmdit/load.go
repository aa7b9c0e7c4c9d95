package mmdit

import (
	"encoding/json"
	"fmt"

	"tsdsr/nn"
	"tsdsr/safetensors"
)

// ConfigKey is the safetensors metadata key holding a model's Config as
// JSON, so a checkpoint is self-describing.
const ConfigKey = "config"

// Load builds a model from a checkpoint whose metadata carries its config
// (see Save) and reads every weight strictly. The model is frozen.
func Load(f *safetensors.File) (*Model, error) {
	raw, ok := f.Metadata[ConfigKey]
	if !ok {
		return nil, fmt.Errorf("mmdit: checkpoint has no %q metadata", ConfigKey)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return nil, fmt.Errorf("mmdit: checkpoint config: %w", err)
	}
	m, err := New(cfg, nn.NewParams(nil))
	if err != nil {
		return nil, err
	}
	if _, err := m.Params.Load(f, true); err != nil {
		return nil, err
	}
	m.Params.Freeze()
	return m, nil
}

// Save writes the model's weights (LoRA adapters merged or not, as they
// are) with its config in the metadata, atomically, in dtype.
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
	return m.Params.Save(path, dtype, meta)
}
