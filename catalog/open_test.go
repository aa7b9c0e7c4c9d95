package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/sr"
)

// TestOpen resolves what --model and --scale name: the bicubic baseline at
// any scale 1..16, built-in models and checkpoint files at 4x only.
func TestOpen(t *testing.T) {
	up, err := Open(Bicubic, 3)
	if b, ok := up.(sr.Bicubic); err != nil || !ok || b.Factor != 3 {
		t.Fatalf("bicubic x3: %v, %v", up, err)
	}
	if up, err := Open("", 4); err != nil || up.Name() != DefaultName() {
		t.Fatalf("default: %v, %v", up, err)
	}
	for _, c := range []struct {
		name  string
		scale int
		want  string
	}{
		{Bicubic, 17, "want 1..16"},
		{"", 2, "4x only"},
		{"no-such-model", 4, "not a checkpoint file"},
	} {
		if _, err := Open(c.name, c.scale); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, %d): %v, want %q", c.name, c.scale, err, c.want)
		}
	}
	dir := t.TempDir()
	path := tinyStudentFile(t, dir, "F32")
	if up, err := Open(path, 4); err != nil || up.Name() != "student.safetensors" {
		t.Fatalf("checkpoint: %v, %v", up, err)
	}
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, []byte("not a checkpoint"), 0o644)
	if _, err := Open(bad, 4); err == nil || !strings.Contains(err.Error(), "--model "+bad) {
		t.Errorf("broken checkpoint: %v", err)
	}
}

// tinyStudentFile saves a tiny random student in dir (as tsdsr train
// distill writes one) and returns its path.
func tinyStudentFile(t *testing.T, dir string, dtype safetensors.DType) string {
	t.Helper()
	cfg := mmdit.Config{SampleSize: 8, PatchSize: 2, InChannels: 16, NumLayers: 1, AttentionHeadDim: 8,
		NumAttentionHeads: 2, JointAttentionDim: 8, CaptionProjectionDim: 16, PooledProjectionDim: 8,
		OutChannels: 16, PosEmbedMaxSize: 32, ContextTokens: 2}
	m, err := mmdit.New(cfg, nn.NewParams(rng.New(1)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "student.safetensors")
	if err := m.Save(path, dtype, nil); err != nil {
		t.Fatal(err)
	}
	return path
}
