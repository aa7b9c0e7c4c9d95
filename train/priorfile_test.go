package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
)

func sameWeights(t *testing.T, what string, a, b []nn.Param) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d vs %d parameters", what, len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("%s: parameter %d is %s vs %s", what, i, a[i].Name, b[i].Name)
		}
		for j, v := range a[i].T.Data {
			if v != b[i].T.Data[j] {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, a[i].Name, j, v, b[i].T.Data[j])
			}
		}
	}
}

// TestLoadPrior loads a prior from each layout LoadPrior accepts: a training
// run directory (config.json + the latest checkpoint's part), one of its
// checkpoint files, a diffusers-style directory, a folder of published
// weights and a self-describing file.
func TestLoadPrior(t *testing.T) {
	prior, p := tinyMMDiT(t, 2)
	r := rng.New(3)
	for _, q := range p.List() {
		r.FillNormal(q.T.Data, 0, 0.1)
	}
	dir := t.TempDir()
	run, err := Open(Options{Dir: dir, Config: "prior"})
	if err != nil {
		t.Fatal(err)
	}
	run.Add("model", Weights(prior.Params))
	if _, err := run.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteJSON("config.json", prior.Config); err != nil {
		t.Fatal(err)
	}
	if err := run.Save(3); err != nil {
		t.Fatal(err)
	}
	run.Close()
	checkpoint, _ := LatestPart(dir, "model")

	diffusers := t.TempDir()
	if err := prior.Params.Save(filepath.Join(diffusers, "diffusion_pytorch_model.safetensors"), safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"_class_name": "SD3Transformer2DModel", "sample_size": 8, "patch_size": 2, "in_channels": 16, "num_layers": 1,
		"attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32, "caption_projection_dim": 32,
		"pooled_projection_dim": 32, "out_channels": 16, "pos_embed_max_size": 16, "context_tokens": 4}`
	if err := WriteFileAtomic(filepath.Join(diffusers, "config.json"), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	published := t.TempDir()
	if err := prior.Params.Save(filepath.Join(published, "ema.safetensors"), safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(published, "config.json"), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(t.TempDir(), "student.safetensors")
	if err := prior.Save(self, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ path, weights string }{
		{dir, checkpoint}, // no "ema" part: the model weights
		{checkpoint, checkpoint},
		{diffusers, diffusers},
		{published, filepath.Join(published, "ema.safetensors")},
		{self, self},
	} {
		got, weights, err := LoadPrior(c.path, "ema")
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if weights != c.weights || got.Config != prior.Config {
			t.Errorf("%s: read %s (want %s), config %+v", c.path, weights, c.weights, got.Config)
		}
		sameWeights(t, c.path, prior.Params.List(), got.Params.List())
		if len(got.Params.Trainable()) != 0 {
			t.Errorf("%s: the prior is not frozen", c.path)
		}
	}
	if _, _, err := LoadPrior(t.TempDir(), "ema"); err == nil || !strings.Contains(err.Error(), "no weights") {
		t.Errorf("empty directory: %v", err)
	}
	bare := filepath.Join(t.TempDir(), "a", "b", "w.safetensors")
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prior.Params.Save(bare, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadPrior(bare, "ema"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("weights without any config: %v", err)
	}
}
