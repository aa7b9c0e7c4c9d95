package distill

import (
	"fmt"

	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/tensor"
)

// Discriminator is a patch discriminator, the adversarial term beyond the
// paper (Config.WAdv): score distillation against our small prior pulls
// the student toward the prior's smooth samples, while a discriminator that
// tells the student's outputs from HR crops rewards the texture statistics
// of real photos directly, as Real-ESRGAN's GAN term does.
//
// It works on scaled TAESD3 latents (AdvLatent: one logit per 4 x 4 latent
// patch, 32 x 32 pixels), where real and generated inputs share TAESD3's
// decoder and it costs a few percent of a student step, or on the decoded
// pixels against the HR crops (AdvPixel: one logit per 16 x 16 pixels),
// where it also sees the texture the decoder draws from the student's
// latents, the mesh-like pattern session 2's latent discriminator let
// through on harshly degraded photos.
type Discriminator struct {
	Params *nn.Params
	patch  int
	convs  []*nn.Conv2d
	norms  []*nn.GroupNorm // after every convolution but the first and the last
}

// NewDiscriminator builds a discriminator for inputs of the given
// channels: 3x3 to width, downs stride-2 4x4 convolutions doubling the
// width up to the last one (which keeps it) with GroupNorm, a 3x3 to one
// logit, SiLU between; weights drawn from r. Its patch is 2^downs inputs.
func NewDiscriminator(r *rng.Rand, channels, width, downs int) *Discriminator {
	p := nn.NewParams(r)
	d := &Discriminator{Params: p, patch: 1 << downs}
	d.convs = []*nn.Conv2d{nn.NewConv2d(p, "conv_in", nn.Conv2dConfig{In: channels, Out: width, Kernel: 3, Padding: 1})}
	in := width
	for i := range downs {
		out := in
		if i < downs-1 {
			out = 2 * in
		}
		name := fmt.Sprintf("down.%d", i)
		d.convs = append(d.convs, nn.NewConv2d(p, name, nn.Conv2dConfig{In: in, Out: out, Kernel: 4, Stride: 2, Padding: 1}))
		d.norms = append(d.norms, nn.NewGroupNorm(p, name+".norm", 32, out, 1e-5))
		in = out
	}
	d.convs = append(d.convs, nn.NewConv2d(p, "conv_out", nn.Conv2dConfig{In: in, Out: 1, Kernel: 3, Padding: 1}))
	return d
}

// Patch is the side of the input patch behind one logit.
func (d *Discriminator) Patch() int { return d.patch }

// Forward maps inputs [N, C, h, w] (h, w multiples of the patch) to patch
// logits [N, 1, h/patch, w/patch]: positive for "real".
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
