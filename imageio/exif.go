package imageio

import "encoding/binary"

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG stream, or
// 1 when there is none or it is malformed. It walks the marker segments up
// to the first scan, looking for an APP1 "Exif" segment, and reads tag
// 0x0112 from IFD0 of the embedded TIFF structure.
func jpegOrientation(data []byte) int {
	i := 2 // after SOI
	for i+4 <= len(data) {
		if data[i] != 0xff {
			return 1
		}
		marker := data[i+1]
		if marker == 0xff { // fill byte
			i++
			continue
		}
		if marker == 0xda || marker == 0xd9 { // SOS, EOI: no metadata after
			return 1
		}
		if marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7) { // no length
			i += 2
			continue
		}
		n := be16(data[i+2:])
		if n < 2 || i+2+n > len(data) {
			return 1
		}
		seg := data[i+4 : i+2+n]
		if marker == 0xe1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads the orientation tag from IFD0 of a TIFF header, or
// returns 0.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0
	}
	count := int(bo.Uint16(t[ifd:]))
	for k := range count {
		e := ifd + 2 + 12*k
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		// SHORT (type 3), count 1: the value sits in the first two bytes of
		// the value field.
		if bo.Uint16(t[e+2:]) != 3 {
			return 0
		}
		if o := int(bo.Uint16(t[e+8:])); o >= 1 && o <= 8 {
			return o
		}
		return 0
	}
	return 0
}

// orient returns m transformed for display according to EXIF orientation o:
// 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
// 7 transverse, 8 rotate 90 counter-clockwise. Orientations 5..8 swap
// width and height. Orientation 1 (or anything else) returns m itself.
func orient(m *Image, o int) *Image {
	if o < 2 || o > 8 {
		return m
	}
	w, h := m.Width, m.Height
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	// src maps a displayed pixel (x, y) to its stored position, read off the
	// EXIF definition of where the stored 0th row and column are shown.
	src := func(x, y int) (int, int) {
		switch o {
		case 2:
			return w - 1 - x, y
		case 3:
			return w - 1 - x, h - 1 - y
		case 4:
			return x, h - 1 - y
		case 5:
			return y, x
		case 6:
			return y, h - 1 - x
		case 7:
			return w - 1 - y, h - 1 - x
		default: // 8
			return w - 1 - y, x
		}
	}
	idx := make([]int32, dw*dh)
	for y := range dh {
		for x := range dw {
			sx, sy := src(x, y)
			idx[y*dw+x] = int32(sy*w + sx)
		}
	}
	remap := func(dst, p []float32) {
		for i, s := range idx {
			dst[i] = p[s]
		}
	}
	out := &Image{Width: dw, Height: dh, Channels: m.Channels, BitDepth: m.BitDepth,
		Pix: make([]float32, len(m.Pix))}
	for c := range m.Channels {
		remap(out.Plane(c), m.Plane(c))
	}
	if m.Alpha != nil {
		out.Alpha = make([]float32, len(m.Alpha))
		remap(out.Alpha, m.Alpha)
	}
	return out
}
