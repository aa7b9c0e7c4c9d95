// Package sd3vae is Stable Diffusion 3's VAE, diffusers' AutoencoderKL as
// configured for SD3 (84 M parameters, 16 latent channels, 8x
// downsampling), for inference. The official TSD-SR model encodes and
// decodes with it (TAESD3, in package taesd, is the fast stand-in), so a
// user's diffusers SD3 folder must load as is: parameters carry the
// diffusers state-dict names, and LoadDir reads vae/config.json and
// vae/diffusion_pytorch_model.safetensors strictly.
//
// The layout, from diffusers (models/autoencoders/vae.py, unet_2d_blocks.py,
// resnet.py), with GroupNorm(norm_num_groups, eps 1e-6) and SiLU throughout:
//
//	ResnetBlock2D:  x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), x through a 1x1 conv_shortcut when channels change
//	mid_block:      resnets.0, attentions.0 (single head over all pixels, x + to_out.0(attn(group_norm(x)))), resnets.1
//	Encoder:        conv_in, down_blocks.i (resnets, then a stride-2 conv after pad (0,1,0,1) but in the last), mid_block, conv_norm_out, SiLU, conv_out (2x latent: mean and log-variance)
//	Decoder:        conv_in, mid_block, up_blocks.i over reversed widths (resnets, then nearest 2x and conv but in the last), conv_norm_out, SiLU, conv_out
//
// Large images are handled whole, layer by layer, in bands of rows (see
// groupnorm.go): GroupNorm statistics are those of the whole image, as
// TSD-SR's tiled VAE requires (per-tile statistics shift colours). Maps
// up to 1.25 GB are stored (about 1.5 KB per output pixel for a SD3
// decode, MemoryEstimate); larger ones are streamed in row bands and
// recomputed after an exact statistics pass for each GroupNorm (see
// stream.go), so memory stays bounded at any size, at the price of time.
package sd3vae

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"tsdsr/internal/parallel"
	"tsdsr/nn"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// Config holds the sizes of the autoencoder. JSON tags are the keys of
// diffusers' AutoencoderKL config.json; unknown keys are ignored.
//
// ScalingFactor and ShiftFactor are SD3's latent normalisation, which the
// VAE itself does not apply: Encode returns raw latents and Decode takes
// raw latents. SD3's pipeline uses (z - shift) * scale; TSD-SR multiplies
// by the scale and does not subtract the shift, so callers choose.
type Config struct {
	InChannels           int      `json:"in_channels"`
	OutChannels          int      `json:"out_channels"`
	LatentChannels       int      `json:"latent_channels"`
	BlockOutChannels     []int    `json:"block_out_channels"`
	LayersPerBlock       int      `json:"layers_per_block"`
	NormNumGroups        int      `json:"norm_num_groups"`
	ActFn                string   `json:"act_fn"`
	ScalingFactor        float64  `json:"scaling_factor"`
	ShiftFactor          float64  `json:"shift_factor"`
	UseQuantConv         bool     `json:"use_quant_conv"`
	UsePostQuantConv     bool     `json:"use_post_quant_conv"`
	MidBlockAddAttention bool     `json:"mid_block_add_attention"`
	SampleSize           int      `json:"sample_size"`
	DownBlockTypes       []string `json:"down_block_types,omitempty"`
	UpBlockTypes         []string `json:"up_block_types,omitempty"`
}

// SD3 is the configuration of Stable Diffusion 3 (medium)'s VAE.
func SD3() Config {
	return Config{InChannels: 3, OutChannels: 3, LatentChannels: 16, BlockOutChannels: []int{128, 256, 512, 512},
		LayersPerBlock: 2, NormNumGroups: 32, ActFn: "silu", ScalingFactor: 1.5305, ShiftFactor: 0.0609,
		MidBlockAddAttention: true, SampleSize: 1024}
}

// Tiny is SD3's layout (four levels, 8x downsampling, 16 latent channels)
// at widths of 8 and 16 channels, for tests of code built on the VAE.
func Tiny() Config {
	c := SD3()
	c.BlockOutChannels, c.NormNumGroups, c.SampleSize = []int{8, 16, 16, 16}, 4, 32
	return c
}

