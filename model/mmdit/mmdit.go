// Package mmdit is Stable Diffusion 3's multimodal diffusion transformer
// (MMDiT), config-driven from tiny sizes to SD3-medium. The structure and
// parameter names follow diffusers' SD3Transformer2DModel, so state dicts
// interoperate: a block registers its children under their attribute names
// and the module tree is the checkpoint key tree.
//
// The model is a pure forward pass from (latent, timestep, prompt) to a
// flow-matching velocity; schedules and samplers live in package flow.
package mmdit

import (
	"fmt"
	"math"
	"slices"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// eps of every LayerNorm in SD3's transformer.
const normEps = 1e-6

// Model is an SD3 transformer. With Config.ContextTokens > 0 it also owns a
// learned prompt ("prompt_embeds" [1, L, joint_attention_dim] and
// "pooled_prompt_embeds" [1, pooled_projection_dim]), standing in for the
// fixed text-encoder embeddings TSD-SR feeds SD3.
type Model struct {
	Config Config
	Params *nn.Params

	posProj  *nn.Conv2d
	posTable []float32 // [max*max, hidden] 2-D sin-cos table
	timeL1   *nn.Linear
	timeL2   *nn.Linear
	textL1   *nn.Linear
	textL2   *nn.Linear
	txtEmbed *nn.Linear
	blocks   []*block
	normOut  *nn.Linear
	projOut  *nn.Linear
	prompt   *tensor.Tensor
	pooled   *tensor.Tensor
}

// block is a JointTransformerBlock: joint attention over image and context
// tokens, each stream with its own projections, adaLN-Zero modulation and
// MLP. The last block is context-pre-only: it reads the context but no
// longer updates it.
type block struct {
	preOnly bool
	heads   int

	norm1, norm1Txt          *nn.Linear // SiLU(c) -> 6 x hidden (last block's context: 2 x hidden)
	toQ, toK, toV, toOut     *nn.Linear
	addQ, addK, addV         *nn.Linear
	toAddOut                 *nn.Linear // nil in the last block
	ff0, ff2, ffTxt0, ffTxt2 *nn.Linear // ffTxt* nil in the last block
}

// New registers the model's parameters in p (initialised from p's
// generator, see nn.NewParams) and returns the model. The initialisation
// is DiT's: adaLN modulation and the output projection start at zero, so
// the untrained network predicts zero velocity and every block starts as
// the identity on the image stream.
func New(cfg Config, p *nn.Params) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := cfg.Hidden()
	m := &Model{Config: cfg, Params: p}
	m.posProj = nn.NewConv2d(p, "pos_embed.proj", nn.Conv2dConfig{In: cfg.InChannels, Out: d, Kernel: cfg.PatchSize, Stride: cfg.PatchSize})
	m.posTable = posTable(d, cfg.PosEmbedMaxSize, cfg.SampleSize/cfg.PatchSize)
	m.timeL1 = nn.NewLinear(p, "time_text_embed.timestep_embedder.linear_1", timeDim, d, true)
	m.timeL2 = nn.NewLinear(p, "time_text_embed.timestep_embedder.linear_2", d, d, true)
	m.textL1 = nn.NewLinear(p, "time_text_embed.text_embedder.linear_1", cfg.PooledProjectionDim, d, true)
	m.textL2 = nn.NewLinear(p, "time_text_embed.text_embedder.linear_2", d, d, true)
	m.txtEmbed = nn.NewLinear(p, "context_embedder", cfg.JointAttentionDim, cfg.CaptionProjectionDim, true)
	for i := 0; i < cfg.NumLayers; i++ {
		bp := p.Sub(fmt.Sprintf("transformer_blocks.%d", i))
		b := &block{preOnly: i == cfg.NumLayers-1, heads: cfg.NumAttentionHeads}
		b.norm1 = nn.NewLinear(bp, "norm1.linear", d, 6*d, true)
		if b.preOnly {
			b.norm1Txt = nn.NewLinear(bp, "norm1_context.linear", d, 2*d, true)
		} else {
			b.norm1Txt = nn.NewLinear(bp, "norm1_context.linear", d, 6*d, true)
		}
		b.toQ = nn.NewLinear(bp, "attn.to_q", d, d, true)
		b.toK = nn.NewLinear(bp, "attn.to_k", d, d, true)
		b.toV = nn.NewLinear(bp, "attn.to_v", d, d, true)
		b.addQ = nn.NewLinear(bp, "attn.add_q_proj", d, d, true)
		b.addK = nn.NewLinear(bp, "attn.add_k_proj", d, d, true)
		b.addV = nn.NewLinear(bp, "attn.add_v_proj", d, d, true)
		b.toOut = nn.NewLinear(bp, "attn.to_out.0", d, d, true)
		if !b.preOnly {
			b.toAddOut = nn.NewLinear(bp, "attn.to_add_out", d, d, true)
		}
		b.ff0 = nn.NewLinear(bp, "ff.net.0.proj", d, 4*d, true)
		b.ff2 = nn.NewLinear(bp, "ff.net.2", 4*d, d, true)
		if !b.preOnly {
			b.ffTxt0 = nn.NewLinear(bp, "ff_context.net.0.proj", d, 4*d, true)
			b.ffTxt2 = nn.NewLinear(bp, "ff_context.net.2", 4*d, d, true)
		}
		m.blocks = append(m.blocks, b)
	}
	m.normOut = nn.NewLinear(p, "norm_out.linear", d, 2*d, true)
	m.projOut = nn.NewLinear(p, "proj_out", d, cfg.PatchSize*cfg.PatchSize*cfg.OutChannels, true)
	if cfg.ContextTokens > 0 {
		m.prompt = p.Add("prompt_embeds", tensor.New(1, cfg.ContextTokens, cfg.JointAttentionDim).SetRequiresGrad(true))
		m.pooled = p.Add("pooled_prompt_embeds", tensor.New(1, cfg.PooledProjectionDim).SetRequiresGrad(true))
	}
	m.initDiT()
	return m, nil
}

