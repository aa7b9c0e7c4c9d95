package distill

import (
	"fmt"
	"math"
	"strings"

	"tsdsr/flow"
	"tsdsr/metrics"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
	"tsdsr/train"
)

// Trainer holds the three networks, their optimisers and schedules.
// It is not safe for concurrent use.
type Trainer struct {
	Config   Config
	Schedule flow.Schedule // SD3's shift-3 schedule

	Student, Teacher, Fake *mmdit.Model // Fake is nil with RegNone
	// Decoder maps student latents back to pixels for the pixel loss
	// (needed only when Config.WPix > 0).
	Decoder *taesd.Decoder

	OptStudent, OptFake *nn.AdamW
	lrStudent, lrFake   nn.Schedule
	// EMA averages the student's trainable weights (nil without
	// Config.EMA); Swap it in to use or save the average.
	EMA *nn.EMA
	// Disc and its optimiser exist with Config.WAdv > 0.
	Disc    *Discriminator
	OptDisc *nn.AdamW
	lrDisc  nn.Schedule
}

// The discriminators' shapes: on latents 64 -> 128 -> 128 channels (about
// 0.4 M weights, 4 x 4 latent patches); on pixels 32 -> ... -> 256 over four
// halvings (1.7 M weights, 16 x 16 pixel patches, about 4 GFLOP a 256-pixel
// crop forward).
const (
	discWidth, discDowns           = 64, 2
	pixelDiscWidth, pixelDiscDowns = 32, 4
)

// NewTrainer builds the distillation around a prior: the prior itself
// becomes the frozen teacher, the student and the fake score are copies
// of it with their adapters attached (B = 0, so both start equal to it).
func NewTrainer(cfg Config, prior *mmdit.Model) (*Trainer, error) {
	return NewTrainerFrom(cfg, prior, prior)
}

// NewTrainerFrom is NewTrainer with the student starting from start (a
// student trained earlier, e.g. by latent regression alone) instead of the
// prior; the teacher and the fake score are still the prior. A student that
// already reconstructs the HR latent stays near it under the score terms
// (with our small prior that kept fidelity but gained no NIQE: row (g) of
// docs/ablation.md).
func NewTrainerFrom(cfg Config, prior, start *mmdit.Model) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if start.Config != prior.Config {
		return nil, fmt.Errorf("distill: the student's starting model is not shaped like the prior (%+v vs %+v)", start.Config, prior.Config)
	}
	t := &Trainer{Config: cfg, Schedule: flow.SD3(), Teacher: prior}
	prior.Params.Freeze()
	var err error
	if t.Student, err = Clone(start); err != nil {
		return nil, err
	}
	fixed := func(n string) bool { return n == "prompt_embeds" || n == "pooled_prompt_embeds" }
	if cfg.FullFinetune {
		// The prompt stands for TSD-SR's fixed text embeddings: it stays.
		t.Student.Params.SetTrainable(func(n string) bool { return !fixed(n) })
	} else {
		if _, err := nn.AttachLoRA(t.Student.Params, nn.LoRAConfig{Rank: cfg.LoRARank, Targets: StudentTargets, Seed: cfg.Seed}); err != nil {
			return nil, err
		}
		t.Student.Params.SetTrainable(nn.IsLoRA)
	}
	adam := nn.AdamWConfig{LR: cfg.LR, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: cfg.WeightDecay}
	t.OptStudent = nn.NewAdamW(t.Student.Params.Trainable(), adam)
	t.lrStudent = nn.CosineWarmup(cfg.LR, cfg.Warmup, cfg.Steps)
	if cfg.EMA > 0 {
		t.EMA = nn.NewEMA(t.OptStudent.Params(), cfg.EMA)
	}
	if cfg.Reg != RegNone {
		if t.Fake, err = Clone(prior); err != nil {
			return nil, err
		}
		if _, err := nn.AttachLoRA(t.Fake.Params, nn.LoRAConfig{Rank: cfg.FakeRank, Targets: FakeTargets, Seed: cfg.Seed ^ 0xfa4e}); err != nil {
			return nil, err
		}
		t.Fake.Params.SetTrainable(nn.IsLoRA)
		adam.LR = cfg.LRFake
		t.OptFake = nn.NewAdamW(t.Fake.Params.Trainable(), adam)
		t.lrFake = nn.CosineWarmup(cfg.LRFake, cfg.Warmup, cfg.Steps)
	}
	if cfg.WAdv > 0 {
		r := rng.New(cfg.Seed ^ 0xd15c)
		if cfg.AdvSpace == AdvPixel {
			t.Disc = NewDiscriminator(r, 3, pixelDiscWidth, pixelDiscDowns)
		} else {
			t.Disc = NewDiscriminator(r, prior.Config.InChannels, discWidth, discDowns)
		}
		adam.LR = cfg.LRDisc
		t.OptDisc = nn.NewAdamW(t.Disc.Params.Trainable(), adam)
		t.lrDisc = nn.CosineWarmup(cfg.LRDisc, cfg.Warmup, cfg.Steps)
	}
	return t, nil
}

