package catalog

import (
	"context"
	"path/filepath"
	"testing"

	"tsdsr/imageio"
	"tsdsr/sr"
)

func TestListHasDefaultAndBicubic(t *testing.T) {
	list, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if !list[0].Default || DefaultName() != list[0].Name {
		t.Fatalf("first model %+v is not the default", list[0])
	}
	up, err := Load(Bicubic)
	if err != nil || up.Name() != "bicubic" {
		t.Fatalf("bicubic: %v %v", up, err)
	}
	if _, err := Load("no-such-model"); err == nil {
		t.Fatal("unknown model loaded")
	}
	for _, m := range list[1:] {
		if _, err := Load(m.Name); err != nil {
			t.Errorf("built-in %s: %v", m.Name, err)
		}
	}
}

// TestLoadFileRunsACheckpoint: a student checkpoint saved by mmdit (as
// tsdsr train distill writes it) loads and upscales through the pipeline.
func TestLoadFileRunsACheckpoint(t *testing.T) {
	path := tinyStudentFile(t, t.TempDir(), "BF16")
	up, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if up.Tile != 8 {
		t.Errorf("default tile %d, want the training latent size 8", up.Tile)
	}
	in := imageio.NewImage(9, 7, 1)
	for i := range in.Pix {
		in.Pix[i] = float32(i%5) / 5
	}
	out, err := sr.New(up, nil).UpscaleImage(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 36 || out.Height != 28 || out.Channels != 1 {
		t.Fatalf("output %dx%dx%d", out.Width, out.Height, out.Channels)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Fatal("missing file loaded")
	}
}
