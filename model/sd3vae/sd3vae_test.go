package sd3vae

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"tsdsr/nn"
	"tsdsr/nn/nntest"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// sd3Params is the number of parameters of SD3-medium's VAE, the sum over
// testdata/sd3_medium_vae_keys.txt.
const sd3Params = 83819683

// TestSD3Keys checks the registry of SD3() against the real checkpoint's
// names and shapes, listed in testdata from diffusers' AutoencoderKL
// structure independently of this package's code.
func TestSD3Keys(t *testing.T) {
	v, err := New(SD3(), nn.NewParams(nil))
	if err != nil {
		t.Fatal(err)
	}
	tensors, params := nntest.CheckKeyTable(t, v.Params, "testdata/sd3_medium_vae_keys.txt")
	if tensors != 244 || params != sd3Params {
		t.Fatalf("table: %d tensors, %d parameters; want 244, %d", tensors, params, sd3Params)
	}
	if n := v.Params.Count(); n != sd3Params {
		t.Errorf("%d parameters, want %d", n, sd3Params)
	}
}

func TestConfig(t *testing.T) {
	c, err := LoadConfig("testdata/sd3_medium_vae_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DownBlockTypes) != 4 || len(c.UpBlockTypes) != 4 {
		t.Errorf("block types %v %v", c.DownBlockTypes, c.UpBlockTypes)
	}
	c.DownBlockTypes, c.UpBlockTypes = nil, nil
	if !reflect.DeepEqual(c, SD3()) {
		t.Errorf("SD3 config.json gives\n%+v\nwant\n%+v", c, SD3())
	}
	if Tiny().Validate() != nil || SD3().Factor() != 8 || Tiny().Factor() != 8 {
		t.Error("Tiny invalid or wrong factors")
	}
	bad := []func(*Config){
		func(c *Config) { c.NormNumGroups = 5 },
		func(c *Config) { c.ActFn = "gelu" },
		func(c *Config) { c.BlockOutChannels = nil },
		func(c *Config) { c.LatentChannels = 0 },
		func(c *Config) { c.UpBlockTypes = []string{"UpDecoderBlock2D"} },
	}
	for i, f := range bad {
		c := Tiny()
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
	// Keys a config leaves out take diffusers' defaults (quant convs on).
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	os.WriteFile(path, []byte(`{"latent_channels": 16, "block_out_channels": [32, 32]}`), 0o644)
	if c, err := LoadConfig(path); err != nil || !c.UseQuantConv || !c.UsePostQuantConv || !c.MidBlockAddAttention || c.ScalingFactor != 0.18215 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	os.WriteFile(path, []byte(`{"_class_name": "SD3Transformer2DModel"}`), 0o644)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "SD3Transformer2DModel") {
		t.Errorf("transformer config: %v", err)
	}
}

// randomVAE builds a VAE with random weights, GroupNorm affines included
// (they start at 1 and 0, which would hide mistakes).
func randomVAE(t testing.TB, cfg Config, seed uint64) *VAE {
	t.Helper()
	v, err := New(cfg, nn.NewParams(rng.New(seed)))
	if err != nil {
		t.Fatal(err)
	}
	r := rng.New(seed + 1)
	for _, p := range v.Params.List() {
		if strings.Contains(p.Name, "norm") {
			if strings.HasSuffix(p.Name, ".weight") {
				r.FillNormal(p.T.Data, 1, 0.3)
			} else {
				r.FillNormal(p.T.Data, 0, 0.2)
			}
		}
	}
	v.Params.Freeze()
	return v
}

func randImage(seed uint64, shape ...int) *tensor.Tensor {
	x := tensor.New(shape...)
	rng.New(seed).FillUniform(x.Data, -1, 1)
	return x
}

func randLatent(seed uint64, shape ...int) *tensor.Tensor {
	x := tensor.New(shape...)
	rng.New(seed).FillNormal(x.Data, 0, 1)
	return x
}

