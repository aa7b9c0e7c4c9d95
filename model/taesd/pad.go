package taesd

import "tsdsr/tensor"

// PadToFactor pads images [1, C, H, W] on the bottom and right to
// multiples of Factor (reflect where the image is large enough, else
// replicate), so any size can be encoded; Crop undoes it on the decoded
// image.
func PadToFactor(x *tensor.Tensor) *tensor.Tensor {
	h, w := x.Shape[2], x.Shape[3]
	ph, pw := (Factor-h%Factor)%Factor, (Factor-w%Factor)%Factor
	if ph == 0 && pw == 0 {
		return x
	}
	mode := tensor.PadReflect
	if ph >= h || pw >= w {
		mode = tensor.PadReplicate
	}
	return tensor.Pad2d(x, 0, ph, 0, pw, mode)
}

// Crop returns the top-left h x w window of x [1, C, H, W].
func Crop(x *tensor.Tensor, h, w int) *tensor.Tensor {
	if x.Shape[2] == h && x.Shape[3] == w {
		return x
	}
	return crop(x, 0, h, 0, w)
}