// DiscPatch is the patch side of the discriminator for an adversarial
// space (Config.AdvSpace): 16 pixels, or 4 latent pixels (32 pixels).
func DiscPatch(space string) int {
	if space == AdvPixel {
		return 1 << pixelDiscDowns
	}
	return 1 << discDowns
}

// Register adds the trainer's changing state to a run's checkpoints:
// the student's trainable weights, the fake score's adapters and both
// optimisers (moments and step counts). Everything else is the prior.
func (t *Trainer) Register(r *train.Run) {
	r.Add("student", train.WeightList(t.OptStudent.Params()))
	r.Add("opt_student", t.OptStudent)
	if t.EMA != nil {
		r.Add("ema_student", t.EMA)
	}
	if t.Fake != nil {
		r.Add("fake", train.WeightList(t.OptFake.Params()))
		r.Add("opt_fake", t.OptFake)
	}
	if t.Disc != nil {
		r.Add("disc", train.WeightList(t.OptDisc.Params()))
		r.Add("opt_disc", t.OptDisc)
	}
}

// Batch is one training batch in latent space: the scaled TAESD3 latents of
// the bicubic-upsampled LR crops (ZL) and of the HR crops (ZH), both
// [N, 16, h, w], and the HR crops in [0, 1] ([N, 3, 8h, 8w]; needed only
// for the pixel loss).
type Batch struct {
	ZL, ZH, HR *tensor.Tensor
}

// Step runs one student step and then one fake-score step on the batch,
// drawing its random numbers from r, and returns the step's metrics:
// loss (the student's total), mse, tsd, pix, adv, grad_norm (before
// clipping), lr, for the fake score fake (its loss), fake_grad_norm and
// lr_fake, and for the discriminator disc, disc_grad_norm and lr_disc.
// The fake score trains on the outputs of this step's student, before its
// update (as the official code does). An optimiser whose gradient norm is
// not finite skips its update.
func (t *Trainer) Step(b Batch, r *rng.Rand) (train.Scalars, error) {
	cfg := t.Config
	n := b.ZL.Shape[0]
	if !tensor.SameShape(b.ZL.Shape, b.ZH.Shape) {
		return nil, fmt.Errorf("distill: LR latents %v, HR latents %v", b.ZL.Shape, b.ZH.Shape)
	}
	m := train.Scalars{}

	zHat := flow.OneStep(t.Student.Velocity, b.ZL) // [N, 16, h, w], records the student's graph
	mse := tensor.MSE(zHat, b.ZH)
	m["mse"] = float64(mse.Item())
	loss := tensor.Scale(mse, float32(cfg.WMSE))
	pixelAdv := t.Disc != nil && cfg.AdvSpace == AdvPixel
	var img *tensor.Tensor // the decoded output, for the pixel loss and a pixel discriminator
	if cfg.NeedsPixels() {
		if t.Decoder == nil || b.HR == nil {
			return nil, fmt.Errorf("distill: the pixel loss and a pixel discriminator need the decoder and the HR crops")
		}
		img = Decode(t.Decoder, zHat)
	}
	if cfg.WPix > 0 {
		pix := PixelLoss(img, b.HR)
		m["pix"] = float64(pix.Item())
		loss = tensor.Add(loss, tensor.Scale(pix, float32(cfg.WPix)))
	}
	if cfg.WSSIM > 0 {
		ssim := SSIMLoss(img, b.HR)
		m["ssim_loss"] = float64(ssim.Item())
		loss = tensor.Add(loss, tensor.Scale(ssim, float32(cfg.WSSIM)))
	}
	if cfg.WGrid > 0 {
		grid := GridLoss(img)
		m["grid_loss"] = float64(grid.Item())
		loss = tensor.Add(loss, tensor.Scale(grid, float32(cfg.WGrid)))
	}
	// What the discriminator sees of the student (and, below, of the HR crop).
	fake, real := zHat, b.ZH
	if pixelAdv {
		fake, real = discPixels(img), discPixels(b.HR)
	}
	if t.Disc != nil && cfg.AdvShift > 0 {
		var err error
		if fake, real, err = t.shiftCrop(fake, real, r.Child(3)); err != nil {
			return nil, err
		}
	}
	if t.Disc != nil {
		adv := AdvLoss(t.Disc, fake)
		m["adv"] = float64(adv.Item())
		loss = tensor.Add(loss, tensor.Scale(adv, float32(cfg.WAdv)))
	}
	if cfg.Reg != RegNone {
		rs := r.Child(1)
		idx := SampleTrajectories(rs, n, cfg.trajectory())
		eps := tensor.New(zHat.Shape...)
		rs.FillNormal(eps.Data, 0, 1)
		g := Grad(t.Schedule, Scores{Real: t.Teacher.Velocity, Fake: t.Fake.Velocity},
			zHat, b.ZH, eps, idx, DASMWeights(cfg.trajectory()), cfg.lambda())
		tsd := TSDLoss(zHat, g)
		m["tsd"] = float64(tsd.Item())
		loss = tensor.Add(loss, tensor.Scale(tsd, float32(cfg.WTSD)))
	}
	m["loss"] = float64(loss.Item())

	t.OptStudent.ZeroGrad()
	if loss.RequiresGrad() {
		loss.Backward()
	}
	norm := nn.ClipGradNorm(t.OptStudent.Params(), cfg.ClipNorm)
	m["grad_norm"] = norm
	t.OptStudent.LR = t.lrStudent(t.OptStudent.Steps())
	m["lr"] = t.OptStudent.LR
	if !math.IsNaN(norm) && !math.IsInf(norm, 0) {
		t.OptStudent.Step()
		if t.EMA != nil {
			// diffusers' EMA warm-up, as the prior's: (1+n)/(10+n) until the decay.
			n := float64(t.EMA.Updates())
			t.EMA.Decay = min(cfg.EMA, (1+n)/(10+n))
			t.EMA.Update()
		}
	}
	t.OptStudent.ZeroGrad()

	if t.Fake != nil {
		m["fake"], m["fake_grad_norm"] = t.fakeStep(zHat.Detach(), r.Child(2))
		m["lr_fake"] = t.OptFake.LR
	}
	if t.Disc != nil {
		m["disc"], m["disc_grad_norm"] = t.discStep(real, fake.Detach())
		m["lr_disc"] = t.OptDisc.LR
	}
	return m, nil
}