func mustEncode(t testing.TB, v *VAE, x *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	return mustRun(t, v.Encode, x)
}

func mustDecode(t testing.TB, v *VAE, z *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	return mustRun(t, v.Decode, z)
}

// mustRun is f(x) (Encode or Decode) in the background context; an error
// fails the test.
func mustRun(t testing.TB, f func(context.Context, *tensor.Tensor) (*tensor.Tensor, error), x *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	y, err := f(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// writeDir writes a diffusers VAE folder: config.json with the config's
// keys (plus keys this package ignores) and the tensors.
func writeDir(t *testing.T, cfg Config, tensors map[string]*tensor.Tensor, dtype safetensors.DType) string {
	t.Helper()
	dir := t.TempDir()
	var m map[string]any
	b, _ := json.Marshal(cfg)
	json.Unmarshal(b, &m)
	m["_class_name"], m["_diffusers_version"], m["force_upcast"], m["latents_mean"] = "AutoencoderKL", "0.29.0", true, nil
	b, _ = json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Save(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), tensors, nil, dtype); err != nil {
		t.Fatal(err)
	}
	return dir
}

func bytesOf(x *tensor.Tensor) []byte {
	var b bytes.Buffer
	for _, v := range x.Data {
		b.WriteString(strconv.FormatUint(uint64(math.Float32bits(v)), 16))
	}
	return b.Bytes()
}

// TestLoadDirRoundTrip saves a tiny random VAE as a diffusers folder,
// loads it and checks that it computes exactly what the original does,
// deterministically.
func TestLoadDirRoundTrip(t *testing.T) {
	cfg := Tiny()
	src := randomVAE(t, cfg, 1)
	dir := writeDir(t, cfg, nn.Map(src.Params.List()), safetensors.F32)
	v, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	x := randImage(2, 1, 3, 32, 32)
	z := mustEncode(t, v, x)
	if !tensor.SameShape(z.Shape, []int{1, 16, 4, 4}) {
		t.Fatalf("latents %v", z.Shape)
	}
	y := mustDecode(t, v, z)
	if !tensor.SameShape(y.Shape, []int{1, 3, 32, 32}) {
		t.Fatalf("images %v", y.Shape)
	}
	if !bytes.Equal(bytesOf(z), bytesOf(mustEncode(t, v, x))) || !bytes.Equal(bytesOf(y), bytesOf(mustDecode(t, v, z))) {
		t.Error("two runs differ")
	}
	if !bytes.Equal(bytesOf(z), bytesOf(mustEncode(t, src, x))) || !bytes.Equal(bytesOf(y), bytesOf(mustDecode(t, src, z))) {
		t.Error("loaded model computes differently from the saved one")
	}
	for _, q := range v.Params.List() {
		if q.T.RequiresGrad() {
			t.Fatalf("%s not frozen", q.Name)
		}
	}

	// F16 weights, and attention projections stored as 1x1 kernels.
	m := nn.Map(src.Params.List())
	for _, name := range []string{"encoder.mid_block.attentions.0.to_q.weight", "decoder.mid_block.attentions.0.to_out.0.weight"} {
		w := m[name]
		m[name] = tensor.FromData(w.Data, w.Shape[0], w.Shape[1], 1, 1)
	}
	v16, err := LoadDir(writeDir(t, cfg, m, safetensors.F16))
	if err != nil {
		t.Fatal(err)
	}
	w16 := v16.Params.Get("decoder.mid_block.attentions.0.to_out.0.weight")
	w32 := src.Params.Get("decoder.mid_block.attentions.0.to_out.0.weight")
	if !tensor.SameShape(w16.Shape, w32.Shape) || math.Abs(float64(w16.Data[5]-w32.Data[5])) > 1e-3 {
		t.Errorf("4-D F16 projection loaded as %v, %v (want %v, %v)", w16.Shape, w16.Data[5], w32.Shape, w32.Data[5])
	}
}

func TestLoadErrors(t *testing.T) {
	cfg := Tiny()
	src := randomVAE(t, cfg, 1)
	cases := []struct {
		name, tensor string
		edit         func(m map[string]*tensor.Tensor)
	}{
		{"missing", "decoder.up_blocks.3.resnets.2.conv2.bias", func(m map[string]*tensor.Tensor) {
			delete(m, "decoder.up_blocks.3.resnets.2.conv2.bias")
		}},
		{"unexpected", "encoder.extra.weight", func(m map[string]*tensor.Tensor) { m["encoder.extra.weight"] = tensor.New(2) }},
		{"shape mismatch", "encoder.conv_in.weight", func(m map[string]*tensor.Tensor) { m["encoder.conv_in.weight"] = tensor.New(8, 3, 1, 1) }},
	}
	for _, c := range cases {
		m := nn.Map(src.Params.List())
		c.edit(m)
		_, err := LoadDir(writeDir(t, cfg, m, safetensors.F32))
		if err == nil || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), c.tensor) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.tensor)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
}

