package taesd

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"

	"path/filepath"
	"testing"
	"tsdsr/safetensors"

	"tsdsr/imageio"
	"tsdsr/nn"
	"tsdsr/tensor"
)

const realsrHR = "../../../shared/data/realsr/HR"

func loadEmbedded(t testing.TB) (*Encoder, *Decoder) {
	t.Helper()
	e, d, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	return e, d
}

// yPSNR is the BT.601 luma PSNR of two RGB images in [0, 1] quantised to
// 8 bit, as the evaluation suite measures it.
func yPSNR(a, b []float32, n int) float64 {
	var se float64
	for i := 0; i < n; i++ {
		y := func(p []float32) float64 {
			q := func(v float32) float64 { return float64(imageio.Quantize8(v)) / 255 }
			return 16 + 65.481*q(p[i]) + 128.553*q(p[n+i]) + 24.966*q(p[2*n+i])
		}
		d := y(a) - y(b)
		se += d * d
	}
	return 10 * math.Log10(255*255/(se/float64(n)))
}

func readRGB(t testing.TB, path string) *tensor.Tensor {
	t.Helper()
	m, err := imageio.ReadFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Channels != 3 {
		t.Fatalf("%s: %d channels", path, m.Channels)
	}
	return tensor.FromData(m.Pix, 1, 3, m.Height, m.Width)
}

// TestRoundTripRealSR checks the port against real photos: a wrong layout
// gives noise, a subtly wrong one 20-30 dB; the real TAESD3 gives ~40 dB.
func TestRoundTripRealSR(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(realsrHR, "*.png"))
	if len(files) == 0 {
		t.Skip("no RealSR data in ../shared")
	}
	n := 6
	if testing.Short() {
		n = 2
	}
	step := len(files) / n
	e, d := loadEmbedded(t)
	defer tensor.NoGrad()()
	var sum float64
	var stats [16][2]float64
	var count float64
	for i := 0; i < n; i++ {
		x := readRGB(t, files[i*step])
		z := e.Forward(x)
		y := d.Forward(z)
		p := yPSNR(x.Data, y.Data, x.Shape[2]*x.Shape[3])
		t.Logf("%s: Y-PSNR %.2f dB", filepath.Base(files[i*step]), p)
		if p < 30 {
			t.Errorf("%s: round trip %.2f dB < 30 dB", files[i*step], p)
		}
		sum += p
		hw := z.Shape[2] * z.Shape[3]
		for c := 0; c < 16; c++ {
			for _, v := range z.Data[c*hw : (c+1)*hw] {
				stats[c][0] += float64(v)
				stats[c][1] += float64(v) * float64(v)
			}
		}
		count += float64(hw)
	}
	mean := sum / float64(n)
	t.Logf("mean round-trip Y-PSNR over %d RealSR HR images: %.2f dB", n, mean)
	if mean < 35 {
		t.Errorf("mean round trip %.2f dB < 35 dB", mean)
	}
	var all, all2 float64
	line := ""
	for c := 0; c < 16; c++ {
		m := stats[c][0] / count
		s := math.Sqrt(stats[c][1]/count - m*m)
		line += fmt.Sprintf(" %d:%.2f/%.2f", c, m, s)
		all += stats[c][0]
		all2 += stats[c][1]
	}
	m := all / (16 * count)
	std := math.Sqrt(all2/(16*count) - m*m)
	t.Logf("latent mean/std per channel:%s", line)
	t.Logf("latent overall mean %.3f std %.3f (SD3: std about 1/1.5305 = 0.65)", m, std)
	if std < 0.3 || std > 1.5 {
		t.Errorf("latent std %.3f outside [0.3, 1.5]", std)
	}
}

func TestLoadErrorsNameTheTensor(t *testing.T) {
	f, err := safetensors.Parse(encoderWeights)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]*tensor.Tensor{}
	for _, n := range f.Names() {
		if all[n], err = f.Tensor(n); err != nil {
			t.Fatal(err)
		}
	}
	rewrite := func(edit func(map[string]*tensor.Tensor)) *safetensors.File {
		m := map[string]*tensor.Tensor{}
		for k, v := range all {
			m[k] = v
		}
		edit(m)
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, m, nil, safetensors.F32); err != nil {
			t.Fatal(err)
		}
		g, err := safetensors.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	cases := map[string]func(map[string]*tensor.Tensor){
		"7.conv.2.weight": func(m map[string]*tensor.Tensor) { delete(m, "7.conv.2.weight") },
		"14.bias":         func(m map[string]*tensor.Tensor) { m["14.bias"] = tensor.New(15) },
		"99.weight":       func(m map[string]*tensor.Tensor) { m["99.weight"] = tensor.New(1) },
	}
	for name, edit := range cases {
		_, err := LoadEncoder(rewrite(edit))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name the tensor", name, err)
		}
	}
	if _, err := LoadDecoder(f); err == nil {
		t.Error("encoder weights loaded as a decoder")
	}
}