// defaults are diffusers' AutoencoderKL defaults, for keys a config.json
// leaves out.
func defaults() Config {
	return Config{InChannels: 3, OutChannels: 3, LatentChannels: 4, BlockOutChannels: []int{64}, LayersPerBlock: 1,
		NormNumGroups: 32, ActFn: "silu", ScalingFactor: 0.18215, UseQuantConv: true, UsePostQuantConv: true,
		MidBlockAddAttention: true, SampleSize: 32}
}

// Validate checks that the sizes fit together and that the config is one
// this package implements.
func (c Config) Validate() error {
	pos := map[string]int{"in_channels": c.InChannels, "out_channels": c.OutChannels, "latent_channels": c.LatentChannels,
		"layers_per_block": c.LayersPerBlock, "norm_num_groups": c.NormNumGroups}
	for k, v := range pos {
		if v <= 0 {
			return fmt.Errorf("sd3vae: config %s = %d, must be positive", k, v)
		}
	}
	if len(c.BlockOutChannels) == 0 {
		return errors.New("sd3vae: config block_out_channels is empty")
	}
	for _, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return fmt.Errorf("sd3vae: block_out_channels %v must be positive multiples of norm_num_groups %d", c.BlockOutChannels, c.NormNumGroups)
		}
	}
	if c.ActFn != "silu" {
		return fmt.Errorf("sd3vae: act_fn %q not supported (SD3 uses silu)", c.ActFn)
	}
	for _, bt := range []struct {
		key, want string
		got       []string
	}{{"down_block_types", "DownEncoderBlock2D", c.DownBlockTypes}, {"up_block_types", "UpDecoderBlock2D", c.UpBlockTypes}} {
		if bt.got == nil {
			continue
		}
		if len(bt.got) != len(c.BlockOutChannels) {
			return fmt.Errorf("sd3vae: %s has %d entries for %d block_out_channels", bt.key, len(bt.got), len(c.BlockOutChannels))
		}
		for _, t := range bt.got {
			if t != bt.want {
				return fmt.Errorf("sd3vae: %s %q not supported (want %s)", bt.key, t, bt.want)
			}
		}
	}
	return nil
}

// Factor is the spatial downsampling between images and latents, 8 for
// SD3: one halving per level but the last.
func (c Config) Factor() int { return 1 << (len(c.BlockOutChannels) - 1) }

// LoadConfig reads a diffusers config.json; keys it leaves out take
// diffusers' defaults.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sd3vae: %w", err)
	}
	var class struct {
		Name string `json:"_class_name"`
	}
	c := defaults()
	if err := json.Unmarshal(b, &class); err != nil {
		return Config{}, fmt.Errorf("sd3vae: %s: %w", path, err)
	}
	if class.Name != "" && class.Name != "AutoencoderKL" {
		return Config{}, fmt.Errorf("sd3vae: %s describes a %s, not an AutoencoderKL", path, class.Name)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("sd3vae: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w (%s)", err, path)
	}
	return c, nil
}

// resnet is diffusers' ResnetBlock2D without time embedding.
type resnet struct {
	norm1, norm2 *nn.GroupNorm
	conv1, conv2 *nn.Conv2d
	shortcut     *nn.Conv2d // nil when channels do not change
}

func newResnet(p *nn.Params, groups, in, out int) *resnet {
	gn := func(name string, ch int) *nn.GroupNorm { return nn.NewGroupNorm(p, name, groups, ch, 1e-6) }
	r := &resnet{norm1: gn("norm1", in)}
	r.conv1 = nn.NewConv2d(p, "conv1", nn.Conv2dConfig{In: in, Out: out, Kernel: 3, Padding: 1})
	r.norm2 = gn("norm2", out)
	r.conv2 = nn.NewConv2d(p, "conv2", nn.Conv2dConfig{In: out, Out: out, Kernel: 3, Padding: 1})
	if in != out {
		r.shortcut = nn.NewConv2d(p, "conv_shortcut", nn.Conv2dConfig{In: in, Out: out, Kernel: 1})
	}
	return r
}