// initDiT zeroes the modulation and output layers and draws the learned
// prompt from N(0, 1). Loading a checkpoint afterwards overwrites all of it.
func (m *Model) initDiT() {
	zero := func(l *nn.Linear) {
		for _, d := range [][]float32{l.Weight.Data, l.Bias.Data} {
			// Reading first keeps never-written (already zero) memory
			// untouched: an SD3-sized model built only to load weights
			// into stays virtual until it is loaded.
			if slices.ContainsFunc(d, func(v float32) bool { return v != 0 }) {
				clear(d)
			}
		}
	}
	for _, b := range m.blocks {
		zero(b.norm1)
		zero(b.norm1Txt)
	}
	zero(m.normOut)
	zero(m.projOut)
	if m.prompt != nil {
		r := rng.New(uint64(m.Config.Hidden())*7919 + 17)
		r.FillNormal(m.prompt.Data, 0, 1)
		r.FillNormal(m.pooled.Data, 0, 1)
	}
}

// Velocity predicts the flow-matching velocity (eps - x0) for scaled
// latents x [N, in, H, W] at model timesteps t (1000 * sigma, one per
// sample), conditioned on the model's learned prompt.
func (m *Model) Velocity(x *tensor.Tensor, t []float32) *tensor.Tensor {
	if m.prompt == nil {
		panic("mmdit.Velocity: model has no learned prompt (context_tokens = 0); use Forward")
	}
	return m.Forward(x, t, m.prompt, m.pooled)
}

