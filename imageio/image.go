// Package imageio reads and writes the photos tsdsr works on, as planar
// float32 images, keeping what users care about: bit depth, gray-ness and
// alpha. It refuses decompression bombs before decoding pixels and writes
// files atomically.
package imageio

import "fmt"

// Image is a planar float32 picture with values in [0, 1].
//
// Pix holds Channels planes of Width*Height values, row-major, one plane
// after another (RGB order for colour). Alpha, when not nil, is one more
// plane kept apart because models never see it. BitDepth (8 or 16) is the
// depth of the source, so that writing can preserve it.
type Image struct {
	Width, Height int
	Channels      int // 1 (gray) or 3 (RGB)
	Pix           []float32
	Alpha         []float32
	BitDepth      int
}

// NewImage returns a black image with the given size and colour channels
// (1 or 3), 8-bit, without alpha.
func NewImage(width, height, channels int) *Image {
	return &Image{Width: width, Height: height, Channels: channels,
		Pix: make([]float32, width*height*channels), BitDepth: 8}
}

// Plane returns colour channel c as a slice of Width*Height values.
func (m *Image) Plane(c int) []float32 {
	n := m.Width * m.Height
	return m.Pix[c*n : (c+1)*n]
}

// RGB returns the colour planes as three planes of Width*Height values
// ([3, H, W] row-major, the layout of a model input): Pix itself for a
// colour image, the gray plane replicated for a gray one. Alpha is not
// part of it.
func (m *Image) RGB() []float32 {
	if m.Channels == 3 {
		return m.Pix
	}
	n := m.Width * m.Height
	rgb := make([]float32, 3*n)
	for c := range 3 {
		copy(rgb[c*n:], m.Pix[:n])
	}
	return rgb
}

// Validate checks that the slices match the declared size.
func (m *Image) Validate() error {
	n := m.Width * m.Height
	switch {
	case m.Width <= 0 || m.Height <= 0:
		return fmt.Errorf("imageio: empty image %dx%d", m.Width, m.Height)
	case m.Channels != 1 && m.Channels != 3:
		return fmt.Errorf("imageio: %d colour channels, want 1 or 3", m.Channels)
	case len(m.Pix) != n*m.Channels:
		return fmt.Errorf("imageio: %d values for %dx%dx%d", len(m.Pix), m.Width, m.Height, m.Channels)
	case m.Alpha != nil && len(m.Alpha) != n:
		return fmt.Errorf("imageio: alpha has %d values for %dx%d", len(m.Alpha), m.Width, m.Height)
	}
	return nil
}