// TestGroupStatsBands: statistics accumulated over uneven row bands and
// applied band by band equal GroupNorm over the whole image.
func TestGroupStatsBands(t *testing.T) {
	r := rng.New(3)
	x := tensor.New(2, 12, 13, 7)
	r.FillNormal(x.Data, 0.7, 2)
	w, b := tensor.New(12), tensor.New(12)
	r.FillNormal(w.Data, 1, 0.5)
	r.FillNormal(b.Data, 0, 0.5)
	bands := [][2]int{{0, 4}, {4, 5}, {5, 13}}
	for _, silu := range []bool{false, true} {
		s := NewGroupStats(2, 12, 3)
		for _, bd := range bands {
			// A band as its own tensor, as a tiled caller holds it.
			tile := tensor.Slice(x, 2, bd[0], bd[1])
			s.Accumulate(tile, 0, bd[1]-bd[0])
		}
		got := tensor.New(x.Shape...)
		for _, bd := range bands {
			s.Apply(got, x, bd[0], bd[1], w, b, 1e-6, silu)
		}
		want := tensor.GroupNorm(x, 3, w, b, 1e-6)
		if silu {
			want = tensor.SiLU(want)
		}
		if d := maxDiff(got.Data, want.Data); d > 1e-5 {
			t.Errorf("silu %v: max difference %g from tensor.GroupNorm", silu, d)
		}
	}
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// ---- float64 reference, walking the diffusers structure by key names ----

// img is one sample [C, H, W] in float64.
type img struct {
	c, h, w int
	d       []float64
}

func newImg(c, h, w int) img { return img{c, h, w, make([]float64, c*h*w)} }

func (x img) at(c, i, j int) float64 { return x.d[(c*x.h+i)*x.w+j] }

// sample n of t as an img.
func toImg(t *tensor.Tensor, n int) img {
	c, h, w := t.Shape[1], t.Shape[2], t.Shape[3]
	x := newImg(c, h, w)
	for i := range x.d {
		x.d[i] = float64(t.Data[n*c*h*w+i])
	}
	return x
}

type ref struct {
	t   *testing.T
	p   map[string]*tensor.Tensor
	cfg Config
}

func (r ref) get(name string) []float32 {
	v, ok := r.p[name]
	if !ok {
		r.t.Fatalf("reference: no parameter %s", name)
	}
	return v.Data
}

// conv is a cross-correlation with per-side zero padding.
func (r ref) conv(name string, x img, stride, pt, pb, pl, pr int) img {
	w, b := r.p[name+".weight"], r.get(name+".bias")
	co, k := w.Shape[0], w.Shape[2]
	ho, wo := (x.h+pt+pb-k)/stride+1, (x.w+pl+pr-k)/stride+1
	y := newImg(co, ho, wo)
	for o := range co {
		for i := range ho {
			for j := range wo {
				s := float64(b[o])
				for ci := range x.c {
					for di := range k {
						for dj := range k {
							ii, jj := i*stride-pt+di, j*stride-pl+dj
							if ii >= 0 && ii < x.h && jj >= 0 && jj < x.w {
								s += float64(w.Data[((o*x.c+ci)*k+di)*k+dj]) * x.at(ci, ii, jj)
							}
						}
					}
				}
				y.d[(o*ho+i)*wo+j] = s
			}
		}
	}
	return y
}

func (r ref) conv3(name string, x img) img { return r.conv(name, x, 1, 1, 1, 1, 1) }

func (r ref) norm(name string, x img) img {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	g := r.cfg.NormNumGroups
	cpg, hw := x.c/g, x.h*x.w
	y := newImg(x.c, x.h, x.w)
	for gi := range g {
		seg := x.d[gi*cpg*hw : (gi+1)*cpg*hw]
		var m, v float64
		for _, e := range seg {
			m += e
		}
		m /= float64(len(seg))
		for _, e := range seg {
			v += (e - m) * (e - m)
		}
		rs := 1 / math.Sqrt(v/float64(len(seg))+1e-6)
		for i, e := range seg {
			c := gi*cpg + i/hw
			y.d[gi*cpg*hw+i] = (e-m)*rs*float64(w[c]) + float64(b[c])
		}
	}
	return y
}

func silu(x img) img {
	y := newImg(x.c, x.h, x.w)
	for i, v := range x.d {
		y.d[i] = v / (1 + math.Exp(-v))
	}
	return y
}

func add(a, b img) img {
	y := newImg(a.c, a.h, a.w)
	for i := range y.d {
		y.d[i] = a.d[i] + b.d[i]
	}
	return y
}

func (r ref) resnet(name string, x img) img {
	h := r.conv3(name+".conv1", silu(r.norm(name+".norm1", x)))
	h = r.conv3(name+".conv2", silu(r.norm(name+".norm2", h)))
	if _, ok := r.p[name+".conv_shortcut.weight"]; ok {
		x = r.conv(name+".conv_shortcut", x, 1, 0, 0, 0, 0)
	}
	return add(x, h)
}

// attn is softmax(q k^T / sqrt(C)) v over the pixels, one head.
func (r ref) attn(name string, x img) img {
	c, l := x.c, x.h*x.w
	hn := r.norm(name+".group_norm", x)
	proj := func(p string, in [][]float64) [][]float64 {
		w, b := r.get(name+"."+p+".weight"), r.get(name+"."+p+".bias")
		out := make([][]float64, l)
		for t := range l {
			out[t] = make([]float64, c)
			for o := range c {
				s := float64(b[o])
				for i := range c {
					s += float64(w[o*c+i]) * in[t][i]
				}
				out[t][o] = s
			}
		}
		return out
	}
	tok := make([][]float64, l)
	for t := range l {
		tok[t] = make([]float64, c)
		for i := range c {
			tok[t][i] = hn.d[i*l+t]
		}
	}
	q, k, v := proj("to_q", tok), proj("to_k", tok), proj("to_v", tok)
	o := make([][]float64, l)
	for t := range l {
		s := make([]float64, l)
		m := math.Inf(-1)
		for u := range l {
			for i := range c {
				s[u] += q[t][i] * k[u][i]
			}
			s[u] /= math.Sqrt(float64(c))
			m = max(m, s[u])
		}
		var z float64
		for u := range s {
			s[u] = math.Exp(s[u] - m)
			z += s[u]
		}
		o[t] = make([]float64, c)
		for u := range l {
			for i := range c {
				o[t][i] += s[u] / z * v[u][i]
			}
		}
	}
	o = proj("to_out.0", o)
	y := newImg(c, x.h, x.w)
	for i := range c {
		for t := range l {
			y.d[i*l+t] = x.d[i*l+t] + o[t][i]
		}
	}
	return y
}

func up(x img) img {
	y := newImg(x.c, 2*x.h, 2*x.w)
	for c := range x.c {
		for i := range y.h {
			for j := range y.w {
				y.d[(c*y.h+i)*y.w+j] = x.at(c, i/2, j/2)
			}
		}
	}
	return y
}

func (r ref) mid(name string, x img) img {
	x = r.resnet(name+".resnets.0", x)
	x = r.attn(name+".attentions.0", x)
	return r.resnet(name+".resnets.1", x)
}

func (r ref) encode(x img) img {
	boc := r.cfg.BlockOutChannels
	x = r.conv3("encoder.conv_in", x)
	for i := range boc {
		for j := range r.cfg.LayersPerBlock {
			x = r.resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), x)
		}
		if i < len(boc)-1 {
			x = r.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), x, 2, 0, 1, 0, 1)
		}
	}
	x = r.mid("encoder.mid_block", x)
	x = r.conv3("encoder.conv_out", silu(r.norm("encoder.conv_norm_out", x)))
	l := r.cfg.LatentChannels
	return img{l, x.h, x.w, x.d[:l*x.h*x.w]}
}

