package distill

import (
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// Discriminator is a patch discriminator on scaled TAESD3 latents, the
// adversarial term beyond the paper (Config.WAdv): score distillation
// against our small prior pulls the student toward the prior's smooth
// samples, while a discriminator that tells the student's latents from the
// HR latents rewards the texture statistics of real photos directly, as
// Real-ESRGAN's GAN term does in pixels. It works in latent space (one
// logit per 4 x 4 latent patch, 32 x 32 pixels), where real and generated
// inputs share TAESD3's decoder, so it cannot win on decoder artefacts the
// student could not remove, and costs a few percent of a student step.
type Discriminator struct {
	Params *nn.Params
	convs  []*nn.Conv2d
	norms  []*nn.GroupNorm // after every convolution but the first and the last
}

// NewDiscriminator builds the discriminator for latents of the given
// channels: 3x3 to width, two stride-2 4x4 convolutions to 2*width with
// GroupNorm, a 3x3 to one logit, SiLU between; weights drawn from r.
func NewDiscriminator(r *rng.Rand, channels, width int) *Discriminator {
	p := nn.NewParams(r)
	d := &Discriminator{Params: p}
	w2 := 2 * width
	d.convs = []*nn.Conv2d{
		nn.NewConv2d(p, "conv_in", nn.Conv2dConfig{In: channels, Out: width, Kernel: 3, Padding: 1}),
		nn.NewConv2d(p, "down.0", nn.Conv2dConfig{In: width, Out: w2, Kernel: 4, Stride: 2, Padding: 1}),
		nn.NewConv2d(p, "down.1", nn.Conv2dConfig{In: w2, Out: w2, Kernel: 4, Stride: 2, Padding: 1}),
		nn.NewConv2d(p, "conv_out", nn.Conv2dConfig{In: w2, Out: 1, Kernel: 3, Padding: 1}),
	}
	d.norms = []*nn.GroupNorm{nn.NewGroupNorm(p, "down.0.norm", 32, w2, 1e-5), nn.NewGroupNorm(p, "down.1.norm", 32, w2, 1e-5)}
	return d
}

// Forward maps latents [N, C, h, w] (h, w multiples of 4) to patch logits
// [N, 1, h/4, w/4]: positive for "real".
func (d *Discriminator) Forward(z *tensor.Tensor) *tensor.Tensor {
	x := tensor.SiLU(d.convs[0].Forward(z))
	for i, n := range d.norms {
		x = tensor.SiLU(n.Forward(d.convs[i+1].Forward(x)))
	}
	return d.convs[len(d.convs)-1].Forward(x)
}

// DiscLoss is the hinge loss of the discriminator:
// mean(relu(1 - D(real))) + mean(relu(1 + D(fake))).
func DiscLoss(d *Discriminator, real, fake *tensor.Tensor) *tensor.Tensor {
	lr := tensor.Mean(tensor.ReLU(tensor.AddScalar(tensor.Neg(d.Forward(real)), 1)))
	lf := tensor.Mean(tensor.ReLU(tensor.AddScalar(d.Forward(fake), 1)))
	return tensor.Add(lr, lf)
}

// AdvLoss is the student's hinge adversarial loss -mean(D(fake)); its
// gradient reaches the discriminator's weights too, which discStep clears.
func AdvLoss(d *Discriminator, fake *tensor.Tensor) *tensor.Tensor {
	return tensor.Neg(tensor.Mean(d.Forward(fake)))
}

// discStep trains the discriminator one step on the HR latents against the
// student's (detached) outputs, returning its loss and gradient norm
// before clipping.
func (t *Trainer) discStep(real, fake *tensor.Tensor) (loss, norm float64) {
	t.OptDisc.ZeroGrad() // the student's adversarial loss reached these weights
	return t.descend(t.OptDisc, t.lrDisc, DiscLoss(t.Disc, real, fake))
}
