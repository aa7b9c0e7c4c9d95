package mmdit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"tsdsr/nn"
	"tsdsr/safetensors"
)

// This file and load.go are the one owner of the transformer's checkpoint
// format (diffusers' from_pretrained/save_pretrained idea): Save writes a
// self-describing file, Load and LoadFile read one back, LoadDir reads a
// diffusers folder. Run directories of `tsdsr train prior` are read by
// train.LoadPrior, which builds on these.

// LoadFile reads a transformer checkpoint file strictly. The config comes
// from its metadata (Save's format), or else from the first that exists of
// a config.json beside it and the given config files (for example a
// training run's config.json above its checkpoints). The model is frozen.
func LoadFile(path string, configs ...string) (*Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := loadFile(f, path, configs)
	if err != nil {
		return nil, fmt.Errorf("mmdit: %s: %w", path, err)
	}
	return m, nil
}

func loadFile(f *safetensors.File, path string, configs []string) (*Model, error) {
	if _, ok := f.Metadata[ConfigKey]; ok {
		return Load(f)
	}
	configs = append([]string{filepath.Join(filepath.Dir(path), "config.json")}, configs...)
	for _, c := range configs {
		if _, err := os.Stat(c); errors.Is(err, os.ErrNotExist) {
			continue
		}
		cfg, err := LoadConfig(c)
		if err != nil {
			return nil, err
		}
		return loadWith(f, cfg)
	}
	return nil, fmt.Errorf("no %q metadata and no config file (looked for %v)", ConfigKey, configs)
}

// LoadWeights reads the weights file path into m strictly: every tensor of
// m must be there with its shape, and nothing else (the error names the
// first mismatches). m's trainable flags are left as they are.
func (m *Model) LoadWeights(path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = m.Params.Load(f, true)
	return err
}

// loadWith builds a frozen model of cfg from f, strictly.
func loadWith(f *safetensors.File, cfg Config) (*Model, error) {
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

// metadataConfig parses the config Save stores in a checkpoint's metadata.
func metadataConfig(f *safetensors.File) (Config, error) {
	var cfg Config
	raw, ok := f.Metadata[ConfigKey]
	if !ok {
		return cfg, fmt.Errorf("mmdit: checkpoint has no %q metadata", ConfigKey)
	}
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return cfg, fmt.Errorf("mmdit: checkpoint config: %w", err)
	}
	return cfg, nil
}