func (r ref) decode(z img) img {
	n := len(r.cfg.BlockOutChannels)
	x := r.mid("decoder.mid_block", r.conv3("decoder.conv_in", z))
	for i := range n {
		for j := range r.cfg.LayersPerBlock + 1 {
			x = r.resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), x)
		}
		if i < n-1 {
			x = r.conv3(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), up(x))
		}
	}
	return r.conv3("decoder.conv_out", silu(r.norm("decoder.conv_norm_out", x)))
}

// closeTo fails unless sample n of got matches want to tol relative to
// want's largest magnitude.
func closeTo(t *testing.T, what string, got *tensor.Tensor, n int, want img, tol float64) {
	t.Helper()
	g := toImg(got, n)
	if g.c != want.c || g.h != want.h || g.w != want.w {
		t.Fatalf("%s: shape %v, want [%d %d %d]", what, got.Shape, want.c, want.h, want.w)
	}
	var scale, d float64
	for i, v := range want.d {
		scale = max(scale, math.Abs(v))
		d = max(d, math.Abs(g.d[i]-v))
	}
	if d > tol*max(scale, 1) {
		t.Errorf("%s: max difference %g from the float64 reference (scale %g)", what, d, scale)
	}
}

// forceBands makes convolutions work in bands of at most n rows.
func forceBands(t *testing.T, n int) {
	old := maxBandRows
	maxBandRows = n
	t.Cleanup(func() { maxBandRows = old })
}

