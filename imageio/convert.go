package imageio

import (
	"image"
	"image/color"
)

// lut8 maps an 8-bit sample to v/255 exactly as float32(v)/255.
var lut8 = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return
}()

func from16(v uint16) float32 { return float32(v) / 65535 }

// FromStdImage converts a Go image to planar float32.
//
// *image.Gray and *image.Gray16, and paletted images whose palette is all
// gray, give Channels 1; everything else gives RGB. An alpha plane is kept
// for types with straight alpha (NRGBA, NRGBA64, NYCbCrA), for paletted
// images with a translucent entry, and for premultiplied RGBA/RGBA64 images
// that are not opaque (their colours are un-premultiplied). BitDepth is 16
// for 16-bit types, else 8. Common types are converted directly; others go
// through color.NRGBA64Model.
func FromStdImage(img image.Image) *Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	n := w * h
	switch s := img.(type) {
	case *image.Gray:
		m := NewImage(w, h, 1)
		for y := range h {
			row := s.Pix[(y)*s.Stride:]
			for x := range w {
				m.Pix[y*w+x] = lut8[row[x]]
			}
		}
		return m
	case *image.Gray16:
		m := NewImage(w, h, 1)
		m.BitDepth = 16
		for y := range h {
			row := s.Pix[y*s.Stride:]
			for x := range w {
				m.Pix[y*w+x] = from16(uint16(row[2*x])<<8 | uint16(row[2*x+1]))
			}
		}
		return m
	case *image.NRGBA:
		return fromRGBA(s.Pix, s.Stride, w, h, false, true)
	case *image.NRGBA64:
		return fromRGBA(s.Pix, s.Stride, w, h, true, true)
	case *image.RGBA:
		if s.Opaque() {
			return fromRGBA(s.Pix, s.Stride, w, h, false, false)
		}
	case *image.RGBA64:
		if s.Opaque() {
			return fromRGBA(s.Pix, s.Stride, w, h, true, false)
		}
	case *image.YCbCr:
		return fromYCbCr(s)
	case *image.NYCbCrA: // lossy WebP with alpha
		m := fromYCbCr(&s.YCbCr)
		m.Alpha = make([]float32, n)
		for y := range h {
			for x := range w {
				m.Alpha[y*w+x] = lut8[s.A[s.AOffset(b.Min.X+x, b.Min.Y+y)]]
			}
		}
		return m
	case *image.CMYK:
		m := NewImage(w, h, 3)
		r, g, bl := m.Plane(0), m.Plane(1), m.Plane(2)
		for y := range h {
			row := s.Pix[y*s.Stride:]
			for x := range w {
				p := row[4*x : 4*x+4]
				cr, cg, cb := color.CMYKToRGB(p[0], p[1], p[2], p[3])
				i := y*w + x
				r[i], g[i], bl[i] = lut8[cr], lut8[cg], lut8[cb]
			}
		}
		return m
	case *image.Paletted:
		return fromPaletted(s)
	}
	return fromGeneric(img)
}

// fromRGBA converts w x h pixels of R, G, B, A samples, rows stride
// bytes apart, to RGB: 8-bit samples, or big-endian 16-bit ones with deep
// (the image then has BitDepth 16). The alpha plane is kept when alpha is
// set (straight alpha; opaque premultiplied pixels are read without).
func fromRGBA(pix []uint8, stride, w, h int, deep, alpha bool) *Image {
	m := NewImage(w, h, 3)
	if deep {
		m.BitDepth = 16
	}
	if alpha {
		m.Alpha = make([]float32, w*h)
	}
	r, g, bl := m.Plane(0), m.Plane(1), m.Plane(2)
	for y := range h {
		row := pix[y*stride:]
		for x := range w {
			i := y*w + x
			if deep {
				p := row[8*x : 8*x+8]
				r[i] = from16(uint16(p[0])<<8 | uint16(p[1]))
				g[i] = from16(uint16(p[2])<<8 | uint16(p[3]))
				bl[i] = from16(uint16(p[4])<<8 | uint16(p[5]))
				if alpha {
					m.Alpha[i] = from16(uint16(p[6])<<8 | uint16(p[7]))
				}
				continue
			}
			p := row[4*x : 4*x+4]
			r[i], g[i], bl[i] = lut8[p[0]], lut8[p[1]], lut8[p[2]]
			if alpha {
				m.Alpha[i] = lut8[p[3]]
			}
		}
	}
	return m
}

// fromYCbCr converts with color.YCbCrToRGB, the conversion image/jpeg and
// YCbCr.At use.
func fromYCbCr(s *image.YCbCr) *Image {
	b := s.Bounds()
	w, h := b.Dx(), b.Dy()
	m := NewImage(w, h, 3)
	r, g, bl := m.Plane(0), m.Plane(1), m.Plane(2)
	for y := range h {
		for x := range w {
			yi, ci := s.YOffset(b.Min.X+x, b.Min.Y+y), s.COffset(b.Min.X+x, b.Min.Y+y)
			cr, cg, cb := color.YCbCrToRGB(s.Y[yi], s.Cb[ci], s.Cr[ci])
			i := y*w + x
			r[i], g[i], bl[i] = lut8[cr], lut8[cg], lut8[cb]
		}
	}
	return m
}

