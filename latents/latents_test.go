package latents

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"tsdsr/data"
	"tsdsr/imageio"
	"tsdsr/model/taesd"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// photoDir writes small synthetic photos (one too small for a 64 px crop)
// and opens the directory.
func photoDir(t *testing.T) (string, *data.Photos) {
	t.Helper()
	dir := t.TempDir()
	r := rng.New(9)
	for _, p := range []struct {
		name string
		w, h int
	}{{"a.png", 80, 72}, {"b.png", 96, 64}, {"c.png", 40, 40}, {"d.png", 64, 64}} {
		m := imageio.NewImage(p.w, p.h, 3)
		for i := range m.Pix {
			// Smooth gradients plus a little texture, quantised as 8-bit files are.
			x, y := i%p.w, (i/p.w)%p.h
			v := 0.5 + 0.3*math.Sin(float64(x)/7+float64(i/(p.w*p.h))) + 0.2*math.Cos(float64(y)/5) + 0.05*r.Float64()
			m.Pix[i] = float32(math.Round(min(1, max(0, v))*255) / 255)
		}
		if err := imageio.WriteFile(filepath.Join(dir, p.name), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	photos, err := data.OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dir, photos
}

func TestBuildSaveLoadSplit(t *testing.T) {
	dir, photos := photoDir(t)
	enc, _, err := taesd.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	o := BuildOptions{Crop: 64, PerPhoto: 2, Seed: 4, Batch: 4}
	var calls int
	o.Progress = func(done, total int) { calls++ }
	c, err := Build(context.Background(), photos, dir, enc, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Latents.Shape; len(c.Photo) != 6 || got[0] != 6 || got[1] != 16 || got[2] != 8 || got[3] != 8 {
		t.Fatalf("latents %v for photos %v", got, c.Photo)
	}
	if len(c.Skipped) != 1 || c.Skipped[0] != "c.png" || calls != 2 {
		t.Errorf("skipped %v, progress calls %d", c.Skipped, calls)
	}

	// Crop 3 (photo b, k = 1) encoded alone gives the cached latent.
	p, _ := photos.Photo(1)
	r := rng.New(4).Child(1*2 + 1)
	x0, y0 := r.IntN(96-64+1), r.IntN(64-64+1)
	x := tensor.New(1, 3, 64, 64)
	Crop(p, x0, y0, 64, r.IntN(2) == 1, x.Data)
	z := enc.Forward(x)
	per := 16 * 8 * 8
	for i, v := range z.Data {
		if math.Abs(float64(v-c.Latents.Data[3*per+i])) > 1e-5 {
			t.Fatalf("crop 3 latent %d: %v cached, %v alone", i, c.Latents.Data[3*per+i], v)
		}
	}

	// The same seed gives the same cache.
	again, err := Build(context.Background(), photos, dir, enc, BuildOptions{Crop: 64, PerPhoto: 2, Seed: 4, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range again.Latents.Data {
		if math.Abs(float64(again.Latents.Data[i]-c.Latents.Data[i])) > 1e-5 {
			t.Fatalf("rebuild differs at %d", i)
		}
	}

	path := filepath.Join(t.TempDir(), "cache.safetensors")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != dir || l.Crop != 64 || l.Seed != 4 || len(l.Photos) != 4 || len(l.Skipped) != 1 || len(l.Photo) != 6 {
		t.Errorf("loaded %+v", l)
	}
	for i, v := range l.Latents.Data {
		w := c.Latents.Data[i]
		if math.Abs(float64(v-w)) > 1e-3*math.Abs(float64(w))+1e-4 {
			t.Fatalf("latent %d: %v saved, %v loaded", i, w, v)
		}
	}

	train, val := l.Split(0.3) // 3 photos with crops: one held out
	if val.Len() != 2 || train.Len() != 4 {
		t.Fatalf("split %d train / %d val", train.Len(), val.Len())
	}
	for _, tp := range train.Photo {
		for _, vp := range val.Photo {
			if tp == vp {
				t.Fatalf("photo %d on both sides of the split", tp)
			}
		}
	}
	for n, p := range val.Photo {
		i := 0
		for l.Photo[i] != p {
			i++
		}
		if got, want := val.X.Data[n*per], l.Latents.Data[(i+n%2)*per]*taesd.LatentScale; got != want {
			t.Errorf("val latent %d not scaled: %v, want %v", n, got, want)
		}
	}
	b := train.Batch(rng.New(1), 5)
	if b.Shape[0] != 5 || b.Shape[1] != 16 {
		t.Fatalf("batch %v", b.Shape)
	}
	for n := range 5 {
		found := false
		for j := range train.Len() {
			if b.Data[n*per] == train.X.Data[j*per] && b.Data[n*per+per-1] == train.X.Data[j*per+per-1] {
				found = true
			}
		}
		if !found {
			t.Errorf("batch row %d is no training latent", n)
		}
	}
	if f := val.First(1); f.Shape[0] != 1 || f.Data[0] != val.X.Data[0] {
		t.Errorf("First(1) = %v", f.Shape)
	}
}

func TestCropFlip(t *testing.T) {
	_, photos := photoDir(t)
	p, _ := photos.Photo(0)
	a, b := make([]float32, 3*16*16), make([]float32, 3*16*16)
	Crop(p, 5, 7, 16, false, a)
	Crop(p, 5, 7, 16, true, b)
	for c := range 3 {
		for y := range 16 {
			for x := range 16 {
				if a[(c*16+y)*16+x] != b[(c*16+y)*16+15-x] {
					t.Fatalf("flip mismatch at c%d y%d x%d", c, y, x)
				}
			}
		}
	}
	// Unflipped, the crop is the photo's pixels at the offset.
	if want := float32(p.Pix[7*p.Width+5]) / 255; a[0] != want {
		t.Errorf("crop origin %v, want %v", a[0], want)
	}
}

func TestBuildCancelled(t *testing.T) {
	dir, photos := photoDir(t)
	enc, _, _ := taesd.Embedded()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, photos, dir, enc, BuildOptions{Crop: 64, PerPhoto: 1}); err != context.Canceled {
		t.Errorf("cancelled build: %v", err)
	}
}
