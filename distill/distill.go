// Package distill turns the multi-step flow prior into TSD-SR's one-step
// super-resolution student by Target Score Distillation (Wu et al., TSD-SR,
// CVPR 2025), following the official training code (Microtreei/TSD-SR
// train/train.py) except where noted.
//
// Three copies of the prior take part:
//
//	student G  prior + LoRA (rank 64 on the attention, MLP-in, adaLN and I/O
//	           layers) or fully fine-tuned; trained
//	teacher psi the frozen prior ("real score")
//	fake phi   prior + its own LoRA (rank 16, attention projections), trained
//	           online on the student's outputs; starts equal to the teacher
//
// The student maps the scaled latent z_L of the bicubic-upsampled LR image in
// one step at sigma = 1: z_hat = z_L - G(z_L, t = 1000). Its loss is
//
//	L = w_mse MSE(z_hat, z_H) + w_pix pixel(z_hat, HR) + w_tsd L_TSD
//
// where L_TSD is a surrogate whose gradient is the TSD gradient (see Grad,
// TSDLoss): lambda times variational score distillation (teacher minus fake
// score at the noised student output) plus (1 - lambda) times target score
// matching (teacher at the noised student output minus teacher at the noised
// HR latent, same noise). With Distribution-Aware Sampling (DASM) the
// gradient is accumulated along a short Euler trajectory toward lower noise
// (see DASMIndices). After every student step the fake score takes one step
// of x0-space flow matching on the detached student outputs (FakeLoss).
//
// Each sample of a batch uses its own noise level throughout (the official
// code uses sample 0's timestep for the whole batch; this package does not).
package distill

import (
	"errors"
	"fmt"

	"tsdsr/model/mmdit"
	"tsdsr/nn"
)

// Regularisers of the student (Config.Reg).
const (
	RegNone = "none" // MSE (and pixel) loss only; no fake score
	RegVSD  = "vsd"  // variational score distillation (lambda = 1)
	RegTSD  = "tsd"  // target score distillation, lambda VSD + (1 - lambda) TSM
)

// StudentTargets are the student's LoRA targets (TSD-SR's list).
var StudentTargets = []string{
	"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
	"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
	"pos_embed.proj", "ff.net.0.proj", "ff_context.net.0.proj",
	"norm1.linear", "norm1_context.linear", "norm_out.linear", "proj_out",
}

// FakeTargets are the fake score's LoRA targets: the attention projections.
var FakeTargets = []string{
	"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
	"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
}

// Config is the distillation recipe. It is saved with every checkpoint and
// must match on resume.
type Config struct {
	LoRARank     int     `json:"lora_rank"`     // student LoRA rank (alpha = rank)
	FakeRank     int     `json:"fake_rank"`     // fake-score LoRA rank
	FullFinetune bool    `json:"full_finetune"` // train every student weight instead of a LoRA
	Reg          string  `json:"reg"`           // RegNone, RegVSD or RegTSD
	Lambda       float64 `json:"lambda"`        // VSD share of the TSD gradient (RegTSD)
	DASM         bool    `json:"dasm"`          // accumulate along DASM trajectories
	DASMSteps    int     `json:"dasm_steps"`    // trajectory length N
	WMSE         float64 `json:"w_mse"`         // latent MSE weight
	WTSD         float64 `json:"w_tsd"`         // L_TSD weight
	WPix         float64 `json:"w_pix"`         // pixel loss weight (Charbonnier on TAESD3-decoded output)
	LR           float64 `json:"lr"`            // student peak learning rate
	LRFake       float64 `json:"lr_fake"`       // fake-score peak learning rate
	Warmup       int     `json:"warmup"`        // linear warm-up steps of both schedules
	Steps        int     `json:"steps"`         // total steps (end of the cosine decay)
	WeightDecay  float64 `json:"weight_decay"`  // AdamW weight decay (1e-4)
	ClipNorm     float64 `json:"clip_norm"`     // gradient-norm clip (1.0)
	Seed         uint64  `json:"seed"`          // LoRA initialisation seed
	// EMA is the decay of an exponential moving average of the student's
	// weights (0: none). The average is what student.safetensors holds: it
	// smooths the step-to-step noise that the score terms add, which the
	// student's own weights carry into the output.
	EMA float64 `json:"ema,omitempty"`
	// WAdv weighs the student's hinge loss against a patch discriminator
	// (Discriminator; beyond the paper, 0: none) that trains every step at
	// LRDisc, on latents or on decoded pixels (AdvSpace: AdvLatent, the
	// default, or AdvPixel).
	WAdv     float64 `json:"w_adv,omitempty"`
	LRDisc   float64 `json:"lr_disc,omitempty"`
	AdvSpace string  `json:"adv_space,omitempty"`
	// AdvShift crops the discriminator's real and fake inputs at a random
	// offset in [0, AdvShift) per step (0: no crop), in the units of its
	// input (pixels or latent pixels). A discriminator whose patch grid is
	// fixed to the image is not shift-invariant (its strided convolutions
	// see a 16-pixel cell's phase), and the student, whose tokens are 16
	// pixels too, can learn to draw a 16-pixel grid to please it: on the
	// mild hold-out pairs session 6 measured metrics' grid at up to 0.111
	// for a pixel-discriminator student (most 0.03-0.06), against 0.042 for
	// the HR crops and 0.033-0.036 for students without a discriminator.
	// The crop makes the patch grid's phase random.
	AdvShift int `json:"adv_shift,omitempty"`
	// WSSIM weighs 1 - SSIM between the decoded output and the HR crop
	// (SSIMLoss; beyond the paper, 0: none). Session 6's students pass the
	// PSNR gate and miss the SSIM one: the discriminator's texture lands on
	// flat regions as well, which SSIM's variance term punishes and a
	// per-pixel distance barely sees.
	WSSIM float64 `json:"w_ssim,omitempty"`
	// WGrid weighs GridLoss, the 16-pixel periodicity of the decoded
	// output's luma gradients (metrics' grid, squared; beyond the paper, 0:
	// none). Session 8 measured the grid rising with training at --w-adv 0.4
	// despite the shift crop (camera hold-out pairs: 0.154 at step 612 from
	// session 6's student, 0.278 at step 600 of the run before it; the HR
	// crops' own structure reads about 0.05): the student's 16-pixel tokens
	// draw it, so the term penalises the student, not the discriminator.
	WGrid float64 `json:"w_grid,omitempty"`
}