// shiftCrop crops fake and real [N, C, h, w] alike to (h - s, w - s) at
// an offset drawn from r in [0, s)^2, s = Config.AdvShift (see there).
// The cropped side must stay a multiple of the discriminator's patch.
func (t *Trainer) shiftCrop(fake, real *tensor.Tensor, r *rng.Rand) (*tensor.Tensor, *tensor.Tensor, error) {
	s, p := t.Config.AdvShift, t.Disc.Patch()
	h, w := fake.Shape[2], fake.Shape[3]
	if h-s <= 0 || w-s <= 0 || (h-s)%p != 0 || (w-s)%p != 0 {
		return nil, nil, fmt.Errorf("distill: adversarial shift %d leaves %dx%d of the %dx%d discriminator input, want a positive multiple of its %d patch",
			s, h-s, w-s, h, w, p)
	}
	dy, dx := r.IntN(s), r.IntN(s)
	crop := func(x *tensor.Tensor) *tensor.Tensor {
		return tensor.Slice(tensor.Slice(x, 2, dy, dy+h-s), 3, dx, dx+w-s)
	}
	return crop(fake), crop(real), nil
}

// fakeStep trains the fake score one step on the student's outputs x0:
// a fresh index per sample from [IndexLo, IndexHi), fresh noise, FakeLoss.
// It returns the loss and the gradient norm before clipping.
func (t *Trainer) fakeStep(x0 *tensor.Tensor, r *rng.Rand) (loss, norm float64) {
	n := x0.Shape[0]
	sig := make([]float32, n)
	for i := range sig {
		sig[i] = t.Schedule.Sigma(flow.UniformIndex(r, IndexLo, IndexHi))
	}
	eps := tensor.New(x0.Shape...)
	r.FillNormal(eps.Data, 0, 1)
	t.OptFake.ZeroGrad()
	return t.descend(t.OptFake, t.lrFake, FakeLoss(t.Fake.Velocity, x0, eps, sig))
}