// fromPaletted looks every index up in a float table built once from the
// palette. Indices past the palette's end read as opaque black, as in
// image.Paletted.At.
func fromPaletted(s *image.Paletted) *Image {
	b := s.Bounds()
	w, h := b.Dx(), b.Dy()
	var tab [256][4]float32
	gray, translucent := true, false
	for i := range tab {
		tab[i][3] = 1
		if i < len(s.Palette) {
			c := color.NRGBAModel.Convert(s.Palette[i]).(color.NRGBA)
			tab[i] = [4]float32{lut8[c.R], lut8[c.G], lut8[c.B], lut8[c.A]}
			gray = gray && c.R == c.G && c.G == c.B
			translucent = translucent || c.A != 0xff
		}
	}
	ch := 3
	if gray {
		ch = 1
	}
	m := NewImage(w, h, ch)
	if translucent {
		m.Alpha = make([]float32, w*h)
	}
	n := w * h
	for y := range h {
		row := s.Pix[y*s.Stride:]
		for x := range w {
			i, e := y*w+x, &tab[row[x]]
			for c := range ch {
				m.Pix[c*n+i] = e[c]
			}
			if translucent {
				m.Alpha[i] = e[3]
			}
		}
	}
	return m
}

// fromGeneric converts any image through straight-alpha NRGBA64, keeping
// alpha only when some pixel is not opaque.
func fromGeneric(img image.Image) *Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	m := NewImage(w, h, 3)
	m.Alpha = make([]float32, w*h)
	switch img.ColorModel() {
	case color.RGBA64Model, color.NRGBA64Model, color.Gray16Model, color.Alpha16Model:
		m.BitDepth = 16
	}
	r, g, bl := m.Plane(0), m.Plane(1), m.Plane(2)
	opaque := true
	for y := range h {
		for x := range w {
			c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
			i := y*w + x
			if m.BitDepth == 16 {
				r[i], g[i], bl[i], m.Alpha[i] = from16(c.R), from16(c.G), from16(c.B), from16(c.A)
			} else {
				r[i], g[i], bl[i], m.Alpha[i] = lut8[c.R>>8], lut8[c.G>>8], lut8[c.B>>8], lut8[c.A>>8]
			}
			opaque = opaque && c.A == 0xffff
		}
	}
	if opaque {
		m.Alpha = nil
	}
	return m
}

// ToStdImage converts m to a Go image: *image.Gray or *image.Gray16 for gray
// without alpha, *image.NRGBA or *image.NRGBA64 otherwise (gray with alpha
// is replicated into RGB; a missing alpha plane is opaque). BitDepth 16
// picks the 16-bit types. Values are clamped to [0, 1] and rounded to the
// nearest level (see Quantize).
func (m *Image) ToStdImage() image.Image {
	w, h, n := m.Width, m.Height, m.Width*m.Height
	r := image.Rect(0, 0, w, h)
	plane := func(c int) []float32 {
		if m.Channels == 1 {
			return m.Pix[:n]
		}
		return m.Plane(c)
	}
	switch {
	case m.Channels == 1 && m.Alpha == nil && m.BitDepth == 16:
		d := image.NewGray16(r)
		for i, v := range m.Pix[:n] {
			q := Quantize16(v)
			d.Pix[2*i], d.Pix[2*i+1] = byte(q>>8), byte(q)
		}
		return d
	case m.Channels == 1 && m.Alpha == nil:
		d := image.NewGray(r)
		for i, v := range m.Pix[:n] {
			d.Pix[i] = Quantize8(v)
		}
		return d
	}
	// RGB, with gray replicated; a missing alpha plane is opaque.
	pr, pg, pb := plane(0), plane(1), plane(2)
	alpha := func(i int) float32 {
		if m.Alpha == nil {
			return 1
		}
		return m.Alpha[i]
	}
	if m.BitDepth == 16 {
		d := image.NewNRGBA64(r)
		for i := range n {
			p := d.Pix[8*i : 8*i+8]
			for k, q := range [4]uint16{Quantize16(pr[i]), Quantize16(pg[i]), Quantize16(pb[i]), Quantize16(alpha(i))} {
				p[2*k], p[2*k+1] = byte(q>>8), byte(q)
			}
		}
		return d
	}
	d := image.NewNRGBA(r)
	for i := range n {
		p := d.Pix[4*i : 4*i+4]
		p[0], p[1], p[2], p[3] = Quantize8(pr[i]), Quantize8(pg[i]), Quantize8(pb[i]), Quantize8(alpha(i))
	}
	return d
}

// Quantize8 maps v in [0, 1] to 0..255: clamp (NaN counts as 0), scale, and
// round half up (floor(v*255 + 0.5), computed exactly in float64).
// float32(k)/255 maps back to k for every k, so 8-bit round trips are exact.
func Quantize8(v float32) uint8 { return quantize[uint8](v) }

// Quantize16 is Quantize8 for 0..65535.
func Quantize16(v float32) uint16 { return quantize[uint16](v) }

// quantize maps v in [0, 1] to 0..top, top the largest T, as Quantize8 says.
func quantize[T uint8 | uint16](v float32) T {
	top := ^T(0)
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return top
	}
	return T(float64(v)*float64(top) + 0.5)
}
