package degrade

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
	"tsdsr/rng"
)

func TestDefaultOptionsValid(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "o.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	o, err := LoadOptions(write(`{"crop": {"size": 256}, "stage2": {"gaussian_prob": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultOptions()
	if o.Crop.Size != 256 || o.Stage2.GaussianProb != 1 || o.Stage1.JPEG != d.Stage1.JPEG || !o.Crop.HFlip {
		t.Fatalf("partial override gave %+v", o.Crop)
	}
	for _, bad := range []string{
		`{"crop": {"sise": 256}}`,
		`{"crop": {"size": 130}}`,
		`{"stage1": {"resize_probs": [0.5, 0.7, 0.1]}}`,
		`{"stage1": {"blur": {"sizes": [8]}}}`,
		`{"final": {"resize_modes": ["nearest"]}}`,
		`{"stage2": {"noise_sigma": [30, 1]}}`,
	} {
		if _, err := LoadOptions(write(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	// The defaults round-trip through JSON.
	b, _ := json.Marshal(d)
	o, err = LoadOptions(write(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(o)
	if string(b) != string(b2) {
		t.Fatal("defaults do not round-trip through JSON")
	}
}

// TestSampleFrequencies checks the drawn choices follow the options.
func TestSampleFrequencies(t *testing.T) {
	o := DefaultOptions()
	r := rng.New(10)
	const n = 20000
	c := map[string]float64{}
	for range n {
		p := Sample(r, o, 512, 512)
		c["s1 "+p.Stage1.Resize]++
		c["s2 "+p.Stage2.Resize]++
		c["s1 "+p.Stage1.Noise]++
		if p.Stage2.Blur != nil {
			c["s2 blur"]++
		}
		if p.Stage1.GrayNoise {
			c["s1 gray"]++
		}
		if p.Final.JPEGFirst {
			c["jpeg first"]++
		}
		if p.Final.Sinc != nil {
			c["final sinc"]++
		}
		if p.Final.ResizeMode == ModeBicubic {
			c["final bicubic"]++
		}
		if q := p.Stage1.JPEGQuality; q < 30 || q > 95 || p.Final.JPEGQuality < 30 || p.Final.JPEGQuality > 95 {
			t.Fatalf("JPEG quality %d / %d out of range", q, p.Final.JPEGQuality)
		}
		if s := p.Stage1.ResizeScale; s < 0.15 || s > 1.5 {
			t.Fatalf("stage 1 scale %v", s)
		}
		if p.Stage2.Width != int(128*p.Stage2.ResizeScale) {
			t.Fatalf("stage 2 size %d for scale %v", p.Stage2.Width, p.Stage2.ResizeScale)
		}
	}
	want := map[string]float64{
		"s1 up": 0.2, "s1 down": 0.7, "s1 keep": 0.1, "s2 up": 0.3, "s2 down": 0.4, "s2 keep": 0.3,
		"s1 gaussian": 0.5, "s2 blur": 0.8, "s1 gray": 0.4, "jpeg first": 0.5, "final sinc": 0.8, "final bicubic": 1.0 / 3,
	}
	for k, p := range want {
		got := c[k] / n
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*sd {
			t.Errorf("%s: frequency %.4f, want %.4f", k, got, p)
		}
	}
}

func smallOptions(size int) *Options {
	o := DefaultOptions()
	o.Crop.Size = size
	o.Crop.Rot = true
	return o
}

func testPhoto(w, h int) ImagePhoto {
	return ImagePhoto{&imageio.Image{Width: w, Height: h, Channels: 3, Pix: testPlanes(w, h, 3, 11), BitDepth: 8}}
}

func hashImages(ms ...*imageio.Image) [32]byte {
	hs := sha256.New()
	for _, m := range ms {
		binary.Write(hs, binary.LittleEndian, []int64{int64(m.Width), int64(m.Height), int64(m.Channels)})
		binary.Write(hs, binary.LittleEndian, m.Pix)
	}
	var s [32]byte
	copy(s[:], hs.Sum(nil))
	return s
}

// TestPairDeterministic: the same seed gives the same bytes, other seeds
// other pairs, and the JSON sidecar alone reproduces the LR from the HR.
func TestPairDeterministic(t *testing.T) {
	photo := testPhoto(300, 260)
	o := smallOptions(128)
	hashes := map[[32]byte]uint64{}
	for seed := range uint64(6) {
		a, err := SamplePair(photo, rng.New(seed), o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := SamplePair(photo, rng.New(seed), o)
		if err != nil {
			t.Fatal(err)
		}
		ha, hb := hashImages(a.HR, a.LR, a.LRUp), hashImages(b.HR, b.LR, b.LRUp)
		if ha != hb {
			t.Fatalf("seed %d: two runs differ", seed)
		}
		if prev, dup := hashes[ha]; dup {
			t.Fatalf("seeds %d and %d give the same pair", prev, seed)
		}
		hashes[ha] = seed
		if a.LR.Width != 32 || a.LR.Height != 32 || a.HR.Width != 128 || a.LRUp.Width != 128 {
			t.Fatalf("sizes HR %d LR %d LRUp %d", a.HR.Width, a.LR.Width, a.LRUp.Width)
		}
		for _, v := range a.LR.Pix {
			if l := v * 255; l != float32(math.Round(float64(l))) || v < 0 || v > 1 {
				t.Fatalf("LR value %v is not an 8-bit level", v)
			}
		}
		js, err := json.Marshal(a.Params)
		if err != nil {
			t.Fatal(err)
		}
		var back PairParams
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		lr, err := Apply(a.HR, &back.Degradation)
		if err != nil {
			t.Fatal(err)
		}
		if hashImages(lr) != hashImages(a.LR) {
			t.Fatalf("seed %d: Apply of the decoded sidecar differs from the pair's LR", seed)
		}
	}
}

// TestPairGolden pins the bytes of one pair, so a change of any sampled
// value, formula or summation order shows up, and the SIMD and pure-Go
// builds are held to the same output. It also depends on the resize
// package's arithmetic: after a deliberate change there, update the hash.
func TestPairGolden(t *testing.T) {
	p, err := SamplePair(testPhoto(300, 260), rng.New(42), smallOptions(128))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%x", hashImages(p.HR, p.LR))
	const want = "189f2077bc479aa4901fcb910413bc6029be7442d47881240bb3ca485851edce"
	if got != want {
		t.Fatalf("pair hash %s, want %s", got, want)
	}
}

// TestSmallPhotoPadded: photos smaller than the crop are reflect-padded.
func TestSmallPhotoPadded(t *testing.T) {
	p, err := SamplePair(testPhoto(100, 60), rng.New(1), smallOptions(128))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Params.Crop
	if c.PadRight != 28 || c.PadBottom != 68 || c.X != 0 || c.Y != 0 || p.HR.Width != 128 || p.LR.Width != 32 {
		t.Fatalf("crop %+v, HR %dx%d", c, p.HR.Width, p.HR.Height)
	}
}

// TestUSMBeforeCrop: sharpening the crop with its margin equals sharpening
// the whole photo, then cropping.
func TestUSMBeforeCrop(t *testing.T) {
	photo := testPhoto(260, 230)
	o := smallOptions(128)
	full := USM(photo.Pix, photo.Width, photo.Height, 3, o.USM)
	fp := ImagePhoto{&imageio.Image{Width: photo.Width, Height: photo.Height, Channels: 3, Pix: full}}
	for _, xy := range [][2]int{{0, 0}, {60, 40}, {132, 102}, {10, 90}} {
		c := &CropParams{X: xy[0], Y: xy[1], Size: 128}
		got, err := cropHR(photo, c, o)
		if err != nil {
			t.Fatal(err)
		}
		want := fp.Region(c.X, c.Y, c.X+128, c.Y+128)
		for i := range want.Pix {
			if got.Pix[i] != want.Pix[i] {
				t.Fatalf("crop at %v: value %d: %v, want %v", xy, i, got.Pix[i], want.Pix[i])
			}
		}
	}
	// On planes smaller than the kernel radius (reflection bounces), a
	// rectangle of USM equals the same rectangle of the whole.
	tiny := testPlanes(20, 15, 3, 12)
	whole := USM(tiny, 20, 15, 3, o.USM)
	part := usmRect(tiny, 20, 15, 3, o.USM, 3, 5, 9, 7)
	for c := range 3 {
		for y := range 7 {
			for x := range 9 {
				if a, b := part[(c*7+y)*9+x], whole[(c*15+y+5)*20+x+3]; a != b {
					t.Fatalf("tiny plane: rect value %v, whole %v", a, b)
				}
			}
		}
	}
	// USM sharpens: more energy in the residual of edges.
	if meanAbsDiff(full, photo.Pix) == 0 {
		t.Fatal("USM changed nothing")
	}
}

func TestAugment(t *testing.T) {
	m := imageio.NewImage(3, 3, 1)
	for i := range m.Pix {
		m.Pix[i] = float32(i)
	}
	augment(m, true, true, true)
	// hflip: 2 1 0 / 5 4 3 / 8 7 6; vflip: 8 7 6 / 5 4 3 / 2 1 0; transpose.
	want := "8 5 2 7 4 1 6 3 0"
	var got []string
	for _, v := range m.Pix {
		got = append(got, string(rune('0'+int(v))))
	}
	if strings.Join(got, " ") != want {
		t.Fatalf("augment gave %v, want %s", got, want)
	}
}