// photo768x512 is a crop of a training photograph (a natural image with
// texture, so that seams would show).
func photo768x512(t *testing.T) *tensor.Tensor {
	files, _ := filepath.Glob("../../../shared/data/train/*.jpg")
	if len(files) == 0 {
		t.Skip("no training photos in ../shared")
	}
	m, err := imageio.ReadFile(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	h, w := 512, 768
	if testing.Short() {
		h, w = 256, 384
	}
	if m.Width < w || m.Height < h || m.Channels != 3 {
		t.Skipf("%s too small", files[0])
	}
	full := tensor.FromData(m.Pix, 1, 3, m.Height, m.Width)
	return crop(full, 0, h, 0, w)
}

func maxAbsDiff(a, b *tensor.Tensor) float64 {
	var d float64
	for i, v := range a.Data {
		d = math.Max(d, math.Abs(float64(v-b.Data[i])))
	}
	return d
}

// TestTiledMatchesUntiled checks that the default halo makes tiling
// invisible, and that the halo is what does it.
func TestTiledMatchesUntiled(t *testing.T) {
	e, d := loadEmbedded(t)
	x := photo768x512(t)
	ctx := context.Background()
	defer tensor.NoGrad()()
	tile := 32
	if testing.Short() {
		tile = 16 // the smaller image still gets 6 tiles
	}
	z := e.Forward(x)
	zt, err := e.EncodeTiled(ctx, x, Tiling{Tile: tile, Halo: DefaultEncodeTiling.Halo})
	if err != nil {
		t.Fatal(err)
	}
	enc := maxAbsDiff(z, zt)
	y := d.Forward(z)
	tiles := 0
	yt, err := d.DecodeTiled(ctx, z, Tiling{Tile: tile, Halo: DefaultDecodeTiling.Halo, Progress: func(done, total int) { tiles = total }})
	if err != nil {
		t.Fatal(err)
	}
	dec := maxAbsDiff(y, yt)
	y0, err := d.DecodeTiled(ctx, z, Tiling{Tile: tile, Halo: 0})
	if err != nil {
		t.Fatal(err)
	}
	seam := maxAbsDiff(y, y0)
	t.Logf("%d tiles; max |tiled - untiled|: encode %.5f (latent), decode %.5f = %.2f/255; without halo %.2f/255", tiles, enc, dec, dec*255, seam*255)
	if tiles < 4 {
		t.Fatalf("only %d tiles: the test does not tile", tiles)
	}
	if dec > 2.0/255 {
		t.Errorf("tiled decode differs by %.2f/255 > 2/255", dec*255)
	}
	// The encoder's error matters through the decoder: compare pixels.
	encPix := maxAbsDiff(y, d.Forward(zt))
	t.Logf("decoded tiled-encoded latent vs untiled: %.2f/255", encPix*255)
	if encPix > 2.0/255 {
		t.Errorf("tiled encode changes decoded pixels by %.2f/255 > 2/255 (latent diff %.4f)", encPix*255, enc)
	}
	if seam < 4*dec || seam < 4.0/255 {
		t.Errorf("without halo the difference is only %.2f/255: the halo does not matter?", seam*255)
	}
}

// TestTrainingThroughAutoencoder: a pixel loss through the frozen decoder
// reaches the latent, and a LoRA on the encoder's convolutions (as TSD-SR
// trains on SD3's VAE encoder) receives gradients while the base stays
// frozen.
func TestTrainingThroughAutoencoder(t *testing.T) {
	e, d := loadEmbedded(t)
	names, err := nn.AttachLoRA(e.Params, nn.LoRAConfig{Rank: 4, Targets: []string{"conv.0", "conv.2", "conv.4"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 10*3 { // 10 blocks of 3 convs
		t.Fatalf("LoRA attached to %d convs, want 30", len(names))
	}
	x := tensor.New(1, 3, 32, 32)
	for i := range x.Data {
		x.Data[i] = float32(i%97) / 97
	}
	z := e.Forward(x)
	target := tensor.New(1, 3, 32, 32)
	tensor.MSE(d.Forward(z), target).Backward()
	trained := 0
	for _, p := range e.Params.List() {
		switch {
		case nn.IsLoRA(p.Name) && strings.Contains(p.Name, "lora_B"):
			// B starts at zero, so only B gets a non-zero gradient at first.
			if p.T.Grad == nil {
				t.Errorf("%s: no gradient", p.Name)
			} else {
				trained++
			}
		case !nn.IsLoRA(p.Name) && p.T.Grad != nil:
			t.Errorf("frozen %s got a gradient", p.Name)
		}
	}
	if trained != 30 {
		t.Errorf("%d LoRA B matrices trained, want 30", trained)
	}
}