// Forward runs the transformer on x [N, in, H, W] (H, W multiples of the
// patch size, within the position grid) at timesteps t [N] with text tokens
// (the prompt: SD3 names them "context") [N or 1, L, joint_attention_dim] and pooled [N or 1, pooled_dim]; it
// returns [N, out, H, W].
func (m *Model) Forward(x *tensor.Tensor, t []float32, text, pooled *tensor.Tensor) *tensor.Tensor {
	cfg := m.Config
	p, d := cfg.PatchSize, cfg.Hidden()
	if x.Dim() != 4 || x.Shape[1] != cfg.InChannels || x.Shape[2]%p != 0 || x.Shape[3]%p != 0 {
		panic(fmt.Sprintf("mmdit.Forward: latent shape %v, want [N, %d, %dk, %dm]", x.Shape, cfg.InChannels, p, p))
	}
	n, h, w := x.Shape[0], x.Shape[2]/p, x.Shape[3]/p
	if h > cfg.PosEmbedMaxSize || w > cfg.PosEmbedMaxSize {
		panic(fmt.Sprintf("mmdit.Forward: %dx%d patches exceed the position grid %d", h, w, cfg.PosEmbedMaxSize))
	}
	if len(t) != n {
		panic(fmt.Sprintf("mmdit.Forward: %d timesteps for batch %d", len(t), n))
	}

	tok := m.posProj.Forward(x)                                                // [N, D, h, w]
	tok = tensor.Transpose(tensor.Reshape(tok, n, d, h*w), 1, 2)               // [N, hw, D]
	tok = tensor.Add(tok, m.positions(h, w))                                   // + [1, hw, D]
	temb := timestepEmbedding(t)                                               // [N, 256]
	c := m.timeL2.Forward(tensor.SiLU(m.timeL1.Forward(temb)))                 // [N, D]
	c = tensor.Add(c, m.textL2.Forward(tensor.SiLU(m.textL1.Forward(pooled)))) // [N, D]
	txt := m.txtEmbed.Forward(text)                                            // [Nc, L, D]
	if txt.Shape[0] == 1 && n > 1 {
		reps := make([]*tensor.Tensor, n)
		for i := range reps {
			reps[i] = txt
		}
		txt = tensor.Concat(0, reps...) // [N, L, D]
	}
	sc := tensor.SiLU(c) // every adaLN reads SiLU(c)
	for _, b := range m.blocks {
		tok, txt = b.forward(tok, txt, sc)
	}
	mod := tensor.Split(m.normOut.Forward(sc), 1, d, d) // adaLN-continuous: scale, shift
	tok = modulate(tensor.LayerNorm(tok, nil, nil, normEps), mod[1], mod[0])
	out := m.projOut.Forward(tok) // [N, hw, p*p*out]
	return tensor.Unpatchify(out, p, cfg.OutChannels, h, w)
}

func (b *block) forward(x, txt, sc *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
	d := x.Shape[2]
	li, lc := x.Shape[1], txt.Shape[1]
	// adaLN-Zero chunks: shift, scale, gate (attention), shift, scale, gate (MLP).
	mi := tensor.Split(b.norm1.Forward(sc), 1, d, d, d, d, d, d)
	nx := modulate(tensor.LayerNorm(x, nil, nil, normEps), mi[0], mi[1]) // [N, Li, D]
	var mc []*tensor.Tensor
	var nc *tensor.Tensor
	if b.preOnly {
		mc = tensor.Split(b.norm1Txt.Forward(sc), 1, d, d) // adaLN-continuous: scale, shift
		nc = modulate(tensor.LayerNorm(txt, nil, nil, normEps), mc[1], mc[0])
	} else {
		mc = tensor.Split(b.norm1Txt.Forward(sc), 1, d, d, d, d, d, d)
		nc = modulate(tensor.LayerNorm(txt, nil, nil, normEps), mc[0], mc[1])
	}
	// Joint attention over [image; context]. The last block discards the
	// context's outputs, so it skips the context queries (add_q_proj stays
	// in the state dict, as in diffusers, but is unused there).
	k := tensor.Concat(1, b.toK.Forward(nx), b.addK.Forward(nc)) // [N, Li+Lc, D]
	v := tensor.Concat(1, b.toV.Forward(nx), b.addV.Forward(nc))
	var a []*tensor.Tensor
	if b.preOnly {
		a = []*tensor.Tensor{tensor.Attention(b.toQ.Forward(nx), k, v, b.heads)} // [N, Li, D]
	} else {
		q := tensor.Concat(1, b.toQ.Forward(nx), b.addQ.Forward(nc))
		a = tensor.Split(tensor.Attention(q, k, v, b.heads), 1, li, lc)
	}
	x = tensor.Add(x, gate(mi[2], b.toOut.Forward(a[0])))
	nx = modulate(tensor.LayerNorm(x, nil, nil, normEps), mi[3], mi[4])
	x = tensor.Add(x, gate(mi[5], b.ff2.Forward(tensor.GELU(b.ff0.Forward(nx)))))
	if b.preOnly {
		return x, txt
	}
	txt = tensor.Add(txt, gate(mc[2], b.toAddOut.Forward(a[1])))
	nc = modulate(tensor.LayerNorm(txt, nil, nil, normEps), mc[3], mc[4])
	txt = tensor.Add(txt, gate(mc[5], b.ffTxt2.Forward(tensor.GELU(b.ffTxt0.Forward(nc)))))
	return x, txt
}