// forward returns a new activation and leaves x unchanged. Only x and h
// are alive: conv2 writes its output over its own input h (see
// convRun.run), adding the shortcut band by band.
func (r *resnet) forward(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	a, b := stats(r.norm1, x)
	h := tensor.New(x.Shape[0], r.conv1.Weight.Shape[0], x.Shape[2], x.Shape[3])
	if err := same(r.conv1).bind(feed{x: x, a: a, b: b, silu: true}).run(ctx, h, nil); err != nil {
		return nil, err
	}
	a, b = stats(r.norm2, h)
	post := func(n, r0, r1 int, band []float32) { addRows(band, x, n, r0, r1) }
	if r.shortcut != nil {
		sc := same(r.shortcut).bind(feed{x: x})
		post = func(n, r0, r1 int, band []float32) {
			s := sc.band(n, r0, r1)
			addTo(band, s.Data)
		}
	}
	if err := same(r.conv2).bind(feed{x: h, a: a, b: b, silu: true}).run(ctx, h, post); err != nil {
		return nil, err
	}
	return h, nil
}

// attention is the mid block's single-head self-attention over all pixels
// (head dim = channels, scale 1/sqrt(C)), with its residual.
type attention struct {
	norm           *nn.GroupNorm
	q, k, v, toOut *nn.Linear
}

func newAttention(p *nn.Params, groups, ch int) *attention {
	return &attention{
		norm:  nn.NewGroupNorm(p, "group_norm", groups, ch, 1e-6),
		q:     nn.NewLinear(p, "to_q", ch, ch, true),
		k:     nn.NewLinear(p, "to_k", ch, ch, true),
		v:     nn.NewLinear(p, "to_v", ch, ch, true),
		toOut: nn.NewLinear(p, "to_out.0", ch, ch, true),
	}
}

// forward adds the attention output to x in place and returns x; x is the
// mid block's own intermediate.
func (at *attention) forward(x *tensor.Tensor) *tensor.Tensor {
	n, c, l := x.Shape[0], x.Shape[1], x.Shape[2]*x.Shape[3]
	a, b := stats(at.norm, x)
	t := tensor.New(n, l, c) // normalised tokens, [N, H*W, C]
	normTokens(t.Data, x.Data, a, b, n, c, l)
	q, k, v := linear(at.q, t), linear(at.k, t), linear(at.v, t)
	o := linear(at.toOut, tensor.Attention(q, k, v, 1)) // [N, H*W, C]
	// x[n, c, p] += o[n, p, c]
	transposeBack(x.Data, o.Data, n, c, l)
	return x
}

// linear is l applied to x with an unmerged LoRA adapter folded in and no
// graph recorded.
func linear(l *nn.Linear, x *tensor.Tensor) *tensor.Tensor {
	w := l.Weight.Detach()
	if l.LoRA != nil && !l.LoRA.Merged() {
		w = l.LoRA.Delta()
		addTo(w.Data, l.Weight.Data)
	}
	var b *tensor.Tensor
	if l.Bias != nil {
		b = l.Bias.Detach()
	}
	return tensor.Linear(x, w, b)
}

// normTokens sets dst[n, p, c] = a[n*C+c]*src[n, c, p] + b[n*C+c]: the
// GroupNorm and the transposition to tokens in one pass, in 32x32 tiles
// for the caches.
func normTokens(dst, src, a, b []float32, n, c, l int) {
	const tile = 32
	pt := (l + tile - 1) / tile
	parallel.For(n*pt, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			s, p0 := u/pt, u%pt*tile
			p1 := min(l, p0+tile)
			for c0 := 0; c0 < c; c0 += tile {
				for ch := c0; ch < min(c, c0+tile); ch++ {
					nc := s*c + ch
					for p := p0; p < p1; p++ {
						dst[(s*l+p)*c+ch] = a[nc]*src[nc*l+p] + b[nc]
					}
				}
			}
		}
	})
}

