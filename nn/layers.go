package nn

import (
	"fmt"
	"math"

	"tsdsr/rng"
	"tsdsr/tensor"
)

// Linear is a fully connected layer, y = x W^T + b, with PyTorch's layout.
type Linear struct {
	Weight *tensor.Tensor // [out, in]
	Bias   *tensor.Tensor // [out], nil without bias
	// LoRA is the attached adapter (see AttachLoRA), nil when none.
	LoRA *LoRA
}

// NewLinear registers "<name>.weight" (and "<name>.bias") in p and returns
// the layer, initialised as torch.nn.Linear: weight and bias uniform in
// +-1/sqrt(in) (kaiming-uniform with a = sqrt(5)).
func NewLinear(p *Params, name string, in, out int, bias bool) *Linear {
	if in <= 0 || out <= 0 {
		panic(fmt.Sprintf("nn.NewLinear %q: in %d, out %d", p.prefix+name, in, out))
	}
	s := p.Sub(name)
	l := &Linear{Weight: s.newParam("weight", uniformInit(in), out, in)}
	if bias {
		l.Bias = s.newParam("bias", uniformInit(in), out)
	}
	p.addModule(name, l)
	return l
}

// Forward applies the layer to x [..., in], giving [..., out], plus the
// adapter's low-rank update when one is attached and not merged.
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := tensor.Linear(x, l.Weight, l.Bias) // [..., out]
	if l.LoRA != nil && !l.LoRA.merged {
		y = tensor.Add(y, l.LoRA.forward(x))
	}
	return y
}

// Conv2dConfig gives the geometry of a square-kernel convolution. A zero
// Stride means 1.
type Conv2dConfig struct {
	In, Out, Kernel, Stride, Padding int
	NoBias                           bool
}

// Conv2d is a 2-D convolution over NCHW input (see tensor.Conv2d).
type Conv2d struct {
	Weight          *tensor.Tensor // [out, in, k, k]
	Bias            *tensor.Tensor // [out], nil without bias
	Stride, Padding int
	// LoRA is the attached adapter (see AttachLoRA), nil when none.
	LoRA *LoRA
}

// NewConv2d registers "<name>.weight" (and "<name>.bias") in p and returns
// the layer, initialised as torch.nn.Conv2d: uniform in +-1/sqrt(fan_in),
// fan_in = in*k*k.
func NewConv2d(p *Params, name string, c Conv2dConfig) *Conv2d {
	if c.Stride == 0 {
		c.Stride = 1
	}
	if c.In <= 0 || c.Out <= 0 || c.Kernel <= 0 || c.Stride < 0 || c.Padding < 0 {
		panic(fmt.Sprintf("nn.NewConv2d %q: invalid config %+v", p.prefix+name, c))
	}
	s := p.Sub(name)
	fanIn := c.In * c.Kernel * c.Kernel
	l := &Conv2d{
		Weight: s.newParam("weight", uniformInit(fanIn), c.Out, c.In, c.Kernel, c.Kernel),
		Stride: c.Stride, Padding: c.Padding,
	}
	if !c.NoBias {
		l.Bias = s.newParam("bias", uniformInit(fanIn), c.Out)
	}
	p.addModule(name, l)
	return l
}

// Forward convolves x [N, in, H, W], giving [N, out, Ho, Wo], plus the
// adapter's update when one is attached and not merged.
func (l *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := tensor.Conv2d(x, l.Weight, l.Bias, l.Stride, l.Padding) // [N, out, Ho, Wo]
	if l.LoRA != nil && !l.LoRA.merged {
		y = tensor.Add(y, l.LoRA.forward(x))
	}
	return y
}

// LayerNorm normalises the last dimension (see tensor.LayerNorm).
type LayerNorm struct {
	Weight, Bias *tensor.Tensor // [dim] each, nil without affine
	Eps          float32
}

// NewLayerNorm returns a LayerNorm over dim features; with affine it
// registers "<name>.weight" (ones) and "<name>.bias" (zeros), as
// torch.nn.LayerNorm(elementwise_affine=True).
func NewLayerNorm(p *Params, name string, dim int, eps float32, affine bool) *LayerNorm {
	l := &LayerNorm{Eps: eps}
	if affine {
		s := p.Sub(name)
		l.Weight = s.newParam("weight", nil, dim)
		fill(l.Weight.Data, 1)
		l.Bias = s.newParam("bias", nil, dim)
	}
	return l
}

// Forward normalises x [..., dim].
func (l *LayerNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.LayerNorm(x, l.Weight, l.Bias, l.Eps)
}

// RMSNorm scales the last dimension by its inverse root mean square (see
// tensor.RMSNorm); SD3.5 uses it for the query/key norms of attention.
type RMSNorm struct {
	Weight *tensor.Tensor // [dim], nil without affine
	Eps    float32
}

// NewRMSNorm returns an RMSNorm over dim features; with affine it registers
// "<name>.weight" (ones), as diffusers' RMSNorm(elementwise_affine=True).
func NewRMSNorm(p *Params, name string, dim int, eps float32, affine bool) *RMSNorm {
	l := &RMSNorm{Eps: eps}
	if affine {
		l.Weight = p.Sub(name).newParam("weight", nil, dim)
		fill(l.Weight.Data, 1)
	}
	return l
}

// Forward normalises x [..., dim].
func (l *RMSNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.RMSNorm(x, l.Weight, l.Eps)
}

// GroupNorm normalises groups of channels of NCHW input (see tensor.GroupNorm).
type GroupNorm struct {
	Groups       int
	Weight, Bias *tensor.Tensor // [channels] each
	Eps          float32
}

// NewGroupNorm registers "<name>.weight" (ones) and "<name>.bias" (zeros),
// as torch.nn.GroupNorm(groups, channels, eps).
func NewGroupNorm(p *Params, name string, groups, channels int, eps float32) *GroupNorm {
	if groups <= 0 || channels%groups != 0 {
		panic(fmt.Sprintf("nn.NewGroupNorm %q: %d groups for %d channels", p.prefix+name, groups, channels))
	}
	s := p.Sub(name)
	l := &GroupNorm{Groups: groups, Eps: eps}
	l.Weight = s.newParam("weight", nil, channels)
	fill(l.Weight.Data, 1)
	l.Bias = s.newParam("bias", nil, channels)
	return l
}

// Forward normalises x [N, C, ...].
func (l *GroupNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, l.Groups, l.Weight, l.Bias, l.Eps)
}

// uniformInit is PyTorch's default for Linear and Conv weights and biases:
// kaiming_uniform(a=sqrt(5)) has bound gain*sqrt(3/fan_in) with
// gain = sqrt(2/(1+5)), which is 1/sqrt(fan_in), the bias bound too.
func uniformInit(fanIn int) func(r *rng.Rand, d []float32) {
	bound := float32(1 / math.Sqrt(float64(fanIn)))
	return func(r *rng.Rand, d []float32) { r.FillUniform(d, -bound, bound) }
}

func fill(d []float32, v float32) {
	for i := range d {
		d[i] = v
	}
}
