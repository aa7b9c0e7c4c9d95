package mmdit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
)

// TestLoadFile reads a checkpoint back with its config from the metadata
// (Save), from a config.json beside it, or from a given config file, and
// refuses one without any config.
func TestLoadFile(t *testing.T) {
	m := newTiny(t, 30)
	randomise(m, 31)
	// Save writes the base weights only: an attached adapter is not part
	// of the file (SaveStudent merges it first).
	if _, err := nn.AttachLoRA(m.Params, nn.LoRAConfig{Rank: 2, Targets: []string{"attn.to_q"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	self := filepath.Join(dir, "self.safetensors")
	if err := m.Save(self, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	base := m.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) })
	bare := filepath.Join(dir, "sub", "bare.safetensors")
	os.Mkdir(filepath.Dir(bare), 0o755)
	if err := nn.Save(bare, base, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bare); err == nil || !strings.Contains(err.Error(), "no \"config\" metadata") {
		t.Fatalf("file without a config: %v", err)
	}
	cfgPath := filepath.Join(dir, "elsewhere.json")
	if err := writeConfig(cfgPath, m.Config); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got *Model, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.Config != m.Config || len(got.Params.Trainable()) != 0 {
			t.Fatalf("%s: config %+v, %d trainable", what, got.Config, len(got.Params.Trainable()))
		}
		for _, p := range base {
			q := got.Params.Get(p.Name)
			for i, v := range p.T.Data {
				if q.Data[i] != v {
					t.Fatalf("%s: %s differs", what, p.Name)
				}
			}
		}
	}
	got, err := LoadFile(self)
	check("metadata", got, err)
	got, err = LoadFile(bare, cfgPath)
	check("given config", got, err)
	if err := writeConfig(filepath.Join(filepath.Dir(bare), "config.json"), m.Config); err != nil {
		t.Fatal(err)
	}
	got, err = LoadFile(bare, filepath.Join(dir, "missing.json"))
	check("config.json beside", got, err)

	// LoadWeights names the tensor that does not fit.
	other := tiny()
	other.NumLayers++
	m2, err := New(other, nn.NewParams(rng.New(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadWeights(bare); err == nil || !strings.Contains(err.Error(), "transformer_blocks.") {
		t.Errorf("LoadWeights of a smaller model: %v", err)
	}
}

func writeConfig(path string, c Config) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