// transposeBack adds src[n, p, c] to dst[n, c, p].
func transposeBack(dst, src []float32, n, c, l int) {
	const tile = 32
	ct := (c + tile - 1) / tile
	parallel.For(n*ct, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			s, c0 := u/ct, u%ct*tile
			for p0 := 0; p0 < l; p0 += tile {
				for ch := c0; ch < min(c, c0+tile); ch++ {
					d := dst[(s*c+ch)*l:]
					for p := p0; p < min(l, p0+tile); p++ {
						d[p] += src[(s*l+p)*c+ch]
					}
				}
			}
		}
	})
}

// midBlock is diffusers' UNetMidBlock2D as the VAE configures it.
type midBlock struct {
	r0, r1 *resnet
	attn   *attention // nil without mid_block_add_attention
}

func newMidBlock(p *nn.Params, cfg Config, ch int) *midBlock {
	g := cfg.NormNumGroups
	m := &midBlock{r0: newResnet(p.Sub("resnets.0"), g, ch, ch)}
	if cfg.MidBlockAddAttention {
		m.attn = newAttention(p.Sub("attentions.0"), g, ch)
	}
	m.r1 = newResnet(p.Sub("resnets.1"), g, ch, ch)
	return m
}

func (m *midBlock) forward(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	x, err := m.r0.forward(ctx, x)
	if err != nil {
		return nil, err
	}
	if m.attn != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x = m.attn.forward(x)
	}
	return m.r1.forward(ctx, x)
}

// level is one down or up block: its resnets, then its resampling
// convolution (nil in the last block).
type level struct {
	resnets  []*resnet
	resample *nn.Conv2d
}

// coder is the encoder or the decoder.
type coder struct {
	convIn  *nn.Conv2d
	mid     *midBlock
	levels  []level
	normOut *nn.GroupNorm
	convOut *nn.Conv2d
	down    bool // encoder: levels come before the mid block and downsample
}

func newEncoder(p *nn.Params, cfg Config) *coder {
	boc, g := cfg.BlockOutChannels, cfg.NormNumGroups
	e := &coder{down: true}
	e.convIn = nn.NewConv2d(p, "conv_in", nn.Conv2dConfig{In: cfg.InChannels, Out: boc[0], Kernel: 3, Padding: 1})
	ch := boc[0]
	for i, out := range boc {
		bp := p.Sub(fmt.Sprintf("down_blocks.%d", i))
		var lv level
		for j := range cfg.LayersPerBlock {
			lv.resnets = append(lv.resnets, newResnet(bp.Sub(fmt.Sprintf("resnets.%d", j)), g, ch, out))
			ch = out
		}
		if i < len(boc)-1 {
			lv.resample = nn.NewConv2d(bp, "downsamplers.0.conv", nn.Conv2dConfig{In: ch, Out: ch, Kernel: 3, Stride: 2})
		}
		e.levels = append(e.levels, lv)
	}
	e.mid = newMidBlock(p.Sub("mid_block"), cfg, ch)
	e.normOut = nn.NewGroupNorm(p, "conv_norm_out", g, ch, 1e-6)
	e.convOut = nn.NewConv2d(p, "conv_out", nn.Conv2dConfig{In: ch, Out: 2 * cfg.LatentChannels, Kernel: 3, Padding: 1})
	return e
}

func newDecoder(p *nn.Params, cfg Config) *coder {
	rc := slices.Clone(cfg.BlockOutChannels)
	slices.Reverse(rc)
	g := cfg.NormNumGroups
	d := &coder{}
	d.convIn = nn.NewConv2d(p, "conv_in", nn.Conv2dConfig{In: cfg.LatentChannels, Out: rc[0], Kernel: 3, Padding: 1})
	d.mid = newMidBlock(p.Sub("mid_block"), cfg, rc[0])
	ch := rc[0]
	for i, out := range rc {
		bp := p.Sub(fmt.Sprintf("up_blocks.%d", i))
		var lv level
		for j := range cfg.LayersPerBlock + 1 {
			lv.resnets = append(lv.resnets, newResnet(bp.Sub(fmt.Sprintf("resnets.%d", j)), g, ch, out))
			ch = out
		}
		if i < len(rc)-1 {
			lv.resample = nn.NewConv2d(bp, "upsamplers.0.conv", nn.Conv2dConfig{In: ch, Out: ch, Kernel: 3, Padding: 1})
		}
		d.levels = append(d.levels, lv)
	}
	d.normOut = nn.NewGroupNorm(p, "conv_norm_out", g, ch, 1e-6)
	d.convOut = nn.NewConv2d(p, "conv_out", nn.Conv2dConfig{In: ch, Out: cfg.OutChannels, Kernel: 3, Padding: 1})
	return d
}