// descend back-propagates l into opt's parameters (whose gradients the
// caller has zeroed), clips them, sets the learning rate from sched and
// steps unless the gradient norm is not finite; it returns the loss and
// the norm before clipping.
func (t *Trainer) descend(opt *nn.AdamW, sched nn.Schedule, l *tensor.Tensor) (loss, norm float64) {
	l.Backward()
	norm = nn.ClipGradNorm(opt.Params(), t.Config.ClipNorm)
	opt.LR = sched(opt.Steps())
	if !math.IsNaN(norm) && !math.IsInf(norm, 0) {
		opt.Step()
	}
	opt.ZeroGrad()
	return float64(l.Item()), norm
}

// Decode is the TAESD3 decoding of scaled latents z (s = taesd.LatentScale),
// [N, 3, 8h, 8w] in about [0, 1], recording the graph back to z.
func Decode(dec *taesd.Decoder, z *tensor.Tensor) *tensor.Tensor {
	return dec.Forward(tensor.Scale(z, 1/taesd.LatentScale))
}

// PixelLoss is the pixel term standing in for TSD-SR's LPIPS (whose
// ImageNet backbone is not available here): the Charbonnier distance
// mean(sqrt((img - x)^2 + 1e-6)) between the decoded output img (Decode)
// and the HR crops x in [0, 1], a smooth L1 that gradients flow through.
func PixelLoss(img, hr *tensor.Tensor) *tensor.Tensor {
	if !tensor.SameShape(img.Shape, hr.Shape) {
		panic(fmt.Sprintf("distill.PixelLoss: decoded %v, HR %v", img.Shape, hr.Shape))
	}
	d := tensor.Sub(img, hr)
	return tensor.Mean(tensor.Sqrt(tensor.AddScalar(tensor.Square(d), 1e-6)))
}

// SSIMLoss is 1 - SSIM between the decoded output img and the HR crops hr
// ([N, 3, H, W] in [0, 1]) on luma, as the evaluation measures it (pyiqa's
// SSIM: ITU-R BT.601 Y, an 11-tap Gaussian window of sigma 1.5, valid
// positions, C1 = 0.01^2 and C2 = 0.03^2 on the [0, 1] scale), without
// pyiqa's downsampling of sides above 256 so that crops of any size weigh
// the same texture scale. Gradients flow to img.
func SSIMLoss(img, hr *tensor.Tensor) *tensor.Tensor {
	if !tensor.SameShape(img.Shape, hr.Shape) || len(img.Shape) != 4 || img.Shape[1] != 3 {
		panic(fmt.Sprintf("distill.SSIMLoss: decoded %v, HR %v, want matching [N, 3, H, W]", img.Shape, hr.Shape))
	}
	if img.Shape[2] < ssimTaps || img.Shape[3] < ssimTaps {
		panic(fmt.Sprintf("distill.SSIMLoss: %v is smaller than the %d-pixel window", img.Shape, ssimTaps))
	}
	win := ssimWindow()
	blur := func(x *tensor.Tensor) *tensor.Tensor { return tensor.Conv2d(x, win, nil, 1, 0) }
	x, y := luma(img), luma(hr)
	mx, my := blur(x), blur(y)
	mxx, myy, mxy := tensor.Mul(mx, mx), tensor.Mul(my, my), tensor.Mul(mx, my)
	sxx := tensor.Sub(blur(tensor.Mul(x, x)), mxx)
	syy := tensor.Sub(blur(tensor.Mul(y, y)), myy)
	sxy := tensor.Sub(blur(tensor.Mul(x, y)), mxy)
	const c1, c2 = 0.01 * 0.01, 0.03 * 0.03
	num := tensor.Mul(tensor.AddScalar(tensor.Scale(mxy, 2), c1), tensor.AddScalar(tensor.Scale(sxy, 2), c2))
	den := tensor.Mul(tensor.AddScalar(tensor.Add(mxx, myy), c1), tensor.AddScalar(tensor.Add(sxx, syy), c2))
	return tensor.AddScalar(tensor.Neg(tensor.Mean(tensor.Div(num, den))), 1)
}

const ssimTaps = 11

