package mmdit

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// writeDiffusersDir writes m as a diffusers transformer folder in F16:
// config.json (with diffusers' bookkeeping keys) and two shards with their
// index, as large checkpoints are published. drop removes tensors from
// the files and extra adds some.
func writeDiffusersDir(t *testing.T, m *Model, drop string, extra map[string]*tensor.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{}
	b, _ := json.Marshal(m.Config)
	json.Unmarshal(b, &cfg)
	cfg["_class_name"], cfg["_diffusers_version"] = "SD3Transformer2DModel", "0.29.0"
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	shards := []map[string]*tensor.Tensor{{}, {}}
	index := map[string]string{}
	for i, p := range m.Params.List() {
		if p.Name == drop {
			continue
		}
		shards[i%2][p.Name] = p.T
		index[p.Name] = []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[i%2]
	}
	for k, v := range extra {
		shards[0][k] = v
		index[k] = "model-00001-of-00002.safetensors"
	}
	for i, s := range shards {
		name := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[i]
		if err := safetensors.Save(filepath.Join(dir, name), s, nil, safetensors.F16); err != nil {
			t.Fatal(err)
		}
	}
	b, _ = json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	if err := os.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors.index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sd3Like is tiny() without the learned prompt: SD3 takes its prompt from
// text encoders (TSD-SR: precomputed embeddings).
func sd3Like(t *testing.T) *Model {
	cfg := tiny()
	cfg.ContextTokens = 0
	m, err := New(cfg, nn.NewParams(rng.New(4)))
	if err != nil {
		t.Fatal(err)
	}
	randomise(m, 5)
	return m
}

func TestLoadDirShardedF16(t *testing.T) {
	m := sd3Like(t)
	got, _, err := LoadDir(writeDiffusersDir(t, m, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != m.Config {
		t.Fatalf("config %+v, want %+v", got.Config, m.Config)
	}
	for _, p := range m.Params.List() {
		q := got.Params.Get(p.Name)
		for i, v := range p.T.Data {
			if want := tensor.F16ToF32(tensor.F32ToF16(v)); q.Data[i] != want {
				t.Fatalf("%s[%d] = %v, want the F16 value %v", p.Name, i, q.Data[i], want)
			}
		}
	}
}

func TestLoadDirErrors(t *testing.T) {
	m := sd3Like(t)
	if _, _, err := LoadDir(writeDiffusersDir(t, m, "transformer_blocks.1.attn.to_k.weight", nil)); err == nil ||
		!strings.Contains(err.Error(), "missing 1 [transformer_blocks.1.attn.to_k.weight]") {
		t.Errorf("missing tensor: %v", err)
	}
	extra := map[string]*tensor.Tensor{"transformer_blocks.0.attn.norm_q.weight": tensor.New(16)}
	if _, _, err := LoadDir(writeDiffusersDir(t, m, "", extra)); err == nil ||
		!strings.Contains(err.Error(), "unexpected 1 [transformer_blocks.0.attn.norm_q.weight]") {
		t.Errorf("unexpected tensor: %v", err)
	}
	bad := map[string]*tensor.Tensor{"proj_out.weight": tensor.New(3, 3)}
	dir := writeDiffusersDir(t, m, "proj_out.weight", bad)
	if _, _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "proj_out.weight (file [3 3]") {
		t.Errorf("mis-shaped tensor: %v", err)
	}
	// SD3.5's config keys are refused, not ignored.
	dir = writeDiffusersDir(t, m, "", nil)
	cfgPath := filepath.Join(dir, "config.json")
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "{", `{"qk_norm":"rms_norm",`, 1)), 0o644)
	if _, _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "SD3.5") {
		t.Errorf("SD3.5 config: %v", err)
	}
	if _, _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
}

// TestLoadDirStoredPositions: a stored pos_embed.pos_embed is used as
// diffusers uses it, a table that is not the formula is reported (not an
// error, not ignored), and a table of the wrong size is an error.
func TestLoadDirStoredPositions(t *testing.T) {
	m := sd3Like(t)
	g, d := m.Config.PosEmbedMaxSize, m.Config.Hidden()
	tab := tensor.FromData(append([]float32(nil), m.posTable...), 1, g*g, d)
	tab.Data[5*d+3] += 0.25
	got, pos, err := LoadDir(writeDiffusersDir(t, m, "", map[string]*tensor.Tensor{posBuffer: tab}))
	if err != nil {
		t.Fatal(err)
	}
	if !pos.Stored || !pos.Mismatch() || math.Abs(pos.MaxDiff-0.25) > 1e-3 {
		t.Fatalf("check %+v (%v): want a reported mismatch of about 0.25", pos, pos)
	}
	for i, v := range tab.Data {
		if want := tensor.F16ToF32(tensor.F32ToF16(v)); got.posTable[i] != want {
			t.Fatalf("position %d = %v, want the stored %v", i, got.posTable[i], want)
		}
	}
	_, pos, err = LoadDir(writeDiffusersDir(t, m, "", nil))
	if err != nil || pos.Stored || pos.Mismatch() {
		t.Fatalf("folder without the buffer: %+v, %v", pos, err)
	}
	short := map[string]*tensor.Tensor{posBuffer: tensor.New(1, g*g-1, d)}
	if _, _, err := LoadDir(writeDiffusersDir(t, m, "", short)); err == nil || !strings.Contains(err.Error(), posBuffer) {
		t.Errorf("mis-sized table: %v", err)
	}
}

// TestCompactBF16 checks that a compacted model computes with the
// bfloat16-rounded weights: the same output as the float32 model whose
// linear weights were rounded, and within bfloat16 precision of the
// original.
func TestCompactBF16(t *testing.T) {
	// Weights of std 1/sqrt(fan_in), so the error stays bfloat16-sized.
	tame := func() *Model {
		m := sd3Like(t)
		for _, p := range m.Params.List() {
			if p.T.Dim() == 2 {
				s := float32(1 / (0.2 * math.Sqrt(float64(p.T.Shape[1]))))
				for i := range p.T.Data {
					p.T.Data[i] *= s
				}
			}
		}
		return m
	}
	m, ref := tame(), tame()
	for _, p := range ref.Params.List() {
		if p.T.Dim() == 2 {
			for i, v := range p.T.Data {
				p.T.Data[i] = tensor.BF16ToF32(tensor.F32ToBF16(v))
			}
		}
	}
	orig := tame()
	r := rng.New(8)
	x, ctx, pooled := randT(r, 1, 16, 8, 6), randT(r, 1, 5, 24), randT(r, 1, 12)
	want, base := ref.Forward(x, []float32{700}, ctx, pooled), orig.Forward(x, []float32{700}, ctx, pooled)
	freed := m.CompactBF16()
	if freed <= 0 || m.CompactBF16() != 0 {
		t.Fatalf("freed %d bytes, then again", freed)
	}
	got := m.Forward(x, []float32{700}, ctx, pooled)
	if d := maxDiff(got, want); d != 0 {
		t.Errorf("compacted model differs from the rounded float32 one by %g", d)
	}
	scale := maxDiff(base, tensor.New(base.Shape...))
	if d := maxDiff(got, base) / scale; d == 0 || d > 2e-2 {
		t.Errorf("compacted vs float32 model: %g relative, want bfloat16-sized", d)
	} else {
		t.Logf("compacted vs float32 model: %.3g relative", d)
	}
}

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