// conv runs op on f into a new activation.
func conv(ctx context.Context, op convOp, f feed) (*tensor.Tensor, error) {
	c := op.bind(f)
	out := tensor.New(f.x.Shape[0], c.cout, c.ho, c.wo)
	if err := c.run(ctx, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// forward runs the coder on x. Stages whose maps exceed streamAbove run
// streamed (see stream.go), one sample at a time; the others store their
// output whole.
func (e *coder) forward(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if n := x.Shape[0]; n > 1 && e.mayStream(x) {
		outs := make([]*tensor.Tensor, n)
		for i := range n {
			var err error
			if outs[i], err = e.forward(ctx, tensor.Slice(x, 0, i, i+1)); err != nil {
				return nil, err
			}
		}
		return tensor.Concat(0, outs...), nil
	}
	cur, err := convAct(ctx, same(e.convIn), act{t: x}, feed{})
	if err != nil {
		return nil, err
	}
	mid := func() error {
		t, err := cur.stored(ctx) // the mid block (attention) is at the smallest size
		if err == nil {
			t, err = e.mid.forward(ctx, t)
		}
		cur = act{t: t}
		return err
	}
	if !e.down {
		if err := mid(); err != nil {
			return nil, err
		}
	}
	for _, lv := range e.levels {
		for _, r := range lv.resnets {
			if cur, err = resnetAct(ctx, r, cur); err != nil {
				return nil, err
			}
		}
		switch {
		case lv.resample == nil:
		case e.down: // pad (0, 1, 0, 1), then 3x3 stride 2
			cur, err = convAct(ctx, convOp{l: lv.resample, stride: 2, pb: 1, pr: 1}, cur, feed{})
		default: // nearest 2x, then 3x3
			cur, err = convAct(ctx, same(lv.resample), cur, feed{up: true})
		}
		if err != nil {
			return nil, err
		}
	}
	if e.down {
		if err := mid(); err != nil {
			return nil, err
		}
	}
	a, b, err := normAct(ctx, e.normOut, cur)
	if err != nil {
		return nil, err
	}
	if cur, err = convAct(ctx, same(e.convOut), cur, feed{a: a, b: b, silu: true}); err != nil {
		return nil, err
	}
	return cur.stored(ctx)
}

// mayStream reports whether some map of one sample of x's pass could
// exceed streamAbove: the widest level at the image's full size.
func (e *coder) mayStream(x *tensor.Tensor) bool {
	h, w := x.Shape[2], x.Shape[3]
	if !e.down {
		f := 1 << (len(e.levels) - 1)
		h, w = h*f, w*f
	}
	widest := 0
	for _, lv := range e.levels {
		for _, r := range lv.resnets {
			widest = max(widest, r.conv1.Weight.Shape[0], r.conv1.Weight.Shape[1])
		}
	}
	return mapBytes(2*widest, h, w) > streamAbove
}

// VAE is the autoencoder. Its methods may be called concurrently.
type VAE struct {
	Config Config
	// Params holds the weights under their diffusers names
	// ("encoder.conv_in.weight", ...); attach LoRA adapters to its
	// convolutions and linear layers with nn.AttachLoRA (adapters that are
	// not merged are folded into the weights at each call).
	Params *nn.Params

	enc, dec         *coder
	quant, postQuant *nn.Conv2d // nil unless use_(post_)quant_conv
}

// New builds a VAE whose parameters are registered in p and drawn from
// p's generator (zero with none: load weights next).
func New(cfg Config, p *nn.Params) (*VAE, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.BlockOutChannels = slices.Clone(cfg.BlockOutChannels)
	v := &VAE{Config: cfg, Params: p}
	v.enc = newEncoder(p.Sub("encoder"), cfg)
	v.dec = newDecoder(p.Sub("decoder"), cfg)
	l2 := 2 * cfg.LatentChannels
	if cfg.UseQuantConv {
		v.quant = nn.NewConv2d(p, "quant_conv", nn.Conv2dConfig{In: l2, Out: l2, Kernel: 1})
	}
	if cfg.UsePostQuantConv {
		v.postQuant = nn.NewConv2d(p, "post_quant_conv", nn.Conv2dConfig{In: cfg.LatentChannels, Out: cfg.LatentChannels, Kernel: 1})
	}
	return v, nil
}

// Load builds a VAE and reads every weight from f, F32, F16 or BF16,
// strictly: a missing, unexpected or mis-shaped tensor is an error naming
// it. The attention projections may also be stored as 1x1 convolution
// kernels [C, C, 1, 1], as older conversions did. The weights are frozen.
func Load(cfg Config, f *safetensors.File) (*VAE, error) {
	return load(cfg, f, "")
}

// load is Load, naming the file in errors as where says.
func load(cfg Config, f *safetensors.File, where string) (*VAE, error) {
	v, err := New(cfg, nn.NewParams(nil))
	if err != nil {
		return nil, err
	}
	// Load through a registry of aliases sharing the weights' data, with
	// the 4-D shapes of 1x1 kernels where the file has them.
	alias := nn.NewParams(nil)
	for _, q := range v.Params.List() {
		t := q.T
		if in, ok := f.Info(q.Name); ok && t.Dim() == 2 && tensor.SameShape(in.Shape, []int{t.Shape[0], t.Shape[1], 1, 1}) {
			t = tensor.FromData(t.Data, in.Shape...)
		}
		alias.Add(q.Name, t)
	}
	if _, err := alias.Load(f, true); err != nil {
		return nil, fmt.Errorf("sd3vae: %s%w", where, err)
	}
	v.Params.Freeze()
	return v, nil
}

// LoadDir loads a diffusers VAE folder, such as an SD3 folder's vae/:
// config.json and diffusion_pytorch_model.safetensors (see Load).
func LoadDir(dir string) (*VAE, error) {
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "diffusion_pytorch_model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sd3vae: %w", err)
	}
	defer f.Close()
	return load(cfg, f, path+": ")
}