// NeedsPixels says whether the recipe decodes the student's output: for
// the pixel loss, the SSIM term or a pixel discriminator.
func (c Config) NeedsPixels() bool {
	return c.WPix > 0 || c.WSSIM > 0 || c.WGrid > 0 || (c.WAdv > 0 && c.AdvSpace == AdvPixel)
}

// Where the discriminator looks (Config.AdvSpace).
const (
	AdvLatent = "latent" // scaled TAESD3 latents (also "")
	AdvPixel  = "pixel"  // the TAESD3 decoding against the HR crops
)

// DefaultConfig is TSD-SR's recipe (ranks 64 and 16, lambda 0.7, DASM with
// 4 steps, AdamW weight decay 1e-4, clipping 1). The learning rates are
// untuned starting points for the small prior, not the paper's SD3 values
// (5e-6 for the student, 1e-6 for the fake score).
func DefaultConfig() Config {
	return Config{LoRARank: 64, FakeRank: 16, Reg: RegTSD, Lambda: 0.7, DASM: true, DASMSteps: 4,
		WMSE: 1, WTSD: 1, LR: 1e-4, LRFake: 1e-4, Warmup: 100, Steps: 10000,
		WeightDecay: 1e-4, ClipNorm: 1}
}

// Validate checks the recipe.
func (c Config) Validate() error {
	switch c.Reg {
	case RegNone, RegVSD, RegTSD:
	default:
		return fmt.Errorf("distill: reg %q, want none, vsd or tsd", c.Reg)
	}
	if c.EMA < 0 || c.EMA >= 1 {
		return fmt.Errorf("distill: EMA decay %g outside [0, 1)", c.EMA)
	}
	if c.Lambda < 0 || c.Lambda > 1 {
		return fmt.Errorf("distill: lambda %g outside [0, 1]", c.Lambda)
	}
	if c.DASM && c.DASMSteps < 1 {
		return fmt.Errorf("distill: dasm steps %d < 1", c.DASMSteps)
	}
	if !c.FullFinetune && c.LoRARank <= 0 {
		return fmt.Errorf("distill: student lora rank %d (use full fine-tuning for no adapter)", c.LoRARank)
	}
	if c.Reg != RegNone && c.FakeRank <= 0 {
		return fmt.Errorf("distill: fake lora rank %d", c.FakeRank)
	}
	if c.LR <= 0 || (c.Reg != RegNone && c.LRFake <= 0) {
		return errors.New("distill: learning rates must be positive")
	}
	if c.Steps <= 0 || c.Warmup < 0 {
		return fmt.Errorf("distill: steps %d, warmup %d", c.Steps, c.Warmup)
	}
	switch c.AdvSpace {
	case "", AdvLatent, AdvPixel:
	default:
		return fmt.Errorf("distill: adversarial space %q, want latent or pixel", c.AdvSpace)
	}
	if c.AdvShift < 0 {
		return fmt.Errorf("distill: adversarial shift %d < 0", c.AdvShift)
	}
	if c.WAdv > 0 && c.LRDisc <= 0 {
		return errors.New("distill: the adversarial term needs a positive discriminator learning rate")
	}
	if c.WMSE < 0 || c.WTSD < 0 || c.WPix < 0 || c.WAdv < 0 || c.WSSIM < 0 || c.WGrid < 0 {
		return errors.New("distill: loss weights must be non-negative")
	}
	return nil
}

// lambda is the VSD share of the gradient for the configured regulariser.
func (c Config) lambda() float64 {
	if c.Reg == RegVSD {
		return 1
	}
	return c.Lambda
}

// trajectory is the number of DASM steps (1 without DASM).
func (c Config) trajectory() int {
	if c.DASM {
		return c.DASMSteps
	}
	return 1
}

// Clone builds a new model of m's config holding a copy of m's weights
// (LoRA adapters are not copied; attach new ones to the clone).
func Clone(m *mmdit.Model) (*mmdit.Model, error) {
	c, err := mmdit.New(m.Config, nn.NewParams(nil))
	if err != nil {
		return nil, err
	}
	src := nn.Map(m.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) }))
	for _, p := range c.Params.List() {
		s, ok := src[p.Name]
		if !ok {
			return nil, fmt.Errorf("distill: clone: %s missing", p.Name)
		}
		copy(p.T.Data, s.Data)
	}
	return c, nil
}
