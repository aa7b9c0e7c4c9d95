// Package taesd is TAESD3, a tiny autoencoder between RGB images and the
// 16-channel, 8x-downsampled latent space of Stable Diffusion 3 (by Ollin
// Boer Bohan, MIT). TSD-SR works in SD3's latent space; TAESD3 reaches it
// with about 1.2 M parameters per side instead of the 84 M of SD3's VAE, so
// encoding and decoding cost seconds, not minutes, on a CPU.
//
// The layout is the published taesd.py one, and parameter names are its
// nn.Sequential indices, exactly as in the released safetensors files:
//
//	Encoder: conv(3,64), Block, [conv stride 2 no bias, Block x3] x3, conv(64,16)
//	Decoder: tanh(x/3)*3, conv(16,64), ReLU, [Block x3, Upsample x2, conv no bias] x3, Block, conv(64,3)
//	Block:   ReLU(conv-ReLU-conv-ReLU-conv(x) + skip(x)), skip a 1x1 conv when channels differ
//
// Images are NCHW in [0, 1]; latents are raw SD3 VAE latents. The scaling
// TSD-SR applies before its transformer is explicit in LatentScale/Shift.
package taesd

import (
	_ "embed"
	"fmt"

	"tsdsr/nn"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// SD3's latent normalisation. TSD-SR multiplies raw latents by the scale
// before the transformer and does not subtract the shift (SD3's pipeline
// does); both stay explicit so either convention can be chosen.
const (
	LatentScale float32 = 1.5305
	LatentShift float32 = 0.0609
)

// Factor is the spatial downsampling between images and latents.
const Factor = 8

//go:embed weights/taesd3_encoder.safetensors
var encoderWeights []byte

//go:embed weights/taesd3_decoder.safetensors
var decoderWeights []byte

// block is TAESD's residual block.
type block struct {
	c0, c2, c4 *nn.Conv2d
	skip       *nn.Conv2d // nil: identity
}

func (b *block) forward(x *tensor.Tensor) *tensor.Tensor {
	h := tensor.ReLU(b.c0.Forward(x))
	h = tensor.ReLU(b.c2.Forward(h))
	h = b.c4.Forward(h)
	s := x
	if b.skip != nil {
		s = b.skip.Forward(x)
	}
	return tensor.ReLU(tensor.Add(h, s))
}

// net is an nn.Sequential: each layer maps a tensor to a tensor.
type net struct {
	layers []func(*tensor.Tensor) *tensor.Tensor
	// Params holds the weights under their safetensors names; attach LoRA
	// adapters to its convolutions with nn.AttachLoRA.
	Params *nn.Params
}

func (n *net) forward(x *tensor.Tensor) *tensor.Tensor {
	for _, f := range n.layers {
		x = f(x)
	}
	return x
}

// Layouts of the two networks: "c" conv 3x3, "d" conv stride 2 without
// bias, "u" conv without bias, "b" Block, "r" ReLU, "t" clamp, "^" upsample.
const (
	encoderLayout = "cbdbbbdbbbdbbbc"
	decoderLayout = "tcrbbb^ubbb^ubbb^ubc"
)

// build registers the layers of a layout in a new Params (weights start at
// zero: they are loaded next). in and out are the first conv's input and
// the last conv's output channels; every other width is 64.
func build(layout string, in, out int) *net {
	const width = 64
	p := nn.NewParams(nil)
	n := &net{Params: p}
	ch := in
	for i, k := range layout {
		name := fmt.Sprint(i)
		conv := func(name string, cin, cout, stride int, bias bool) *nn.Conv2d {
			return nn.NewConv2d(p, name, nn.Conv2dConfig{In: cin, Out: cout, Kernel: 3, Stride: stride, Padding: 1, NoBias: !bias})
		}
		var f func(*tensor.Tensor) *tensor.Tensor
		switch k {
		case 'c':
			cout := width
			if i == len(layout)-1 {
				cout = out
			}
			f = conv(name, ch, cout, 1, true).Forward
			ch = cout
		case 'd':
			f = conv(name, ch, width, 2, false).Forward
		case 'u':
			f = conv(name, ch, width, 1, false).Forward
		case 'b':
			b := &block{
				c0: conv(name+".conv.0", ch, width, 1, true),
				c2: conv(name+".conv.2", width, width, 1, true),
				c4: conv(name+".conv.4", width, width, 1, true),
			}
			if ch != width {
				b.skip = nn.NewConv2d(p, name+".skip", nn.Conv2dConfig{In: ch, Out: width, Kernel: 1, NoBias: true})
			}
			f, ch = b.forward, width
		case 'r':
			f = tensor.ReLU
		case 't': // soft clamp of latents to about [-3, 3]
			f = func(x *tensor.Tensor) *tensor.Tensor { return tensor.Scale(tensor.Tanh(tensor.Scale(x, 1.0/3)), 3) }
		case '^':
			f = tensor.Upsample2x
		default:
			panic("taesd: bad layout " + layout)
		}
		n.layers = append(n.layers, f)
	}
	return n
}

// load builds a net and reads every weight from f, strictly: missing,
// mis-shaped and unexpected tensors are errors naming them. Weights are
// frozen; unfreeze (or attach LoRA) to train.
func load(f *safetensors.File, layout string, in, out int) (*net, error) {
	n := build(layout, in, out)
	if _, err := n.Params.Load(f, true); err != nil {
		return nil, fmt.Errorf("taesd: %w", err)
	}
	n.Params.Freeze()
	return n, nil
}

// Encoder maps images [N, 3, H, W] in [0, 1] to raw latents
// [N, 16, H/8, W/8]; H and W must be multiples of 8.
type Encoder struct{ net }

// Decoder maps raw latents [N, 16, h, w] to images [N, 3, 8h, 8w], nominally
// in [0, 1] (not clamped: callers clamp when they make pixels).
type Decoder struct{ net }

// LoadEncoder reads an encoder from a parsed TAESD3 safetensors file.
func LoadEncoder(f *safetensors.File) (*Encoder, error) {
	n, err := load(f, encoderLayout, 3, 16)
	if err != nil {
		return nil, err
	}
	return &Encoder{*n}, nil
}

// LoadDecoder reads a decoder from a parsed TAESD3 safetensors file.
func LoadDecoder(f *safetensors.File) (*Decoder, error) {
	n, err := load(f, decoderLayout, 16, 3)
	if err != nil {
		return nil, err
	}
	return &Decoder{*n}, nil
}

// Embedded returns the TAESD3 encoder and decoder built into the binary.
func Embedded() (*Encoder, *Decoder, error) {
	fe, err := safetensors.Parse(encoderWeights)
	if err != nil {
		return nil, nil, err
	}
	fd, err := safetensors.Parse(decoderWeights)
	if err != nil {
		return nil, nil, err
	}
	e, err := LoadEncoder(fe)
	if err != nil {
		return nil, nil, err
	}
	d, err := LoadDecoder(fd)
	if err != nil {
		return nil, nil, err
	}
	return e, d, nil
}

// Forward encodes images x [N, 3, H, W] (H, W multiples of 8).
func (e *Encoder) Forward(x *tensor.Tensor) *tensor.Tensor {
	if x.Dim() != 4 || x.Shape[1] != 3 || x.Shape[2]%Factor != 0 || x.Shape[3]%Factor != 0 {
		panic(fmt.Sprintf("taesd.Encoder: input shape %v, want [N, 3, 8k, 8m]", x.Shape))
	}
	return e.forward(x)
}

// Forward decodes latents z [N, 16, h, w].
func (d *Decoder) Forward(z *tensor.Tensor) *tensor.Tensor {
	if z.Dim() != 4 || z.Shape[1] != 16 {
		panic(fmt.Sprintf("taesd.Decoder: input shape %v, want [N, 16, h, w]", z.Shape))
	}
	return d.forward(z)
}