// Factor is the spatial downsampling between images and latents (8).
func (v *VAE) Factor() int { return v.Config.Factor() }

// Encode maps images x [N, in_channels, H, W] in [-1, 1] (H and W
// multiples of Factor) to raw latents [N, latent_channels, H/8, W/8]: the
// mean of the posterior, no sampling, no scaling. It returns ctx.Err()
// when ctx is cancelled; x is not modified.
func (v *VAE) Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	c, f := v.Config, v.Factor()
	if x == nil || x.Dim() != 4 || x.Shape[0] < 1 || x.Shape[1] != c.InChannels || x.Shape[2] < f || x.Shape[3] < f ||
		x.Shape[2]%f != 0 || x.Shape[3]%f != 0 {
		return nil, fmt.Errorf("sd3vae: encode input %v, want [N, %d, H, W] with H and W positive multiples of %d", shapeOf(x), c.InChannels, f)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := v.enc.forward(ctx, x) // [N, 2*latent, h, w]: mean, log-variance
	if err != nil {
		return nil, err
	}
	if v.quant != nil {
		if m, err = conv(ctx, same(v.quant), feed{x: m}); err != nil {
			return nil, err
		}
	}
	return tensor.Slice(m, 1, 0, c.LatentChannels), nil
}

// Decode maps raw latents z [N, latent_channels, h, w] to images
// [N, out_channels, 8h, 8w], nominally in [-1, 1] and not clamped. It
// returns ctx.Err() when ctx is cancelled; z is not modified.
func (v *VAE) Decode(ctx context.Context, z *tensor.Tensor) (*tensor.Tensor, error) {
	c := v.Config
	if z == nil || z.Dim() != 4 || z.Shape[0] < 1 || z.Shape[1] != c.LatentChannels || z.Shape[2] < 1 || z.Shape[3] < 1 {
		return nil, fmt.Errorf("sd3vae: decode input %v, want [N, %d, h, w]", shapeOf(z), c.LatentChannels)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.postQuant != nil {
		var err error
		if z, err = conv(ctx, same(v.postQuant), feed{x: z}); err != nil {
			return nil, err
		}
	}
	return v.dec.forward(ctx, z)
}

func shapeOf(t *tensor.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.Shape
}

// MemoryEstimate is the peak memory, in bytes, of the activations of
// encoding an h x w image and of decoding the latents of one with every
// map stored (as every image up to 1024x1024 runs; larger ones stream
// the maps above streamAbove, see stream.go, and stay below), including
// the input and output, plus band scratch (not the weights: 335 MB for
// SD3, nor tensor's per-thread im2col buffers, a few MB each). The Go
// heap exceeds it by the garbage the collector lets build up (GOGC): the
// package never calls the collector itself, so a program that runs SD3
// chooses its own trade-off (tsdsr's CLI lowers GOGC for --sd3).
//
// Every step holds its input and output maps at 4 bytes per value: a
// resnet holds x and h (h takes conv2's output in place), a resampler its
// input and output, the attention 6 maps (x, tokens, q, k, v, and the
// attention output or its transposed keys). For SD3 the decode peaks in
// the last up block's first resnet, x of 256 and h of 128 channels at full
// resolution: 4*(256+128) = 1536 bytes per output pixel, 6.4 GB at
// 2048x2048. The encode peaks in the first level's resnets, 4*(128+128) =
// 1024 bytes per pixel, 4.3 GB at 2048x2048.
func (c Config) MemoryEstimate(h, w int) (encode, decode int64) {
	boc, f := c.BlockOutChannels, c.Factor()
	mapB := func(ch, hh, ww int) int64 { return 4 * int64(ch) * int64(hh) * int64(ww) }
	// Input band, current and pending output bands, shortcut band.
	scratch := 4 * 4 * int64(bandElems)
	mid := func(ch, hh, ww int) int64 {
		n := int64(2) // resnets
		if c.MidBlockAddAttention {
			n = 6
		}
		return n * mapB(ch, hh, ww)
	}

	img := mapB(c.InChannels, h, w)
	hh, ww, ch := h, w, boc[0]
	peak := mapB(ch, hh, ww)
	for i, out := range boc {
		for range c.LayersPerBlock {
			peak = max(peak, mapB(ch, hh, ww)+mapB(out, hh, ww))
			ch = out
		}
		if i < len(boc)-1 {
			peak = max(peak, mapB(ch, hh, ww)+mapB(ch, hh/2, ww/2))
			hh, ww = hh/2, ww/2
		}
	}
	peak = max(peak, mid(ch, hh, ww), mapB(ch, hh, ww)+mapB(2*c.LatentChannels, hh, ww))
	encode = img + peak + scratch

	lat := mapB(c.LatentChannels, h/f, w/f)
	hh, ww, ch = h/f, w/f, boc[len(boc)-1]
	peak = mid(ch, hh, ww)
	for i := len(boc) - 1; i >= 0; i-- {
		out := boc[i]
		for range c.LayersPerBlock + 1 {
			peak = max(peak, mapB(ch, hh, ww)+mapB(out, hh, ww))
			ch = out
		}
		if i > 0 {
			peak = max(peak, mapB(ch, hh, ww)+mapB(ch, 2*hh, 2*ww))
			hh, ww = 2*hh, 2*ww
		}
	}
	peak = max(peak, mapB(ch, hh, ww)+mapB(c.OutChannels, hh, ww))
	decode = lat + peak + scratch
	return encode, decode
}