// GridLoss is the square of metrics' grid of img ([N, 3, H, W] in [0, 1],
// H and W above 2 x metrics.GridPeriod) pooled over the batch: the mean
// absolute luma step between neighbours (horizontal and vertical steps
// alike) at each of the 16 positions modulo metrics.GridPeriod, relative
// to its mean, and the power of that profile's odd harmonics, the
// structure of period 16 exactly. Steps are smoothed (sqrt(d^2 + 1e-6))
// so that gradients are defined at flat pixels. The student's tokens sit
// at the same phase in every crop, so pooling the batch keeps the grid.
func GridLoss(img *tensor.Tensor) *tensor.Tensor {
	const p = metrics.GridPeriod
	if len(img.Shape) != 4 || img.Shape[1] != 3 || img.Shape[2] <= 2*p || img.Shape[3] <= 2*p {
		panic(fmt.Sprintf("distill.GridLoss: %v, want [N, 3, H, W] with sides above %d", img.Shape, 2*p))
	}
	y := luma(img)
	n, h, w := y.Shape[0], y.Shape[2], y.Shape[3]
	step := func(d *tensor.Tensor) *tensor.Tensor { return tensor.Sqrt(tensor.AddScalar(tensor.Square(d), 1e-6)) }
	// Horizontal steps c -> c+1 at phase c mod p, whole periods only: [n*h*(w'/p), p] -> [p].
	wc := (w - 1) / p * p
	dx := step(tensor.Sub(tensor.Slice(y, 3, 1, wc+1), tensor.Slice(y, 3, 0, wc)))
	px := tensor.MeanAxis(tensor.Reshape(dx, n*h*wc/p, p), 0, false)
	// Vertical steps r -> r+1 at phase r mod p: [n, 1, h'/p, p, w] -> [p].
	hc := (h - 1) / p * p
	dy := step(tensor.Sub(tensor.Slice(y, 2, 1, hc+1), tensor.Slice(y, 2, 0, hc)))
	py := tensor.MeanAxis(tensor.Reshape(tensor.Permute(tensor.Reshape(dy, n*hc/p, p, w), 0, 2, 1), n*hc/p*w, p), 0, false)
	prof := tensor.Scale(tensor.Add(px, py), 0.5)
	rel := tensor.AddScalar(tensor.Div(prof, tensor.Mean(prof)), -1) // [p]
	// The odd harmonics' cosine and sine parts, amplitude 2|X_h|/p.
	basis := tensor.New(p, p/2)
	for k := range p {
		for j, hm := 0, 1; hm < p/2; j, hm = j+2, hm+2 {
			a := 2 * math.Pi * float64(hm*k) / p
			basis.Data[k*(p/2)+j] = float32(2 * math.Cos(a) / p)
			basis.Data[k*(p/2)+j+1] = float32(2 * math.Sin(a) / p)
		}
	}
	amp := tensor.MatMul(tensor.Reshape(rel, 1, p), basis)
	return tensor.Sum(tensor.Square(amp))
}

// ssimWindow is the normalised 11 x 11 Gaussian of sigma 1.5, [1, 1, 11, 11].
func ssimWindow() *tensor.Tensor {
	g := make([]float64, ssimTaps)
	var sum float64
	for i := range g {
		d := float64(i - ssimTaps/2)
		g[i] = math.Exp(-d * d / (2 * 1.5 * 1.5))
		sum += g[i]
	}
	w := tensor.New(1, 1, ssimTaps, ssimTaps)
	for i := range ssimTaps {
		for j := range ssimTaps {
			w.Data[i*ssimTaps+j] = float32(g[i] * g[j] / (sum * sum))
		}
	}
	return w
}

// luma is BT.601 Y of RGB x [N, 3, H, W] in [0, 1] (16/255 to 235/255), [N, 1, H, W].
func luma(x *tensor.Tensor) *tensor.Tensor {
	ch := tensor.Split(x, 1, 1, 1, 1)
	y := tensor.Add(tensor.Add(tensor.Scale(ch[0], 65.481/255), tensor.Scale(ch[1], 128.553/255)), tensor.Scale(ch[2], 24.966/255))
	return tensor.AddScalar(y, 16.0/255)
}

// discPixels maps images in [0, 1] to the pixel discriminator's [-1, 1].
func discPixels(x *tensor.Tensor) *tensor.Tensor {
	return tensor.AddScalar(tensor.Scale(x, 2), -1)
}

// Describe is a one-line summary of the trainable parameter counts.
func (t *Trainer) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "student %d trainable of %d", nn.Count(t.OptStudent.Params()), t.Student.Params.Count())
	if t.Fake != nil {
		fmt.Fprintf(&b, ", fake score %d trainable", nn.Count(t.OptFake.Params()))
	}
	if t.Disc != nil {
		fmt.Fprintf(&b, ", discriminator %d", nn.Count(t.OptDisc.Params()))
	}
	return b.String()
}