// TestBlocksReference checks each block against the float64 reference on
// random weights, in bands of 2 rows so the in-place band order matters.
func TestBlocksReference(t *testing.T) {
	forceBands(t, 2)
	cfg := Tiny()
	cfg.NormNumGroups = 2
	p := nn.NewParams(rng.New(7))
	r1 := newResnet(p.Sub("r1"), 2, 4, 6) // with conv_shortcut
	r2 := newResnet(p.Sub("r2"), 2, 6, 6)
	at := newAttention(p.Sub("at"), 2, 6)
	down := nn.NewConv2d(p, "down", nn.Conv2dConfig{In: 6, Out: 6, Kernel: 3, Stride: 2})
	upc := nn.NewConv2d(p, "up", nn.Conv2dConfig{In: 6, Out: 6, Kernel: 3, Padding: 1})
	rnd := rng.New(8)
	for _, q := range p.List() {
		if strings.Contains(q.Name, "norm") {
			rnd.FillNormal(q.T.Data, 0.5, 0.5)
		}
	}
	rf := ref{t, nn.Map(p.List()), cfg}
	ctx := context.Background()
	x := randLatent(9, 2, 4, 7, 5)
	h, err := r1.forward(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	y, err := r2.forward(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	ya := at.forward(y.Clone())
	yd, err := conv(ctx, convOp{l: down, stride: 2, pb: 1, pr: 1}, feed{x: y})
	if err != nil {
		t.Fatal(err)
	}
	yu, err := conv(ctx, same(upc), feed{x: y, up: true})
	if err != nil {
		t.Fatal(err)
	}
	for n := range 2 {
		h0 := rf.resnet("r1", toImg(x, n))
		closeTo(t, "resnet with shortcut", h, n, h0, 1e-5)
		y0 := toImg(y, n)
		closeTo(t, "resnet", y, n, rf.resnet("r2", toImg(h, n)), 1e-5)
		closeTo(t, "attention", ya, n, rf.attn("at", y0), 1e-5)
		closeTo(t, "downsampler", yd, n, rf.conv("down", y0, 2, 0, 1, 0, 1), 1e-5)
		closeTo(t, "upsampler", yu, n, rf.conv3("up", up(y0)), 1e-5)
	}
	if !tensor.SameShape(yd.Shape, []int{2, 6, 3, 2}) {
		t.Errorf("downsampled %v, want PyTorch's pad-then-stride [2 6 3 2]", yd.Shape)
	}
}

// TestNetworkReference checks the whole tiny VAE, batched, on a non-square
// image, against the float64 reference, in default bands and in bands of
// 3 rows.
func TestNetworkReference(t *testing.T) {
	cfg := Tiny()
	v := randomVAE(t, cfg, 11)
	rf := ref{t, nn.Map(v.Params.List()), cfg}
	x := randImage(12, 2, 3, 16, 24)
	zin := randLatent(13, 2, 16, 2, 3)
	z, y := mustEncode(t, v, x), mustDecode(t, v, zin)
	for n := range 2 {
		closeTo(t, "encode", z, n, rf.encode(toImg(x, n)), 1e-4)
		closeTo(t, "decode", y, n, rf.decode(toImg(zin, n)), 1e-4)
	}
	forceBands(t, 3)
	if d := maxDiff(mustEncode(t, v, x).Data, z.Data); d > 1e-5 {
		t.Errorf("encode in 3-row bands differs by %g", d)
	}
	if d := maxDiff(mustDecode(t, v, zin).Data, y.Data); d > 1e-5 {
		t.Errorf("decode in 3-row bands differs by %g", d)
	}
}

// TestQuantConvs: VAEs with quant_conv and post_quant_conv (SD1/SDXL
// style) apply them, 1x1, around the latents.
func TestQuantConvs(t *testing.T) {
	cfg := Tiny()
	cfg.BlockOutChannels, cfg.LatentChannels, cfg.UseQuantConv, cfg.UsePostQuantConv = []int{8, 8}, 4, true, true
	v := randomVAE(t, cfg, 21)
	rf := ref{t, nn.Map(v.Params.List()), cfg}
	x, zin := randImage(22, 1, 3, 8, 6), randLatent(23, 1, 4, 3, 2)
	cfgAll := cfg
	cfgAll.LatentChannels = 8 // the reference's encode then keeps both halves of the moments
	mom := ref{t, rf.p, cfgAll}.encode(toImg(x, 0))
	closeTo(t, "encode", mustEncode(t, v, x), 0, sliceC(rf.conv("quant_conv", mom, 1, 0, 0, 0, 0), 4), 1e-4)
	closeTo(t, "decode", mustDecode(t, v, zin), 0, rf.decode(rf.conv("post_quant_conv", toImg(zin, 0), 1, 0, 0, 0, 0)), 1e-4)
}

func sliceC(x img, c int) img { return img{c, x.h, x.w, x.d[:c*x.h*x.w]} }

// TestLoRA: adapters attached by their diffusers module names, unmerged,
// compute what the merged weights compute.
func TestLoRA(t *testing.T) {
	v := randomVAE(t, Tiny(), 31)
	names, err := nn.AttachLoRA(v.Params, nn.LoRAConfig{Rank: 2, Seed: 1, Targets: []string{"conv1", "to_q", "conv_out", "downsamplers.0.conv"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"encoder.down_blocks.0.resnets.0.conv1", "encoder.down_blocks.2.downsamplers.0.conv",
		"encoder.mid_block.attentions.0.to_q", "decoder.mid_block.resnets.1.conv1", "decoder.conv_out"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not adapted (adapted: %v)", want, names)
		}
	}
	r := rng.New(32)
	for _, q := range v.Params.List() {
		if nn.IsLoRA(q.Name) {
			r.FillNormal(q.T.Data, 0, 0.1)
		}
	}
	x, zin := randImage(33, 1, 3, 16, 16), randLatent(34, 1, 16, 2, 2)
	z, y := mustEncode(t, v, x), mustDecode(t, v, zin)
	base := randomVAE(t, Tiny(), 31)
	if maxDiff(z.Data, mustEncode(t, base, x).Data) < 1e-3 {
		t.Fatal("adapters change nothing")
	}
	nn.MergeLoRA(v.Params)
	if d := maxDiff(z.Data, mustEncode(t, v, x).Data); d > 1e-4 {
		t.Errorf("encode: unmerged and merged differ by %g", d)
	}
	if d := maxDiff(y.Data, mustDecode(t, v, zin).Data); d > 1e-4 {
		t.Errorf("decode: unmerged and merged differ by %g", d)
	}
}

func TestBadInputs(t *testing.T) {
	v := randomVAE(t, Tiny(), 41)
	ctx := context.Background()
	for _, s := range [][]int{{1, 3, 30, 32}, {1, 3, 32, 12}, {1, 1, 32, 32}, {3, 32, 32}, {1, 3, 0, 8}} {
		if _, err := v.Encode(ctx, tensor.New(s...)); err == nil || !strings.Contains(err.Error(), "multiples of 8") {
			t.Errorf("encode %v: %v", s, err)
		}
	}
	if _, err := v.Encode(ctx, nil); err == nil {
		t.Error("encode nil accepted")
	}
	for _, s := range [][]int{{1, 4, 4, 4}, {16, 4, 4}, {1, 16, 0, 4}} {
		if _, err := v.Decode(ctx, tensor.New(s...)); err == nil || !strings.Contains(err.Error(), "want [N, 16, h, w]") {
			t.Errorf("decode %v: %v", s, err)
		}
	}
}

// countCtx is cancelled from its n-th Err call on.
type countCtx struct {
	context.Context
	left atomic.Int32
}

func (c *countCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestCancel(t *testing.T) {
	forceBands(t, 2)
	v := randomVAE(t, Tiny(), 51)
	x, z := randImage(52, 1, 3, 16, 16), randLatent(53, 1, 16, 2, 2)
	for _, n := range []int32{0, 1, 7, 40} {
		c := &countCtx{Context: context.Background()}
		c.left.Store(n)
		if _, err := v.Encode(c, x); !errors.Is(err, context.Canceled) {
			t.Errorf("encode cancelled after %d checks: %v", n, err)
		}
		c.left.Store(n)
		if _, err := v.Decode(c, z); !errors.Is(err, context.Canceled) {
			t.Errorf("decode cancelled after %d checks: %v", n, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Encode(ctx, x); err != ctx.Err() {
		t.Errorf("cancelled encode: %v", err)
	}
}

func TestMemoryEstimate(t *testing.T) {
	enc, dec := SD3().MemoryEstimate(2048, 2048)
	px := int64(2048 * 2048)
	scratch := int64(16 * bandElems)
	if want := 4*(128+128)*px + 12*px + scratch; enc != want {
		t.Errorf("encode 2048^2: %d bytes, want %d", enc, want)
	}
	if want := 4*(256+128)*px + 4*16*px/64 + scratch; dec != want {
		t.Errorf("decode 2048^2: %d bytes, want %d", dec, want)
	}
	t.Logf("SD3 at 2048x2048: encode %.2f GB, decode %.2f GB", float64(enc)/1e9, float64(dec)/1e9)
}