// modulate is adaLN's x * (1 + scale) + shift, with per-sample [N, D]
// shift and scale broadcast over the tokens of x [N, L, D].
func modulate(x, shift, scale *tensor.Tensor) *tensor.Tensor {
	n, d := shift.Shape[0], shift.Shape[1]
	s := tensor.AddScalar(tensor.Reshape(scale, n, 1, d), 1)
	return tensor.Add(tensor.Mul(x, s), tensor.Reshape(shift, n, 1, d))
}

// gate multiplies y [N, L, D] by the per-sample gate g [N, D].
func gate(g, y *tensor.Tensor) *tensor.Tensor {
	return tensor.Mul(y, tensor.Reshape(g, g.Shape[0], 1, g.Shape[1]))
}

// timeDim is the width of the sinusoidal timestep features.
const timeDim = 256

// timestepEmbedding is diffusers' get_timestep_embedding with
// flip_sin_to_cos=True and downscale_freq_shift=0: [cos(t f), sin(t f)]
// with f_k = exp(-ln(10000) k / 128), computed in float32 as PyTorch does:
// the exponent is float32(-ln 10000) * k / 128 with a float32 rounding
// after each operation (a float64 exponent differs by up to 9 ulp in f_k,
// 5.6e-5 in the features at t = 1000), then a correctly rounded exp.
func timestepEmbedding(t []float32) *tensor.Tensor {
	const half = timeDim / 2
	negLn := float32(-math.Log(10000))
	out := tensor.New(len(t), timeDim)
	for i, tv := range t {
		for k := 0; k < half; k++ {
			e := negLn * float32(k)
			e /= half
			f := float32(math.Exp(float64(e)))
			a := float64(tv * f)
			out.Data[i*timeDim+k] = float32(math.Cos(a))
			out.Data[i*timeDim+half+k] = float32(math.Sin(a))
		}
	}
	return out
}

// posTable is diffusers' get_2d_sincos_pos_embed(dim, grid, base_size):
// token (i, j) of the grid gets [sincos(dim/2; x_j), sincos(dim/2; y_i)]
// with coordinates k / (grid / base) (the first half encodes the column,
// as diffusers' meshgrid puts w first), sincos = [sin(p w_k), cos(p w_k)]
// with w_k = 10000^(-k / (dim/4)).
func posTable(dim, grid, base int) []float32 {
	quarter := dim / 4
	tab := make([]float32, grid*grid*dim)
	enc := func(dst []float32, pos float64) {
		for k := 0; k < quarter; k++ {
			w := 1 / math.Pow(10000, float64(k)/float64(quarter))
			dst[k] = float32(math.Sin(pos * w))
			dst[quarter+k] = float32(math.Cos(pos * w))
		}
	}
	step := float64(grid) / float64(base)
	for i := 0; i < grid; i++ {
		for j := 0; j < grid; j++ {
			row := tab[(i*grid+j)*dim:]
			enc(row[:dim/2], float64(j)/step)
			enc(row[dim/2:dim], float64(i)/step)
		}
	}
	return tab
}

// positions crops the centre h x w window of the position grid, as SD3's
// PatchEmbed.cropped_pos_embed does: [1, h*w, D].
func (m *Model) positions(h, w int) *tensor.Tensor {
	g, d := m.Config.PosEmbedMaxSize, m.Config.Hidden()
	top, left := (g-h)/2, (g-w)/2
	out := tensor.New(1, h*w, d)
	for i := 0; i < h; i++ {
		src := m.posTable[((top+i)*g+left)*d : ((top+i)*g+left+w)*d]
		copy(out.Data[i*w*d:], src)
	}
	return out
}
