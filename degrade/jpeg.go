package degrade

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
)

// JPEG compresses c planes (1 or 3) of w x h values in [0, 1] at the given
// quality with the standard library codec and returns the decoded planes.
// Colour goes through YCbCr with 4:2:0 chroma (2x2 averaged on encode,
// replicated on decode) and libjpeg's quality-scaled tables, as DiffJPEG
// does; unlike DiffJPEG, the input is clamped and rounded to 8 bits, the
// quality is an integer and edge blocks are padded by replication, not
// zeros.
func JPEG(pix []float32, w, h, c, quality int) ([]float32, error) {
	n := w * h
	var src image.Image
	switch c {
	case 1:
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i, v := range pix[:n] {
			g.Pix[i] = level(v)
		}
		src = g
	case 3:
		m := image.NewRGBA(image.Rect(0, 0, w, h))
		R, G, B := pix[:n], pix[n:2*n], pix[2*n:3*n]
		for i := range n {
			m.Pix[4*i], m.Pix[4*i+1], m.Pix[4*i+2], m.Pix[4*i+3] = level(R[i]), level(G[i]), level(B[i]), 255
		}
		src = m
	default:
		return nil, fmt.Errorf("degrade: JPEG of %d channels", c)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("degrade: JPEG encode: %w", err)
	}
	dec, err := jpeg.Decode(&buf)
	if err != nil {
		return nil, fmt.Errorf("degrade: JPEG decode: %w", err)
	}
	out := make([]float32, n*c)
	switch d := dec.(type) {
	case *image.Gray:
		for y := range h {
			for x := range w {
				out[y*w+x] = float32(d.Pix[y*d.Stride+x]) / 255
			}
		}
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				yi, ci := d.YOffset(x, y), d.COffset(x, y)
				r, g, b := color.YCbCrToRGB(d.Y[yi], d.Cb[ci], d.Cr[ci])
				i := y*w + x
				out[i], out[n+i], out[2*n+i] = float32(r)/255, float32(g)/255, float32(b)/255
			}
		}
	default:
		return nil, fmt.Errorf("degrade: JPEG decoded to %T", dec)
	}
	return out, nil
}
